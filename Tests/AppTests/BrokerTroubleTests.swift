import Broker
import NIOCore
import Testing

@testable import App

/// What the node does when its broker is in trouble short of unreachable: a session the broker lost ends its
/// streams with the `expired` event the PC page renews on, and refusals to store are counted by kind.
@Suite(.timeLimit(.minutes(1)))
struct BrokerTroubleTests {
    @Test func aSessionTheBrokerLostEndsItsStreamsWithAnExpiredEvent() async throws {
        let harness = RegistryTests.Harness()
        let lost = try #require(SessionID("lost_session"))
        let other = try #require(SessionID("other_session"))
        var outputs: [RegistryTests.FakeOutput] = []
        for id in [lost, lost, other] { outputs.append(try await harness.open(id).output) }
        let opened = outputs
        try await eventually { opened.allSatisfy { $0.text == "OPEN\n" } }
        harness.registries.sessionEnded(lost)
        try await eventually { opened.prefix(2).allSatisfy(\.finished) }
        for output in outputs.prefix(2) { #expect(output.text == "OPEN\nevent: expired\ndata: {\"type\":\"expired\"}\n\n") }
        #expect(!outputs[2].finished && outputs[2].text == "OPEN\n")
        // The streams' own ends detach them later; that must not count them twice.
        try await Task.sleep(for: .milliseconds(50))
        #expect(harness.registries.streamCount == 1 && harness.registries.sessionCount == 1)
        harness.registries.sessionEnded(lost)  // again, or for a session held nowhere here: nothing happens
        try await Task.sleep(for: .milliseconds(20))
        #expect(harness.registries.streamCount == 1)
        for registry in harness.registries.registries { await registry.endAll() }
    }

    /// A broker that answers every call as a Redis out of memory would.
    struct RefusingBroker: Broker {
        static let refusal = BrokerError(.unavailable, "Redis: OOM command not allowed", refusal: "oom")
        func run() async throws {}
        func openSession(_ id: SessionID, ttl: Duration, readerKey: String?, heldByStream: Bool) async throws -> SessionRecord? { throw Self.refusal }
        func session(_ id: SessionID) async throws -> SessionRecord? { nil }
        func publish(_ event: SessionEvent, to id: SessionID, from phone: PhoneClaim?, idempotencyKey: String?) async throws -> PublishOutcome { throw Self.refusal }
        func holdPresence(of ids: [SessionID], side: PresenceSide) async throws -> [SessionID] { throw Self.refusal }
        func releasePresence(of id: SessionID, side: PresenceSide) async throws { throw Self.refusal }
        func reviewPresence(of id: SessionID, side: PresenceSide) async throws -> PublishOutcome { throw Self.refusal }
        func events(of id: SessionID, after: EventID) async throws -> [StoredEvent] { [] }
        func subscribe(_ id: SessionID) async throws {}
        func unsubscribe(_ id: SessionID) async {}
        var health: BrokerHealth { BrokerHealth(isAvailable: true, detail: "ok", refusal: "redis refuses to store: OOM") }
    }

    @Test func refusalsToStoreAreCountedByKind() async throws {
        let metrics = TandemMetrics()
        let broker = InstrumentedBroker(base: RefusingBroker(), metrics: metrics)
        let id = try #require(SessionID("refused"))
        await #expect(throws: RefusingBroker.refusal) { _ = try await broker.publish(.connected(), to: id) }
        await #expect(throws: RefusingBroker.refusal) { _ = try await broker.openSession(id, ttl: .seconds(60)) }
        let text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(text.contains(#"tandem_broker_refusals_total{kind="oom"} 2"#), "\(text)")
        #expect(await broker.health.refusal != nil)
    }
}

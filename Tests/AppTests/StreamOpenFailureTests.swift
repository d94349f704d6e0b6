import Broker
import HTTP
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing

@testable import App

/// A stream request that opens a session, then meets a broker failure (a Redis master dying mid-request): the session
/// may exist with the key this request offered, so the "come back later" answer hands that key to the browser, and its
/// reconnect is let in instead of refused by its own session.
@Suite(.timeLimit(.minutes(1)))
struct StreamOpenFailureTests {
    /// The in-memory broker, whose `events(of:)` fails once (the first call, or the one `failingEventsCall` counts
    /// from 1): after the session was opened.
    final class FailingOnceBroker: Broker {
        let base: InMemoryBroker
        private let eventsCalls = Atomic<Int>(0)
        let failingEventsCall: Int
        private let publishFailed = Atomic<Bool>(false)
        /// Every `releasePresence`, as `ID:side`.
        let released = Mutex<[String]>([])
        /// Whether the first publish is stored and then failed (as a WAIT short of its replicas).
        let failFirstPublish: Bool
        init(base: InMemoryBroker, failFirstPublish: Bool = false, failingEventsCall: Int = 1) {
            self.base = base
            self.failFirstPublish = failFirstPublish
            self.failingEventsCall = failingEventsCall
        }
        func run() async throws {}
        func openSession(_ id: SessionID, ttl: Duration, readerKey: String?, heldByStream: Bool) async throws -> SessionRecord? {
            try await base.openSession(id, ttl: ttl, readerKey: readerKey, heldByStream: heldByStream)
        }
        func session(_ id: SessionID) async throws -> SessionRecord? { try await base.session(id) }
        func publish(_ event: SessionEvent, to id: SessionID, from phone: PhoneClaim?, idempotencyKey: String?) async throws -> PublishOutcome {
            let outcome = try await base.publish(event, to: id, from: phone, idempotencyKey: idempotencyKey)
            if failFirstPublish, !publishFailed.exchange(true, ordering: .relaxed) { throw BrokerError(.unavailable, "1 of 1 replicas did not acknowledge") }
            return outcome
        }
        func holdPresence(of ids: [SessionID], side: PresenceSide) async throws -> [SessionID] { try await base.holdPresence(of: ids, side: side) }
        func releasePresence(of id: SessionID, side: PresenceSide) async throws {
            released.withLock { $0.append("\(id.rawValue):\(side.rawValue)") }
            try await base.releasePresence(of: id, side: side)
        }
        func reviewPresence(of id: SessionID, side: PresenceSide) async throws -> PublishOutcome { try await base.reviewPresence(of: id, side: side) }
        func events(of id: SessionID, after: EventID) async throws -> [StoredEvent] {
            if eventsCalls.wrappingAdd(1, ordering: .relaxed).newValue == failingEventsCall { throw BrokerError(.unavailable, "the master died") }
            return try await base.events(of: id, after: after)
        }
        func subscribe(_ id: SessionID) async throws { try await base.subscribe(id) }
        func unsubscribe(_ id: SessionID) async { await base.unsubscribe(id) }
        var health: BrokerHealth { get async { base.health } }
    }

    /// One node's registries and API over a ``FailingOnceBroker``, as the tests below each make it.
    struct FailingNode {
        let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        let registries: SessionRegistries
        let broker: FailingOnceBroker
        let api: API

        init(failFirstPublish: Bool = false, failingEventsCall: Int = 1) {
            registries = SessionRegistries(
                eventLoopGroup: MultiThreadedEventLoopGroup.singleton, bufferLimit: 8, heartbeatInterval: .seconds(30), logger: logger)
            broker = FailingOnceBroker(
                base: InMemoryBroker(sink: registries, logger: logger), failFirstPublish: failFirstPublish, failingEventsCall: failingEventsCall)
            api = API(
                broker: broker, registry: registries, configuration: TandemConfiguration(), staticFiles: nil, metrics: TandemMetrics(),
                drainState: DrainState(), time: .system)
        }
    }

    @Test func theRetryAnswerCarriesTheOfferedKeyAndTheReconnectIsLetIn() async throws {
        let node = FailingNode()
        let (logger, registries, broker, api) = (node.logger, node.registries, node.broker, node.api)
        let text = SeedFlowTests.newSessionID()
        let id = try #require(SessionID(text))

        let first = try await api.events(Request(method: .GET, uri: "/api/events?session=\(text)"), logger: logger)
        #expect(first.status == .ok)
        let cookie = try #require(first.headers.first(name: "set-cookie"))
        #expect(cookie.hasPrefix("tandem_reader_\(text)=") && cookie.contains("HttpOnly"))
        #expect(try await broker.session(id) != nil, "the session was opened before the failure")

        // The browser's reconnect: no event was received, so no Last-Event-ID; the cookie it was given.
        let pair = String(cookie.split(separator: ";")[0])
        let again = try await api.events(Request(method: .GET, uri: "/api/events?session=\(text)", headers: ["Cookie": pair]), logger: logger)
        #expect(again.status == .ok)
        #expect(again.headers.first(name: "set-cookie") == nil, "the key it holds is the session's")
        // Without the cookie, the same reconnect is a stranger's.
        await #expect(throws: APIError.readerKeyRequired) {
            _ = try await api.events(Request(method: .GET, uri: "/api/events?session=\(text)"), logger: logger)
        }
        for registry in registries.registries { await registry.endAll() }
    }

    /// A stream that fails to open after its request opened the session for the hold lease lets the PC's presence go
    /// as a closed stream would (for the grace), instead of holding it a whole lease for a page that may never come
    /// back; the stream that then opens releases nothing.
    @Test func aPCStreamThatFailsToOpenReleasesThePCsPresence() async throws {
        let node = FailingNode()
        let (logger, registries, broker, api) = (node.logger, node.registries, node.broker, node.api)
        let text = SeedFlowTests.newSessionID()

        let metrics = api.metrics
        let first = try await api.events(Request(method: .GET, uri: "/api/events?session=\(text)"), logger: logger)
        #expect(first.status == .ok, "asked to come back later")
        #expect(broker.released.withLock { $0 } == ["\(text):pc"])
        #expect(metrics.ops?.pairings(now: TimeSource.system.now()).byStatus.isEmpty == true, "the operators' tally counts no pairing for it")

        let cookie = try #require(first.headers.first(name: "set-cookie"))
        let pair = String(cookie.split(separator: ";")[0])
        let again = try await api.events(Request(method: .GET, uri: "/api/events?session=\(text)", headers: ["Cookie": pair]), logger: logger)
        #expect(again.status == .ok)
        #expect(broker.released.withLock { $0 } == ["\(text):pc"], "an open stream holds its presence")
        for registry in registries.registries { await registry.endAll() }
    }

    /// A second stream of the same PC that fails to open releases nothing: the first still holds the PC here.
    @Test func aFailedOpenBesideALiveStreamOfTheSameDeviceReleasesNothing() async throws {
        let node = FailingNode(failingEventsCall: 2)
        let (logger, registries, broker, api) = (node.logger, node.registries, node.broker, node.api)
        let text = SeedFlowTests.newSessionID()

        let first = try await api.events(Request(method: .GET, uri: "/api/events?session=\(text)"), logger: logger)
        let cookie = try #require(first.headers.first(name: "set-cookie"))
        let pair = String(cookie.split(separator: ";")[0])
        #expect(registries.streamCount == 1, "the first stream is held here")
        let second = try await api.events(Request(method: .GET, uri: "/api/events?session=\(text)", headers: ["Cookie": pair]), logger: logger)
        #expect(second.status == .ok, "asked to come back later")
        #expect(registries.streamCount == 1, "the failed one is gone, the first stays")
        #expect(broker.released.withLock { $0 }.isEmpty, "the first stream still holds the PC present")
        #expect(api.metrics.ops?.pairings(now: TimeSource.system.now()).byStatus.values.reduce(0, +) == 1, "the pairing is still counted")
        for registry in registries.registries { await registry.endAll() }
    }

    /// The same for the phone's channel: its failed open releases the phone's presence it renewed.
    @Test func aPhoneChannelThatFailsToOpenReleasesThePhonesPresence() async throws {
        let node = FailingNode()
        let (logger, registries, broker, api) = (node.logger, node.registries, node.broker, node.api)
        let router = api.makeRouter()
        let text = SeedFlowTests.newSessionID()
        let id = try #require(SessionID(text))
        _ = try await broker.openSession(id, ttl: .seconds(600), readerKey: "k", heldByStream: false)
        let claim = await router.respond(to: Request(method: .GET, uri: "/api/validate-session?session=\(text)"), logger: logger)
        #expect(claim.status == .ok)
        let pair = String(try #require(claim.headers.first(name: "set-cookie")).split(separator: ";")[0])

        let channel = try await api.phoneEvents(
            Request(method: .GET, uri: "/api/phone/events?session=\(text)", headers: ["Cookie": pair]), logger: logger)
        #expect(channel.status == .ok, "asked to come back later")
        #expect(broker.released.withLock { $0 } == ["\(text):phone"])
        for registry in registries.registries { await registry.endAll() }
    }

    /// The phone's claim stored, then a 503 (WAIT short of its replicas): the 503 carries the key it claimed with, so
    /// its retry is the claimant's, not "another device".
    @Test func aClaimStoredBeforeA503GivesThePhoneItsKey() async throws {
        let node = FailingNode(failFirstPublish: true)
        let (logger, registries, broker) = (node.logger, node.registries, node.broker)
        let router = node.api.makeRouter()
        let text = SeedFlowTests.newSessionID()
        let id = try #require(SessionID(text))
        _ = try await broker.openSession(id, ttl: .seconds(600), readerKey: "k", heldByStream: false)

        let first = await router.respond(to: Request(method: .GET, uri: "/api/validate-session?session=\(text)"), logger: logger)
        #expect(first.status == .serviceUnavailable)
        let cookie = try #require(first.headers.first(name: "set-cookie"))
        #expect(cookie.hasPrefix("tandem_phone_\(text)="))
        #expect(try await broker.session(id)?.phoneKey != nil, "the claim was stored")

        let pair = String(cookie.split(separator: ";")[0])
        let retry = await router.respond(
            to: Request(method: .GET, uri: "/api/validate-session?session=\(text)", headers: ["Cookie": pair]), logger: logger)
        #expect(retry.status == .ok)
        // Another device, without the cookie, is refused.
        let stranger = await router.respond(to: Request(method: .GET, uri: "/api/validate-session?session=\(text)"), logger: logger)
        #expect(stranger.status == .conflict)
        for registry in registries.registries { await registry.endAll() }
    }
}

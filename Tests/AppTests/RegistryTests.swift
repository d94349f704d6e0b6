import Broker
import TestSupport
import Testing

@testable import App

/// The session registry leaves nothing behind, and cuts readers that fall behind instead of buffering for them.
@Suite(.timeLimit(.minutes(1)))
struct RegistryTests {
    @Test func manySessionsComeAndGoAndNothingIsLeftBehind() async throws {
        try await withTandem({
            $0.sessionTTLSeconds = 2
            $0.sessionsPerMinute = 0
        }) { application, client in
            // 60 sessions whose PCs close their streams, 60 whose sessions expire under open streams.
            var closing: [EventStream] = []
            var expiring: [EventStream] = []
            for index in 0..<120 {
                let id = "leak_\(index)_\(SeedFlowTests.newSessionID())"
                let stream = try await client.openEventStream("/api/events?session=\(id)")
                _ = try await stream.events(atLeast: 1)
                _ = try await client.request("GET", "/api/validate-session?session=\(id)")
                if index.isMultiple(of: 2) { closing.append(stream) } else { expiring.append(stream) }
            }
            #expect(await application.registry.streamCount == 120)
            for stream in closing { await stream.close() }
            for stream in expiring {
                let (_, ended) = try await stream.events(atLeast: 99, timeout: .seconds(6))
                #expect(ended)
                await stream.close()
            }
            let broker = try #require(application.broker as? InMemoryBroker)
            // Closing is noticed asynchronously; give the node a moment, then everything must be gone.
            try await eventually { await application.registry.streamCount == 0 }
            #expect(await application.registry.sessionCount == 0)
            try await eventually { broker.subscribedSessionCount == 0 }
            try await eventually(timeout: .seconds(5)) { broker.storedSessionCount == 0 }
        }
    }

    @Test func aReaderThatFallsBehindIsCutNotBuffered() async throws {
        let registry = SessionRegistry(bufferedItems: 4, heartbeatInterval: .seconds(3600), logger: testLogger)
        let id = try #require(SessionID("slow_reader"))
        let stream = await registry.attach(id, expiresAt: TimeSource.system.now() + 60_000)
        for index in 1...10 {
            await registry.deliver(StoredEvent(id: EventID(index), event: .inputStarted), to: id)
        }
        #expect(await registry.streamCount == 0)
        // The reader gets the buffered prefix without a gap, then the end; it resumes from event 4.
        var received: [EventID] = []
        for await item in stream.items {
            if case .event(let event) = item { received.append(event.id) }
        }
        #expect(received == [1, 2, 3, 4])
        await registry.detach(id, stream: stream)
        #expect(await registry.sessionCount == 0)
    }

    @Test func expiredSessionsStreamsEndOnTheSweep() async throws {
        let time = ManualTime()
        let registry = SessionRegistry(bufferedItems: 4, heartbeatInterval: .seconds(3600), time: time.source, logger: testLogger)
        let id = try #require(SessionID("expiring"))
        let stream = await registry.attach(id, expiresAt: time.source.now() + 10_000)
        await registry.endExpiredStreams()
        #expect(await registry.streamCount == 1)
        time.advance(by: .seconds(10))
        await registry.endExpiredStreams()
        #expect(await registry.streamCount == 0)
        for await _ in stream.items {}
        await registry.detach(id, stream: stream)
        #expect(await registry.sessionCount == 0)
    }
}

/// Polls `condition` until it holds or `timeout` passes (for effects that happen on another task).
func eventually(timeout: Duration = .seconds(3), _ condition: @Sendable () async -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    #expect(await condition(), "condition did not hold within \(timeout)")
}

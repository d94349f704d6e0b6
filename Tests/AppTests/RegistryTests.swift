import Broker
import NIOCore
import Synchronization
import TestSupport
import Testing

@testable import App

/// The session registry leaves nothing behind, and cuts readers that fall behind instead of buffering for them.
@Suite(.timeLimit(.minutes(1)))
struct RegistryTests {
    @Test func manySessionsComeAndGoAndNothingIsLeftBehind() async throws {
        try await withTandem({
            // Long enough that all 120 are open before the first expires, on two cores shared with the other suites
            // (opening them took over 4 s on a busy machine).
            $0.sessionTTLSeconds = 10
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
            #expect(application.registry.streamCount == 120)
            for stream in closing { await stream.close() }
            for stream in expiring {
                let (_, ended) = try await stream.events(atLeast: 99, timeout: .seconds(14))
                #expect(ended)
                await stream.close()
            }
            let broker = try #require(application.broker as? InMemoryBroker)
            // Closing is noticed asynchronously; give the node a moment, then everything must be gone.
            try await eventually { application.registry.streamCount == 0 }
            #expect(application.registry.sessionCount == 0)
            try await eventually { broker.subscribedSessionCount == 0 }
            try await eventually(timeout: .seconds(5)) { broker.storedSessionCount == 0 }
        }
    }

    /// A fake connection: records what is written and can refuse writes like a full outbound buffer.
    final class FakeOutput: EventStreamOutput {
        private let lock = Mutex(([String](), true, false))

        func write(_ buffer: ByteBuffer) -> Bool {
            lock.withLock { state in
                guard state.1 else { return false }
                state.0.append(String(buffer: buffer))
                return true
            }
        }

        func finish() { lock.withLock { $0.2 = true } }
        var preferredExecutor: (any TaskExecutor)? { nil }

        var text: String { lock.withLock { $0.0.joined() } }
        var finished: Bool { lock.withLock { $0.2 } }
        func refuseWrites() { lock.withLock { $0.1 = false } }
    }

    /// A broker that only ever sees the session of `id`: its log holds what the test published.
    struct NoSink: SessionEventSink {
        func deliver(_ event: StoredEvent, to id: SessionID) {}
        func sessionEnded(_ id: SessionID) {}
    }

    static func stream(_ id: SessionID, expiresAt: Int64, broker: any Broker = InMemoryBroker(sink: NoSink(), logger: testLogger)) -> SessionStream {
        SessionStream(sessionID: id, expiresAt: expiresAt, resumeAfter: 0, bufferLimit: 4, metrics: nil, broker: broker, registry: nil)
    }

    @Test func eventsArriveInOrderOnceAndGapsAreFilledFromTheLog() async throws {
        let id = try #require(SessionID("ordered"))
        let broker = InMemoryBroker(sink: NoSink(), logger: testLogger)
        _ = try await broker.openSession(id, ttl: .seconds(60))
        var log: [StoredEvent] = []
        for event in [SessionEvent.connected(), .inputStarted, .complete(Submission(name: "A", phone: "1"))] {
            if case .published(let stored, _) = try await broker.publish(event, to: id) { log.append(stored) }
        }
        #expect(log.map(\.id) == [1, 2, 3])
        let stream = Self.stream(id, expiresAt: TimeSource.system.now() + 60_000, broker: broker)
        let output = FakeOutput()
        // Event 1 arrives before the response is ready; it is kept and sent after the opening.
        stream.deliver(log[0])
        stream.bind(output, opening: ByteBuffer(string: "OPEN\n"), replayed: [])
        // 3 overtakes 2: the gap is filled from the log, and nothing is sent twice.
        stream.deliver(log[2])
        stream.deliver(log[1])
        try await eventually { output.text.contains("id: 3") }
        let ids = output.text.split(separator: "\n").filter { $0.hasPrefix("id: ") }
        #expect(output.text.hasPrefix("OPEN\n"))
        #expect(ids == ["id: 1", "id: 2", "id: 3"])
    }

    @Test func aReaderThatFallsBehindIsCutNotBuffered() async throws {
        let registry = SessionRegistry(heartbeatInterval: .seconds(3600), logger: testLogger)
        let id = try #require(SessionID("slow_reader"))
        let metrics = TandemMetrics()
        let stream = SessionStream(
            sessionID: id, expiresAt: TimeSource.system.now() + 60_000, resumeAfter: 0, bufferLimit: 4, metrics: metrics,
            broker: InMemoryBroker(sink: NoSink(), logger: testLogger), registry: nil)
        registry.attach(stream)
        let output = FakeOutput()
        stream.bind(output, opening: ByteBuffer(string: "OPEN\n"), replayed: [])
        output.refuseWrites()  // the peer stopped reading and the outbound buffer is full
        registry.deliver(StoredEvent(id: 1, event: .connected()), to: id)
        #expect(stream.isEnded)
        #expect(String(decoding: metrics.render(), as: UTF8.self).contains(#"tandem_streams_cut_total{reason="slow_reader"} 1"#))
        #expect(output.finished)
        registry.detach(stream)
        #expect(registry.streamCount == 0)
        #expect(registry.sessionCount == 0)
    }

    @Test func heartbeatSlicesGiveEveryStreamExactlyOneHeartbeatPerRound() throws {
        let registry = SessionRegistry(heartbeatInterval: .seconds(3600), logger: testLogger)
        var outputs: [FakeOutput] = []
        for index in 0..<200 {
            let stream = Self.stream(try #require(SessionID("beat_\(index)")), expiresAt: TimeSource.system.now() + 60_000)
            registry.attach(stream)
            let output = FakeOutput()
            stream.bind(output, opening: ByteBuffer(), replayed: [])
            outputs.append(output)
        }
        var perSlice: [Int] = []
        for slice in 0..<20 {
            let before = outputs.filter { $0.text.contains("heartbeat") }.count
            registry.sendHeartbeats(slice: slice, of: 20)
            perSlice.append(outputs.filter { $0.text.contains("heartbeat") }.count - before)
        }
        #expect(outputs.allSatisfy { $0.text.split(separator: "\n").filter { $0 == ": heartbeat" }.count == 1 })
        // Spread out: no slice carries a large share of the streams.
        #expect(perSlice.allSatisfy { $0 < 25 }, "\(perSlice)")
    }

    @Test func expiredSessionsStreamsEndOnTheSweep() async throws {
        let time = ManualTime()
        let registry = SessionRegistry(heartbeatInterval: .seconds(3600), time: time.source, logger: testLogger)
        let id = try #require(SessionID("expiring"))
        let stream = Self.stream(id, expiresAt: time.source.now() + 10_000)
        registry.attach(stream)
        let output = FakeOutput()
        stream.bind(output, opening: ByteBuffer(string: "OPEN\n"), replayed: [])
        registry.endExpiredStreams()
        #expect(registry.streamCount == 1)
        time.advance(by: .seconds(10))
        registry.endExpiredStreams()
        #expect(registry.streamCount == 0)
        #expect(output.finished)
        registry.detach(stream)
        #expect(registry.sessionCount == 0)
    }

    @Test func aStreamEndedBeforeItsResponseIsReadyEndsTheResponse() throws {
        let stream = Self.stream(try #require(SessionID("early")), expiresAt: TimeSource.system.now() + 60_000)
        stream.end()
        let output = FakeOutput()
        stream.bind(output, opening: ByteBuffer(string: "OPEN\n"), replayed: [])
        #expect(output.finished)
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

/// A broker whose log read is scripted, to place an event between the read and its use.
final class ScriptedLogBroker: Broker {
    private let snapshot: [StoredEvent]
    private let failing: Bool
    private let duringRead: Mutex<(@Sendable () -> Void)?>

    init(snapshot: [StoredEvent], failing: Bool = false) {
        self.snapshot = snapshot
        self.failing = failing
        self.duringRead = Mutex(nil)
    }

    func whileReading(_ action: @escaping @Sendable () -> Void) { duringRead.withLock { $0 = action } }

    func run() async throws {}
    func openSession(_ id: SessionID, ttl: Duration, readerKey: String?, heldByStream: Bool) async throws -> SessionRecord? {
        throw BrokerError(.unavailable, "scripted")
    }
    func session(_ id: SessionID) async throws -> SessionRecord? { nil }
    func publish(_ event: SessionEvent, to id: SessionID, from phone: PhoneClaim?, idempotencyKey: String?) async throws -> PublishOutcome { .sessionNotFound }
    func holdPresence(of ids: [SessionID], side: PresenceSide) async throws -> [SessionID] { [] }
    func releasePresence(of id: SessionID, side: PresenceSide) async throws {}
    func reviewPresence(of id: SessionID, side: PresenceSide) async throws -> PublishOutcome { .sessionNotFound }
    func events(of id: SessionID, after: EventID) async throws -> [StoredEvent] {
        duringRead.withLock { $0 }?()
        if failing { throw BrokerError(.unavailable, "scripted outage") }
        return snapshot.filter { $0.id > after }
    }
    func subscribe(_ id: SessionID) async throws {}
    func unsubscribe(_ id: SessionID) async {}
    var health: BrokerHealth { .ok }
}

@Suite(.timeLimit(.minutes(1)))
struct StreamRaceTests {
    @Test func anEventStoredWhileAGapIsBeingFilledIsNotLost() async throws {
        let id = try #require(SessionID("race"))
        let first = StoredEvent(id: 1, event: .connected())
        let second = StoredEvent(id: 2, event: .inputStarted)
        let third = StoredEvent(id: 3, event: .complete(Submission(name: "A", phone: "1")))
        let broker = ScriptedLogBroker(snapshot: [first, second])
        let stream = RegistryTests.stream(id, expiresAt: TimeSource.system.now() + 60_000, broker: broker)
        // The log is read as [1, 2]; event 3 is stored and delivered before the refill uses that read.
        broker.whileReading { stream.deliver(third) }
        let output = RegistryTests.FakeOutput()
        stream.bind(output, opening: ByteBuffer(string: "OPEN\n"), replayed: [])
        stream.deliver(second)  // 1 is late: a gap, so a refill starts
        try await eventually { output.text.contains("id: 3") }
        #expect(output.text.split(separator: "\n").filter { $0.hasPrefix("id: ") } == ["id: 1", "id: 2", "id: 3"])
    }

    @Test func aRefillThatCannotReadTheLogEndsTheStreamForAResume() async throws {
        let id = try #require(SessionID("race2"))
        let broker = ScriptedLogBroker(snapshot: [], failing: true)
        let stream = RegistryTests.stream(id, expiresAt: TimeSource.system.now() + 60_000, broker: broker)
        let output = RegistryTests.FakeOutput()
        stream.bind(output, opening: ByteBuffer(string: "OPEN\n"), replayed: [])
        stream.deliver(StoredEvent(id: 3, event: .complete(Submission(name: "A", phone: "1"))))
        try await eventually { output.finished }
        #expect(stream.isEnded)
    }

    @Test func streamsWhoseClientsResetTheConnectionWhileTheyStartLeaveNothingBehind() async throws {
        try await withTandem({ $0.sessionsPerMinute = 0 }) { application, client in
            for index in 0..<300 {
                let connection = try await TestConnection.connect(port: client.port)
                try await connection.send("GET /api/events?session=rst_\(index) HTTP/1.1\r\nHost: t\r\n\r\n")
                if index.isMultiple(of: 3) { try await Task.sleep(for: .microseconds(Int.random(in: 0...1500))) }
                await connection.reset()
            }
            let broker = try #require(application.broker as? InMemoryBroker)
            try await eventually(timeout: .seconds(10)) { application.registry.streamCount == 0 }
            try await eventually(timeout: .seconds(10)) { broker.subscribedSessionCount == 0 }
        }
    }
}

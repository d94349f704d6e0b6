import Broker
import HTTP
import NIOCore
import NIOPosix
import PropertyBased
import ServiceLifecycle
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
            // (opening them took over 10 s in a CI run beside two Swift builds).
            $0.sessionTTLSeconds = 20
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
                let (_, ended) = try await stream.events(atLeast: 99, timeout: .seconds(24))
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

    /// A fake connection: records what is written and can refuse writes like a full outbound buffer; `finished`
    /// once the stream's task has returned (the response would end then).
    final class FakeOutput: EventStreamOutput {
        private let lock = Mutex(([String](), true, false))

        func write(_ buffer: ByteBuffer) -> Bool {
            lock.withLock { state in
                guard state.1 else { return false }
                state.0.append(String(buffer: buffer))
                return true
            }
        }

        func write(_ prepared: EventStreamChannel.PreparedBytes) -> Bool { write(prepared.plain) }

        var isDraining: Bool { false }
        func markFinished() { lock.withLock { $0.2 = true } }
        var text: String { lock.withLock { $0.0.joined() } }
        var finished: Bool { lock.withLock { $0.2 } }
        func refuseWrites() { lock.withLock { $0.1 = false } }
        var ids: [Substring] { text.split(separator: "\n").filter { $0.hasPrefix("id: ") } }
    }

    /// A broker that only ever sees the session of `id`: its log holds what the test published.
    struct NoSink: SessionEventSink {
        func deliver(_ event: StoredEvent, to id: SessionID) {}
        func sessionEnded(_ id: SessionID) {}
    }

    /// Registries on real event loops (the shared group's), with streams served by their own tasks into fake outputs.
    struct Harness {
        let registries: SessionRegistries
        let metrics: TandemMetrics

        init(bufferLimit: Int = 4, heartbeatInterval: Duration = .seconds(3600)) {
            metrics = TandemMetrics()
            registries = SessionRegistries(
                eventLoopGroup: MultiThreadedEventLoopGroup.singleton, bufferLimit: bufferLimit, heartbeatInterval: heartbeatInterval,
                metrics: metrics, logger: testLogger)
        }

        /// Attaches a stream of `id` and returns its output; its task starts only when `start` is true (else call
        /// the returned closure), so a test can place events before the task reads them.
        func open(
            _ id: SessionID, expiresAt: Int64 = TimeSource.system.now() + 60_000, now: Int64 = TimeSource.system.now(),
            broker: any Broker = InMemoryBroker(sink: NoSink(), logger: testLogger), opening: String = "OPEN\n",
            audience: PresenceSide = .pc, start: Bool = true
        ) async throws -> (output: FakeOutput, registry: SessionRegistry, start: @Sendable () -> Void) {
            let registry = registries.route(id)
            let (token, items) = try #require(await registry.attach(id, expiresAt: expiresAt, audience: audience, now: now))
            let stream = SessionStream(
                sessionID: id, audience: audience, resumeAfter: 0, opening: SessionStream.Opening(ByteBuffer(string: opening), replayed: []), items: items,
                registry: registry, token: token, registries: registries, broker: broker, metrics: metrics, reviewDelay: nil)
            let output = FakeOutput()
            let begin: @Sendable () -> Void = {
                Task {
                    await stream.run(on: output)
                    output.markFinished()
                }
            }
            if start { begin() }
            return (output, registry, begin)
        }
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
        let harness = Harness()
        let (output, _, start) = try await harness.open(id, broker: broker, start: false)
        // Event 1 arrives before the stream's task reads: it waits in the stream's buffer, sent after the opening.
        harness.registries.deliver(log[0], to: id)
        start()
        // 3 overtakes 2: the gap is filled from the log, and nothing is sent twice.
        harness.registries.deliver(log[2], to: id)
        harness.registries.deliver(log[1], to: id)
        try await eventually { output.text.contains("id: 3") }
        try await Task.sleep(for: .milliseconds(50))
        #expect(output.text.hasPrefix("OPEN\n"))
        #expect(output.ids == ["id: 1", "id: 2", "id: 3"])
    }

    /// Which sessions the PC's node looks at the phone's presence for: a PC's stream here, a phone that took the
    /// session (from the record at the attach, or from the events since), the session not over, and no phone's
    /// channel here (that one's node looks already).
    @Test func thePhonesPresenceIsLookedAtForSessionsInProgressWhosePhoneIsElsewhere() async throws {
        let harness = Harness()
        let id = try #require(SessionID("awaiting_phone"))
        _ = try await harness.open(id)
        #expect(await harness.registries.sessionsAwaitingPhone().isEmpty)  // no phone yet
        harness.registries.deliver(StoredEvent(id: 1, event: .connected(pairingCode: "1234")), to: id)
        try await eventually { await harness.registries.sessionsAwaitingPhone() == [id] }
        // phone-left keeps it looked at (it may come back; the broker tells it once); the end of the session stops it.
        harness.registries.deliver(StoredEvent(id: 2, event: .phoneLeft), to: id)
        harness.registries.deliver(StoredEvent(id: 3, event: .phoneReturned), to: id)
        #expect(await harness.registries.sessionsAwaitingPhone() == [id])
        harness.registries.deliver(StoredEvent(id: 4, event: .complete(Submission(name: "A", phone: "1"))), to: id)
        try await eventually { await harness.registries.sessionsAwaitingPhone().isEmpty }

        // The phone's channel here: its own node (this one) looks at it already.
        let held = try #require(SessionID("phone_held_here"))
        let (_, registry, _) = try await harness.open(held)
        harness.registries.deliver(StoredEvent(id: 1, event: .inputStarted), to: held)
        try await eventually { await harness.registries.sessionsAwaitingPhone() == [held] }
        // (Its task is not started: what is delivered waits in its buffer.)
        let (_, phoneRegistry, _) = try await harness.open(held, audience: .phone, start: false)
        #expect(phoneRegistry === registry)
        #expect(await harness.registries.sessionsAwaitingPhone().isEmpty)

        // A PC that attaches to a session its record says a phone took is looked at from the start.
        let other = try #require(SessionID("engaged_at_attach"))
        let otherRegistry = harness.registries.route(other)
        let now = TimeSource.system.now()
        _ = try #require(await otherRegistry.attach(other, expiresAt: now + 60_000, audience: .pc, now: now, phoneEngaged: true))
        #expect(await harness.registries.sessionsAwaitingPhone() == [other])
        harness.registries.deliver(StoredEvent(id: 2, event: .cancelled(.pcLeft)), to: other)
        try await eventually { await harness.registries.sessionsAwaitingPhone().isEmpty }
    }

    /// An event published between the record's read and the subscription reaches the stream only in its opening's
    /// replay: what the replay says of the phone counts, unless an event handed since (live) is newer.
    @Test func whatTheOpeningReplaysSaysWhetherThePhoneIsLookedAt() async throws {
        let harness = Harness()
        let id = try #require(SessionID("engaged_by_replay"))
        let registry = harness.registries.route(id)
        let now = TimeSource.system.now()
        let (token, _) = try #require(await registry.attach(id, expiresAt: now + 60_000, audience: .pc, now: now))
        #expect(await harness.registries.sessionsAwaitingPhone().isEmpty)
        // The replay held `connected` (id 1): looked at.
        await registry.openingWrites(through: 1, session: id, token: token, phoneEngaged: true)
        #expect(await harness.registries.sessionsAwaitingPhone() == [id])
        // Live, `complete` (id 3) came before the opening's news of an older replay (through 2): the live one stands.
        harness.registries.deliver(StoredEvent(id: 3, event: .complete(Submission(name: "A", phone: "1"))), to: id)
        try await eventually { await harness.registries.sessionsAwaitingPhone().isEmpty }
        await registry.openingWrites(through: 2, session: id, token: token, phoneEngaged: true)
        #expect(await harness.registries.sessionsAwaitingPhone().isEmpty)
        // The rule itself: taken, going on, away (still looked at), back; over.
        var engaged = false
        for (event, expected) in [
            (SessionEvent.connected(), true), (.phoneLeft, true), (.phoneReturned, true), (.inputStarted, true),
            (.cancelled(.pcLeft), false), (.phoneLeft, false),
        ] {
            engaged = SessionRegistry.phoneEngaged(after: event, was: engaged)
            #expect(engaged == expected, "\(event)")
        }
    }

    @Test func aReaderWhoseConnectionIsFullIsCut() async throws {
        let harness = Harness()
        let id = try #require(SessionID("slow_reader"))
        let (output, _, _) = try await harness.open(id)
        try await eventually { output.text == "OPEN\n" }
        output.refuseWrites()  // the peer stopped reading and the outbound buffer is full
        harness.registries.deliver(StoredEvent(id: 1, event: .connected()), to: id)
        try await eventually { output.finished }
        #expect(String(decoding: harness.metrics.render(), as: UTF8.self).contains(#"tandem_streams_cut_total{reason="slow_reader"} 1"#))
        try await eventually { harness.registries.streamCount == 0 && harness.registries.sessionCount == 0 }
    }

    /// A stream's buffer is bounded (`sse.bufferedEvents`): a reader whose task cannot keep up is cut, never
    /// silently skipped; the browser resumes from the log.
    @Test func aReaderWhoseBufferOverflowsIsCutNotSkipped() async throws {
        let harness = Harness(bufferLimit: 4)
        let id = try #require(SessionID("overflow"))
        let (output, _, start) = try await harness.open(id, start: false)
        for eventID in 1...6 { harness.registries.deliver(StoredEvent(id: EventID(eventID), event: .inputStarted), to: id) }
        try await Task.sleep(for: .milliseconds(50))
        start()
        try await eventually { output.finished }
        #expect(output.ids == ["id: 1", "id: 2", "id: 3", "id: 4"])
        #expect(String(decoding: harness.metrics.render(), as: UTF8.self).contains(#"tandem_streams_cut_total{reason="slow_reader"} 1"#))
        try await eventually { harness.registries.streamCount == 0 }
    }

    /// Heartbeats counted in `output`.
    private static func heartbeats(in output: FakeOutput) -> Int {
        output.text.split(separator: "\n").filter { $0 == ": heartbeat" }.count
    }

    /// `count` silent streams of sessions named `prefix_N`, all on one registry (the test's task routes them).
    private static func openSilentStreams(_ count: Int, named prefix: String, in harness: Harness) async throws -> ([FakeOutput], SessionRegistry) {
        var outputs: [FakeOutput] = []
        var registry: SessionRegistry?
        for index in 0..<count {
            let opened = try await harness.open(try #require(SessionID("\(prefix)_\(index)")), opening: "")
            outputs.append(opened.output)
            registry = opened.registry
        }
        return (outputs, try #require(registry))
    }

    /// The heartbeats written at each of `ticks` sweeps of `registry`.
    private static func beatsPerTick(_ ticks: Int, of registry: SessionRegistry, into outputs: [FakeOutput]) async throws -> [Int] {
        var perTick: [Int] = []
        for _ in 0..<ticks {
            let before = outputs.map(heartbeats).reduce(0, +)
            await registry.sendDueHeartbeats()
            try await Task.sleep(for: .milliseconds(20))
            perTick.append(outputs.map(heartbeats).reduce(0, +) - before)
        }
        return perTick
    }

    @Test func aSilentStreamBeatsOncePerIntervalAndStreamsOpenedTogetherBeatSpreadOut() async throws {
        // 5 s heartbeats, a sweep every 250 ms: a beat every 20 ticks of silence.
        let harness = Harness(heartbeatInterval: .seconds(5))
        let (all, only) = try await Self.openSilentStreams(200, named: "beat", in: harness)
        var perTick: [Int] = []
        for round in 1...2 {
            perTick += try await Self.beatsPerTick(20, of: only, into: all)
            // One beat per stream per interval, never two.
            try await eventually { all.allSatisfy { Self.heartbeats(in: $0) == round } }
        }
        // The first beats come after half an interval of silence at the earliest, spread over its other half; from
        // then on each stream keeps its own phase.
        #expect(perTick.prefix(10).allSatisfy { $0 == 0 }, "\(perTick)")
        #expect(perTick.allSatisfy { $0 <= 25 }, "\(perTick)")
        await only.endAll()
    }

    @Test func aStreamWithEventsToWriteGetsNoHeartbeatUntilItHasBeenSilentForAnInterval() async throws {
        let harness = Harness(bufferLimit: 64, heartbeatInterval: .seconds(5))
        let id = try #require(SessionID("busy_stream"))
        let pc = try await harness.open(id, opening: "")
        let phone = try await harness.open(id, opening: "", audience: .phone)
        // An event every tick for two intervals: the PC writes each one; the phone is sent none of them.
        for eventID in 1...40 {
            harness.registries.deliver(StoredEvent(id: EventID(eventID), event: .inputStarted), to: id)
            await pc.registry.sendDueHeartbeats()
        }
        try await eventually { pc.output.ids.count == 40 }
        try await eventually { Self.heartbeats(in: phone.output) == 2 }
        #expect(Self.heartbeats(in: pc.output) == 0)
        // Then silence: the last event came between two ticks, and the PC's beat comes on the 20th tick counted from
        // the first of them (the loop's last one was the second): within an interval of silence, not much before.
        for _ in 1...18 { await pc.registry.sendDueHeartbeats() }
        try await Task.sleep(for: .milliseconds(50))
        #expect(Self.heartbeats(in: pc.output) == 0)
        await pc.registry.sendDueHeartbeats()
        try await eventually { Self.heartbeats(in: pc.output) == 1 }
        await pc.registry.endAll()
    }

    /// A broker hands a session's whole log again after a reconnect (Redis's redelivery): the stream skips what it
    /// has, and what it skips is no write, so it does not put off the stream's heartbeat.
    @Test func eventsHandedAgainAreNoWriteAndDoNotPutOffTheHeartbeat() async throws {
        let harness = Harness(bufferLimit: 64, heartbeatInterval: .seconds(5))
        let id = try #require(SessionID("redelivered"))
        let pc = try await harness.open(id, opening: "")
        let log = [StoredEvent(id: 1, event: .connected()), StoredEvent(id: 2, event: .inputStarted)]
        for event in log { harness.registries.deliver(event, to: id) }
        try await eventually { pc.output.ids.count == 2 }
        // The log again on every tick: the beat still comes on the 20th tick after the last new event.
        for _ in 1...19 {
            await pc.registry.sendDueHeartbeats()
            for event in log { harness.registries.deliver(event, to: id) }
        }
        try await Task.sleep(for: .milliseconds(50))
        #expect(Self.heartbeats(in: pc.output) == 0)
        await pc.registry.sendDueHeartbeats()
        try await eventually { Self.heartbeats(in: pc.output) == 1 }
        #expect(pc.output.ids == ["id: 1", "id: 2"])
        await pc.registry.endAll()
    }

    /// An event the reader already has when its stream opens (at or below its resume point or the record's last,
    /// or in the opening, whose log is read after the attach) is no write either.
    @Test func eventsTheOpeningAlreadyHasAreNoWrite() async throws {
        let harness = Harness(bufferLimit: 64, heartbeatInterval: .seconds(5))
        let id = try #require(SessionID("opening_has"))
        let registry = harness.registries.route(id)
        let (token, items) = try #require(await registry.attach(id, expiresAt: TimeSource.system.now() + 60_000, audience: .pc, now: TimeSource.system.now(), handedThrough: 1))
        await registry.openingWrites(through: 2, session: id, token: token)
        let beats = Task {
            var count = 0
            for await item in items { if case .heartbeat = item { count += 1 } }
            return count
        }
        // Silent for half an interval, then event 2 handed again and again: the beat still comes within the interval
        // (it would come ten ticks late if the first of them counted).
        for tick in 1...20 {
            if tick > 10 { harness.registries.deliver(StoredEvent(id: 2, event: .inputStarted), to: id) }
            await registry.sendDueHeartbeats()
        }
        await registry.endAll()
        #expect(await beats.value == 1)
    }

    /// Whatever ids a store hands (any UInt64, again and again, above or below what the reader has), nothing traps,
    /// and only an id above what the stream has puts its beat off: handed half an interval into its silence, the
    /// beat comes within the interval unless one of them was new.
    @Test func onlyANewEventIDPutsTheBeatOffWhateverTheIDs() async {
        let harness = Harness(bufferLimit: 64, heartbeatInterval: .seconds(5))
        let ids = Gen.oneOf(Gen.uint64(), Gen.uint64(in: 0...8), Gen.always(UInt64.max), Gen.always(UInt64(0)))
        var case_ = 0
        await propertyCheck(count: 100, input: zip(ids, ids.array(of: 0...6))) { had, handed in
            case_ += 1
            guard let id = SessionID("any_ids_\(case_)") else { return }
            let registry = harness.registries.route(id)
            let now = TimeSource.system.now()
            guard let (_, items) = await registry.attach(id, expiresAt: now + 60_000, audience: .pc, now: now, handedThrough: had) else { return }
            let beats = Task {
                var count = 0
                for await item in items { if case .heartbeat = item { count += 1 } }
                return count
            }
            for tick in 1...20 {
                if tick == 10 { for eventID in handed { harness.registries.deliver(StoredEvent(id: eventID, event: .inputStarted), to: id) } }
                await registry.sendDueHeartbeats()
            }
            await registry.end(id, lastWords: nil)
            #expect(await beats.value == (handed.contains { $0 > had } ? 0 : 1), "had \(had), handed \(handed)")
        }
    }

    /// A stall of the loop makes every stream due at once; their next beats are spread again, not kept in step.
    @Test func beatsBroughtTogetherByAStallAreSpreadAgain() async throws {
        let harness = Harness(heartbeatInterval: .seconds(5))
        let (all, only) = try await Self.openSilentStreams(100, named: "stall", in: harness)
        await only.sendDueHeartbeats(advancingBy: 20)
        try await eventually { all.allSatisfy { Self.heartbeats(in: $0) == 1 } }
        let perTick = try await Self.beatsPerTick(20, of: only, into: all)
        try await eventually { all.allSatisfy { Self.heartbeats(in: $0) == 2 } }
        #expect(perTick.filter { $0 > 0 }.count >= 8 && perTick.allSatisfy { $0 <= 15 }, "\(perTick)")
        await only.endAll()
    }

    /// A device's presence review waits its delay in its registry and is started by the sweep after it, once.
    @Test func presenceReviewsWaitTheirDelayAndStartFromTheSweepOnce() async throws {
        let harness = Harness()
        let broker = ScriptedLogBroker(snapshot: [])
        let registry = try #require(harness.registries.registries.first)
        let due = try #require(SessionID("review_due")), waiting = try #require(SessionID("review_waiting"))
        // Due at once, and due in an hour (no sweep of this test reaches it): times that no load can blur.
        await registry.reviewPresence(of: due, side: .pc, after: .zero, through: broker)
        await registry.reviewPresence(of: waiting, side: .phone, after: .seconds(3600), through: broker)
        #expect(broker.reviewed.withLock { $0 }.isEmpty)
        await registry.startDueReviews()
        try await eventually { broker.reviewed.withLock { $0 } == ["review_due pc"] }
        await registry.startDueReviews()
        await registry.startDueReviews()
        try await Task.sleep(for: .milliseconds(100))
        #expect(broker.reviewed.withLock { $0 } == ["review_due pc"])
    }

    /// The registry's shortcut for which events a side writes agrees with the frames the streams make.
    @Test(arguments: [PresenceSide.pc, .phone])
    func whatASideIsSentIsWhatItsFramesSay(_ audience: PresenceSide) {
        let events: [SessionEvent] =
            [.connected(), .connected(pairingCode: "123"), .inputStarted, .complete(Submission(name: "A", phone: "1")), .phoneLeft, .phoneReturned]
            + CancelReason.allCases.map { .cancelled($0) }
        for event in events {
            #expect(ServerSentEvent.isSent(event, to: audience) == (ServerSentEvent(stored: StoredEvent(id: 1, event: event), for: audience) != nil), "\(event)")
        }
    }

    @Test func expiredSessionsStreamsEndOnTheSweepAndThePhoneIsTold() async throws {
        let time = ManualTime()
        let harness = Harness()
        let id = try #require(SessionID("expiring"))
        let now = time.source.now()
        let pc = try await harness.open(id, expiresAt: now + 10_000, now: now)
        let phone = try await harness.open(id, expiresAt: now + 10_000, now: now, audience: .phone)
        await pc.registry.endExpired(now: time.source.now())
        #expect(harness.registries.streamCount == 2)
        time.advance(by: .seconds(10))
        await pc.registry.endExpired(now: time.source.now())
        try await eventually { pc.output.finished && phone.output.finished }
        #expect(pc.output.text == "OPEN\n")
        #expect(phone.output.text == "OPEN\nevent: expired\ndata: {\"type\":\"expired\"}\n\n")
        #expect(harness.registries.streamCount == 0 && harness.registries.sessionCount == 0)
        // An expired session is not attached again.
        #expect(await pc.registry.attach(id, expiresAt: now + 10_000, audience: .pc, now: time.source.now()) == nil)
    }

    /// A stream that ended a moment before its node stops has released its device's presence before the registry's
    /// service returns, so before the broker stops: a release lost to the shutdown would keep the device present for
    /// the whole hold lease instead of the grace (a CI run saw the PC hear phone-left a minute late).
    @Test func theNodeStopsOnlyOnceItsEndedStreamsHaveToldTheBroker() async throws {
        let harness = Harness()
        let broker = GatedReleaseBroker()
        let id = try #require(SessionID("leaving_as_the_node_stops"))
        let (output, _, _) = try await harness.open(id, broker: broker)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [harness.registries], logger: testLogger))
        let stopped = StoppedFlag()
        let running = Task {
            try await group.run()
            stopped.value.store(true, ordering: .relaxed)
        }
        // The device leaves (its connection takes no more writes); its stream's release is on its way to the broker
        // when the node is told to stop.
        try await eventually { output.text == "OPEN\n" }
        output.refuseWrites()
        harness.registries.deliver(StoredEvent(id: 1, event: .inputStarted), to: id)
        try await eventually { broker.releasesAsked == 1 }
        await group.triggerGracefulShutdown()
        try await Task.sleep(for: .milliseconds(300))
        #expect(!stopped.isSet)
        broker.letReleasesThrough()
        try await running.value
        #expect(broker.released == [id])
    }

    @Test func aStreamEndedBeforeItsTaskReadsEndsWithItsLastWords() async throws {
        let harness = Harness()
        let id = try #require(SessionID("early"))
        let (output, registry, start) = try await harness.open(id, start: false)
        await registry.end(id, lastWords: .sessionExpired)
        start()
        try await eventually { output.finished }
        #expect(output.text == "OPEN\nevent: expired\ndata: {\"type\":\"expired\"}\n\n")
    }
}

/// Polls `condition` until it holds or `timeout` passes (for effects that happen on another task).
func eventually(timeout: Duration = .seconds(3), _ condition: @Sendable () async -> Bool) async throws {
    let deadline = ContinuousClock.now + TestPatience.scaled(timeout)
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
    /// The presence reviews asked for, in order.
    let reviewed = Mutex<[String]>([])

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
    func reviewPresence(of id: SessionID, side: PresenceSide) async throws -> PublishOutcome {
        reviewed.withLock { $0.append("\(id.rawValue) \(side.rawValue)") }
        return .sessionNotFound
    }
    func events(of id: SessionID, after: EventID) async throws -> [StoredEvent] {
        duringRead.withLock { $0 }?()
        if failing { throw BrokerError(.unavailable, "scripted outage") }
        return snapshot.filter { $0.id > after }
    }
    func subscribe(_ id: SessionID) async throws {}
    func unsubscribe(_ id: SessionID) async {}
    var health: BrokerHealth { .ok }
}

final class StoppedFlag: Sendable {
    let value = Atomic(false)
    var isSet: Bool { value.load(ordering: .relaxed) }
}

/// A broker whose presence releases wait until the test lets them through (a release on its way to Redis).
final class GatedReleaseBroker: Broker {
    private let gate = AsyncStream.makeStream(of: Void.self)
    private let state = Mutex((asked: 0, released: [SessionID]()))

    var releasesAsked: Int { state.withLock { $0.asked } }
    var released: [SessionID] { state.withLock { $0.released } }
    func letReleasesThrough() { gate.continuation.finish() }

    func releasePresence(of id: SessionID, side: PresenceSide) async throws {
        state.withLock { $0.asked += 1 }
        for await _ in gate.stream {}
        state.withLock { $0.released.append(id) }
    }

    func run() async throws {}
    func openSession(_ id: SessionID, ttl: Duration, readerKey: String?, heldByStream: Bool) async throws -> SessionRecord? { nil }
    func session(_ id: SessionID) async throws -> SessionRecord? { nil }
    func publish(_ event: SessionEvent, to id: SessionID, from phone: PhoneClaim?, idempotencyKey: String?) async throws -> PublishOutcome { .sessionNotFound }
    func holdPresence(of ids: [SessionID], side: PresenceSide) async throws -> [SessionID] { [] }
    func reviewPresence(of id: SessionID, side: PresenceSide) async throws -> PublishOutcome { .sessionNotFound }
    func events(of id: SessionID, after: EventID) async throws -> [StoredEvent] { [] }
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
        let harness = RegistryTests.Harness()
        // The log is read as [1, 2]; event 3 is stored and delivered before the refill uses that read.
        broker.whileReading { harness.registries.deliver(third, to: id) }
        let (output, _, _) = try await harness.open(id, broker: broker)
        harness.registries.deliver(second, to: id)  // 1 is late: a gap, so a refill starts
        try await eventually { output.text.contains("id: 3") }
        #expect(output.ids == ["id: 1", "id: 2", "id: 3"])
    }

    @Test func aRefillThatCannotReadTheLogEndsTheStreamForAResume() async throws {
        let id = try #require(SessionID("race2"))
        let harness = RegistryTests.Harness()
        let (output, _, _) = try await harness.open(id, broker: ScriptedLogBroker(snapshot: [], failing: true))
        harness.registries.deliver(StoredEvent(id: 3, event: .complete(Submission(name: "A", phone: "1"))), to: id)
        try await eventually { output.finished }
        #expect(!output.text.contains("id: 3"))
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

import Broker
import HTTP
import NIOCore
import Synchronization

/// Where a session stream's bytes go: an open event-stream response (``EventStreamChannel``), or a test's fake.
protocol EventStreamOutput: Sendable {
    /// Queues bytes; false when the reader is too far behind (or gone) to take more.
    func write(_ buffer: consuming ByteBuffer) -> Bool
    /// Queues what `fill` writes (nothing written: true, nothing queued); false as ``write(_:)``. The channel frames
    /// the bytes where they were written.
    func write(capacity: Int, _ fill: (inout ByteBuffer) -> Void) -> Bool
    /// Queues bytes framed beforehand; false as ``write(_:)``.
    func write(_ prepared: EventStreamChannel.PreparedBytes) -> Bool
    /// Whether the server drains (the stream's task was cancelled to end it soon).
    var isDraining: Bool { get }
}

extension EventStreamOutput {
    func write(capacity: Int, _ fill: (inout ByteBuffer) -> Void) -> Bool {
        var buffer = ByteBufferAllocator().buffer(capacity: capacity)
        fill(&buffer)
        return buffer.readableBytes == 0 || write(buffer)
    }
}

extension EventStreamChannel: EventStreamOutput {}

/// One device's stream of one session: the PC's (every event) or the phone's own channel (what the phone must
/// know: the session ended, and how). Its ``run(on:)`` is the one task that serves the stream, pinned to the
/// connection's loop: it reads its session's ``StreamItem``s from the registry's `AsyncStream` and writes them, in id
/// order and each once. It owns its state, so it needs no lock.
///
/// When ids jump (an event was lost or overtaken on the way) it fills the gap from the session's log first. A reader
/// that cannot take more is cut: the stream ends, and the browser resumes from its `Last-Event-ID`.
struct SessionStream: Sendable {
    let sessionID: SessionID
    /// Whose stream this is: what it is sent, and whose presence it holds.
    let audience: PresenceSide
    /// The last event id the reader has (its `Last-Event-ID`, or 0).
    let resumeAfter: EventID
    /// The stream's first bytes and the events they replay, taken once by ``run(on:)``: a held stream keeps
    /// neither for its life.
    let opening: Opening
    let items: AsyncStream<StreamItem>
    /// The registry that holds this stream, and its token there.
    let registry: SessionRegistry
    let token: Int
    let registries: SessionRegistries
    /// The session's log, for gaps, and the subscription this stream holds (released when it ends).
    let broker: any Broker
    let metrics: TandemMetrics?
    /// How long after its device's last stream here closed the broker is asked whether it came back (the presence
    /// grace and a little more); nil: never asked.
    let reviewDelay: Duration?

    /// A stream's first bytes (the retry hint, session-info, a resync, the replay) and the events replayed in them.
    final class Opening: Sendable {
        private let parts: Mutex<(bytes: ByteBuffer, replayed: [StoredEvent])?>

        init(_ bytes: ByteBuffer, replayed: [StoredEvent]) {
            parts = Mutex((bytes, replayed))
        }

        /// The parts, once; empty after that.
        func take() -> (bytes: ByteBuffer, replayed: [StoredEvent]) {
            parts.withLock { parts in
                defer { parts = nil }
                return parts ?? (ByteBuffer(), [])
            }
        }
    }

    /// The heartbeat comment, framed once and shared by every stream (writing it copies nothing).
    static let heartbeatBytes: EventStreamChannel.PreparedBytes = {
        var buffer = ByteBuffer()
        ServerSentEvent.writeComment("heartbeat", to: &buffer)
        return EventStreamChannel.PreparedBytes(buffer)
    }()

    /// Serves the stream until its session ends, it is cut, its connection closes or the node drains; then
    /// releases what it holds. Cancellation (the connection closed, the node drains) ends the wait at once.
    ///
    /// A held stream's task stays suspended in this function for the stream's life, and a task's frames live in
    /// slabs of about 1 KiB: every frame that does not fit the slab costs another for as long as the stream is open.
    /// So this frame keeps only what the loop needs across a wait (the resume point, the iterator); each item is
    /// handled by a synchronous function, and the rare waits (a gap filled from the log, the ending) are out of line.
    func run(on output: any EventStreamOutput) async {
        var progress = Progress(lastSent: resumeAfter, sawFinalEvent: false)
        if start(on: output, progress: &progress) {
            var iterator = items.makeAsyncIterator()
            serve: while let item = await iterator.next() {
                switch handle(item, on: output, progress: &progress) {
                case .next: continue
                case .stop: break serve
                case .fillGap:
                    guard await fillGap(on: output, progress: &progress) else { break serve }
                }
            }
        }
        // The node drains: the browser is told to come back at once (to another node, behind a balancer).
        if output.isDraining { writeDrainHint(on: output) }
        await finish(sawFinalEvent: progress.sawFinalEvent)
    }

    /// Where the reader is: the last event id written to it, and whether the session's final event was among them.
    struct Progress {
        var lastSent: EventID
        var sawFinalEvent: Bool
    }

    /// What the loop does after an item.
    enum Step {
        case next
        case stop
        /// Ids jumped (an event was lost or overtaken between nodes): fill the gap from the log, then go on.
        case fillGap
    }

    /// Writes the opening bytes; false when the reader is already gone.
    private func start(on output: any EventStreamOutput, progress: inout Progress) -> Bool {
        let (opening, replayed) = self.opening.take()
        progress.lastSent = max(resumeAfter, replayed.last?.id ?? 0)
        progress.sawFinalEvent = replayed.contains { $0.event.isFinal }
        // Handed over, not shared: the channel frames it where it is.
        guard output.write(consume opening) else { return false }
        for event in replayed where ServerSentEvent(stored: event, for: audience) != nil { metrics?.delivered(event, live: false) }
        return true
    }

    private func handle(_ item: StreamItem, on output: any EventStreamOutput, progress: inout Progress) -> Step {
        switch item {
        case .heartbeat:
            guard output.write(Self.heartbeatBytes) else {
                metrics?.slowReaderCut()
                return .stop
            }
            return .next
        case .end(let lastWords):
            if let lastWords { _ = output.write(capacity: 128) { lastWords.write(to: &$0) } }
            return .stop
        case .event(let event):
            if event.event.isFinal { progress.sawFinalEvent = true }
            guard event.id > progress.lastSent else { return .next }
            // A gap: the log has everything up to this event.
            guard Self.isNext(event.id, after: progress.lastSent) else { return .fillGap }
            guard send(CollectionOfOne(event), after: &progress.lastSent, to: output) else {
                metrics?.slowReaderCut()
                return .stop
            }
            return .next
        }
    }

    /// Sends what the log has after the reader's last event; false when the stream must end: no log, or one that does
    /// not reach back past the gap (the session expired). Rather than wait or loop, the stream then ends, and the
    /// browser resumes from its Last-Event-ID wherever the log is.
    @inline(never)
    private func fillGap(on output: any EventStreamOutput, progress: inout Progress) async -> Bool {
        guard let missing = await missingEvents(after: progress.lastSent) else { return false }
        if missing.contains(where: { $0.event.isFinal }) { progress.sawFinalEvent = true }
        guard send(missing, after: &progress.lastSent, to: output) else {
            metrics?.slowReaderCut()
            return false
        }
        return true
    }

    private func writeDrainHint(on output: any EventStreamOutput) {
        _ = output.write(capacity: 32) { ServerSentEvent.writeRetry(milliseconds: API.drainRetryMilliseconds, to: &$0) }
    }

    /// The session's events after `lastSent` from its log, when the log reaches back to `lastSent`; nil otherwise.
    @inline(never)
    private func missingEvents(after lastSent: EventID) async -> [StoredEvent]? {
        guard let missing = try? await broker.events(of: sessionID, after: lastSent), let first = missing.first,
            Self.isNext(first.id, after: lastSent)
        else { return nil }
        return missing
    }

    /// Writes `events` after `lastSent`, in one write; the events the audience is not sent still move its resume
    /// point. False when the reader cannot take more.
    private func send(_ events: some Collection<StoredEvent>, after lastSent: inout EventID, to output: any EventStreamOutput) -> Bool {
        // The written events, for the metrics: the first kept apart, so the usual single event needs no array.
        var firstSent: StoredEvent?
        var moreSent: [StoredEvent] = []
        let audience = self.audience
        let written = output.write(capacity: 256) { buffer in
            for event in events where Self.isNext(event.id, after: lastSent) {
                lastSent = event.id
                guard let frame = ServerSentEvent(stored: event, for: audience) else { continue }
                frame.write(to: &buffer)
                if firstSent == nil { firstSent = event } else { moreSent.append(event) }
            }
        }
        guard written else { return false }
        if let metrics, let firstSent {
            metrics.delivered(firstSent, live: true)
            for event in moreSent { metrics.delivered(event, live: true) }
        }
        return true
    }

    /// The stream is over (see ``depart(_:token:side:registry:registries:broker:metrics:reviewDelay:subscribed:sessionOver:)``).
    @inline(never)
    private func finish(sawFinalEvent: Bool) async {
        await Self.depart(
            sessionID, token: token, side: audience, registry: registry, registries: registries, broker: broker, metrics: metrics,
            reviewDelay: reviewDelay, subscribed: true, sessionOver: sawFinalEvent)
    }

    /// A stream of `side` leaves this node: it ended, or it failed to open after its request had held its device
    /// present. The registry forgets it, and the broker its subscription when it had one. When it was the device's
    /// last stream here and the session is not over, the device left: the grace starts now, and once it is over the
    /// broker is asked whether the device came back (to any node); if not, the other side is told (the PC gone: the
    /// session is cancelled; the phone gone: the PC hears phone-left). The node's shutdown waits for all of it.
    static func depart(
        _ id: SessionID, token: Int, side: PresenceSide, registry: SessionRegistry, registries: SessionRegistries, broker: any Broker,
        metrics: TandemMetrics?, reviewDelay: Duration?, subscribed: Bool, sessionOver: Bool
    ) async {
        registries.departureBegins()
        defer { registries.departureEnded() }
        let wasLast: Bool
        if let local = SessionRegistries.onItsLoop(registry, (id, token), { $0.detach($1.0, token: $1.1) }) {
            wasLast = local
        } else {
            wasLast = await registry.detach(id, token: token)
        }
        registries.release(id)
        if wasLast && side == .pc { metrics?.ops?.pcLeft(id) }
        if subscribed { await broker.unsubscribe(id) }
        guard wasLast && !sessionOver else { return }
        // The grace starts now, in this task: a task of its own could wait behind a busy pool while the device's hold
        // lease (longer than the grace) kept it present.
        do {
            try await broker.releasePresence(of: id, side: side)
        } catch {
            return  // the store was away: the hold lease lapses by itself, and the other side's rounds notice
        }
        guard let reviewDelay else { return }
        // A step of the other side within the grace finds the lapse by itself; the review tells a side that takes no
        // step.
        // Its registry holds it until then: this task ends now.
        if SessionRegistries.onItsLoop(registry, (id, side, reviewDelay, broker), { $0.reviewPresence(of: $1.0, side: $1.1, after: $1.2, through: $1.3) }) == nil {
            await registry.reviewPresence(of: id, side: side, after: reviewDelay, through: broker)
        }
    }

    /// Whether `id` directly follows `last`. Written without `last + 1`: ids come from outside (a resume point is
    /// clamped, but a log entry comes from Redis), and no value from outside may make arithmetic trap.
    static func isNext(_ id: EventID, after last: EventID) -> Bool {
        id > last && id - last == 1
    }
}

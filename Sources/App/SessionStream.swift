import Broker
import HTTP
import NIOCore
import Synchronization

/// Where a session stream's bytes go: an open event-stream response (``EventStreamChannel``), or a test's fake.
protocol EventStreamOutput: Sendable {
    /// Queues bytes; false when the reader is too far behind (or gone) to take more.
    func write(_ buffer: ByteBuffer) -> Bool
    /// Whether the server drains (the stream's task was cancelled to end it soon).
    var isDraining: Bool { get }
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

    /// The heartbeat comment, one buffer shared by every stream (writing a ByteBuffer does not copy it).
    static let heartbeatBytes: ByteBuffer = {
        var buffer = ByteBuffer()
        ServerSentEvent.writeComment("heartbeat", to: &buffer)
        return buffer
    }()

    /// Serves the stream until its session ends, it is cut, its connection closes or the node drains; then
    /// releases what it holds. Cancellation (the connection closed, the node drains) ends the `for await` at once.
    func run(on output: any EventStreamOutput) async {
        let (opening, replayed) = self.opening.take()
        var lastSent = max(resumeAfter, replayed.last?.id ?? 0)
        var sawFinalEvent = replayed.contains { $0.event.isFinal }
        serve: do {
            guard output.write(opening) else { break serve }
            for event in replayed where ServerSentEvent(stored: event, for: audience) != nil { metrics?.delivered(event, live: false) }
            for await item in items {
                switch item {
                case .heartbeat:
                    guard output.write(Self.heartbeatBytes) else {
                        metrics?.slowReaderCut()
                        break serve
                    }
                case .end(let lastWords):
                    if let lastWords {
                        var buffer = ByteBuffer()
                        lastWords.write(to: &buffer)
                        _ = output.write(buffer)
                    }
                    break serve
                case .event(let event):
                    if event.event.isFinal { sawFinalEvent = true }
                    guard event.id > lastSent else { continue }
                    var events = [event]
                    if !Self.isNext(event.id, after: lastSent) {
                        // A gap (an event lost or overtaken between nodes): the log has everything up to this event.
                        // No log, or one that does not reach past the gap (the session expired): rather than wait or
                        // loop, the stream ends, and the browser resumes from its Last-Event-ID wherever the log is.
                        guard let missing = try? await broker.events(of: sessionID, after: lastSent), let first = missing.first,
                            Self.isNext(first.id, after: lastSent)
                        else { break serve }
                        events = missing
                        if missing.contains(where: { $0.event.isFinal }) { sawFinalEvent = true }
                    }
                    guard send(events, after: &lastSent, to: output) else {
                        metrics?.slowReaderCut()
                        break serve
                    }
                }
            }
        }
        // The node drains: the browser is told to come back at once (to another node, behind a balancer).
        if output.isDraining {
            var buffer = ByteBuffer()
            ServerSentEvent.writeRetry(milliseconds: API.drainRetryMilliseconds, to: &buffer)
            _ = output.write(buffer)
        }
        await finish(sawFinalEvent: sawFinalEvent)
    }

    /// Writes `events` after `lastSent`, in one write; the events the audience is not sent still move its resume
    /// point. False when the reader cannot take more.
    private func send(_ events: [StoredEvent], after lastSent: inout EventID, to output: any EventStreamOutput) -> Bool {
        var buffer = ByteBufferAllocator().buffer(capacity: 256)
        var sent: [StoredEvent] = []
        for event in events where Self.isNext(event.id, after: lastSent) {
            lastSent = event.id
            guard let frame = ServerSentEvent(stored: event, for: audience) else { continue }
            frame.write(to: &buffer)
            sent.append(event)
        }
        guard buffer.readableBytes > 0 else { return true }
        guard output.write(buffer) else { return false }
        for event in sent { metrics?.delivered(event, live: true) }
        return true
    }

    /// The stream is over: the registry forgets it and the broker its subscription. The device left (its last
    /// stream here closed, its session not over): the grace starts now, and once it is over the broker is asked
    /// whether the device came back (to any node): if not, the other side is told now (the PC gone: the session is
    /// cancelled; the phone gone: the PC hears phone-left).
    private func finish(sawFinalEvent: Bool) async {
        let id = sessionID
        let token = self.token
        let wasLast: Bool
        if let local = SessionRegistries.onItsLoop(registry, { $0.detach(id, token: token) }) {
            wasLast = local
        } else {
            wasLast = await registry.detach(id, token: token)
        }
        registries.release(id)
        if wasLast && audience == .pc { metrics?.ops?.pcLeft(id) }
        await broker.unsubscribe(id)
        guard wasLast && !sawFinalEvent else { return }
        let broker = self.broker
        let side = audience
        let reviewDelay = self.reviewDelay
        // Its own task: the connection's end does not wait for the grace.
        Task {
            do {
                try await broker.releasePresence(of: id, side: side)
                guard let reviewDelay else { return }
                try await Task.sleep(for: reviewDelay)
                _ = try await broker.reviewPresence(of: id, side: side)
            } catch {
                // The store was away: the hold lease lapses by itself, and the other side's rounds notice.
            }
        }
    }

    /// Whether `id` directly follows `last`. Written without `last + 1`: ids come from outside (a resume point is
    /// clamped, but a log entry comes from Redis), and no value from outside may make arithmetic trap.
    static func isNext(_ id: EventID, after last: EventID) -> Bool {
        id > last && id - last == 1
    }
}

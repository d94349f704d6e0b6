import Broker
import HTTP
import NIOCore
import Synchronization

/// Where a session stream's bytes go: an open event-stream response (``EventStreamChannel``), or a test's fake.
protocol EventStreamOutput: Sendable {
    /// Queues bytes; false when the reader is too far behind (or gone) to take more.
    func write(_ buffer: ByteBuffer) -> Bool
    /// Ends the response.
    func finish()
    /// Where the stream's follow-up tasks run best (the connection's event loop); nil for the global pool.
    var preferredExecutor: (any TaskExecutor)? { get }
}

extension EventStreamChannel: EventStreamOutput {
    var preferredExecutor: (any TaskExecutor)? { taskExecutor }
}

/// One device's stream of one session: the PC's (every event) or the phone's own channel (what the phone must
/// know: the session ended, and how). No task waits on it: the registry hands it events and heartbeats, and it writes
/// them straight to its connection, in id order and each once.
///
/// Before its response is ready (`bind`) it keeps what arrives, up to `bufferLimit` events. When ids jump (an event
/// was lost or overtaken on the way) it fills the gap from the session's log first. A reader that cannot take more
/// is cut: the stream ends, and the browser resumes from its `Last-Event-ID`.
final class SessionStream: EventStreamDelegate {
    let sessionID: SessionID
    let expiresAt: Int64
    /// Whose stream this is: what it is sent, and whose presence it holds.
    let audience: PresenceSide

    private struct State {
        var output: (any EventStreamOutput)?
        var pending: [StoredEvent] = []
        var lastSent: EventID
        var refilling = false
        var ended = false
        /// A final event (`complete`, `cancelled`) reached the stream: its session needs no device any more.
        var sawFinalEvent = false
    }

    private let state: Mutex<State>
    private let bufferLimit: Int
    private let metrics: TandemMetrics?
    /// The session's log, for gaps, and the subscription this stream holds (released when its connection closes).
    private let broker: any Broker
    private let registry: SessionRegistry?
    /// How long after its device's last stream here closed the broker is asked whether it came back (the presence
    /// grace and a little more); nil: never asked.
    private let reviewDelay: Duration?

    /// - Parameters:
    ///   - resumeAfter: the last event id the reader has (its `Last-Event-ID`, or 0).
    ///   - broker: reads the session's log to fill gaps; this stream's subscription is dropped from it on close.
    ///   - registry: detaches the stream when its connection closes.
    ///   - audience: the PC's stream or the phone's channel.
    ///   - reviewDelay: when to ask whether the device came back after its last stream here closed.
    init(
        sessionID: SessionID, expiresAt: Int64, resumeAfter: EventID, bufferLimit: Int, metrics: TandemMetrics?,
        broker: any Broker, registry: SessionRegistry?, audience: PresenceSide = .pc, reviewDelay: Duration? = nil
    ) {
        self.sessionID = sessionID
        self.expiresAt = expiresAt
        self.audience = audience
        self.reviewDelay = reviewDelay
        self.state = Mutex(State(lastSent: resumeAfter))
        self.bufferLimit = bufferLimit
        self.metrics = metrics
        self.broker = broker
        self.registry = registry
    }

    /// This node drains: the browser is told to come back at once (to another node, behind a balancer).
    func eventStreamShouldDrain() {
        end(retryMilliseconds: API.drainRetryMilliseconds)
    }

    /// The connection is gone: the registry forgets the stream and the broker its subscription.
    func eventStreamDidClose() {
        let wasLast = registry?.detach(self) ?? false
        let broker = self.broker
        let id = sessionID
        let side = audience
        let reviewDelay = self.reviewDelay
        let (executor, finished) = state.withLock { ($0.output?.preferredExecutor, $0.sawFinalEvent) }
        // The connection's end is an event-loop callback; dropping the subscription is async (Redis confirms it).
        Task(executorPreference: executor) {
            await broker.unsubscribe(id)
            // The device left (its last stream here closed, its session not over): the grace starts now. Once it is
            // over, the broker is asked whether the device came back (to any node): if not, the other side is told
            // now (the PC gone: the session is cancelled; the phone gone: the PC hears phone-left).
            guard wasLast && !finished else { return }
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

    /// Connects the stream to its response: writes `opening` (which carries `replayed`, the events after the
    /// reader's resume point), then whatever arrived meanwhile.
    func bind(_ output: any EventStreamOutput, opening: ByteBuffer, replayed: [StoredEvent]) {
        let cut = state.withLock { state -> Bool in
            if replayed.contains(where: { $0.event.isFinal }) { state.sawFinalEvent = true }
            // Ended before its response was ready (expired, or the node drains): end the response too.
            guard !state.ended else { return true }
            state.output = output
            guard output.write(opening) else { return true }
            for event in replayed { metrics?.delivered(event, live: false) }
            state.lastSent = max(state.lastSent, replayed.last?.id ?? 0)
            let pending = state.pending
            state.pending = []
            return !send(pending, in: &state)
        }
        if cut {
            end()
            output.finish()
        }
    }

    func deliver(_ event: StoredEvent) {
        let cut = state.withLock { state -> Bool in
            if event.event.isFinal { state.sawFinalEvent = true }
            guard !state.ended else { return false }
            if state.output == nil || state.refilling {
                // Bounded: past the limit the gap is filled from the log instead.
                if state.pending.count < bufferLimit { state.pending.append(event) }
                return false
            }
            return !send(event, in: &state)
        }
        if cut { cutSlowReader() }
    }

    /// The heartbeat comment, one buffer shared by every stream (writing a ByteBuffer does not copy it), so a sweep
    /// over thousands of streams allocates nothing per stream.
    static let heartbeatBytes: ByteBuffer = {
        var buffer = ByteBuffer()
        ServerSentEvent.writeComment("heartbeat", to: &buffer)
        return buffer
    }()

    /// Sends a heartbeat comment; a reader that cannot take even that is cut.
    func heartbeat() {
        let cut = state.withLock { state -> Bool in
            guard !state.ended, let output = state.output, !state.refilling else { return false }
            return !output.write(Self.heartbeatBytes)
        }
        if cut { cutSlowReader() }
    }

    /// A reader whose connection would not take more: the stream ends, and the browser resumes from its last id.
    private func cutSlowReader() {
        metrics?.slowReaderCut()
        end()
    }

    /// Ends the stream, after a `retry:` hint when one is given (a draining node asks for a quick return).
    func end(retryMilliseconds: Int? = nil) {
        end { buffer in
            if let retryMilliseconds { ServerSentEvent.writeRetry(milliseconds: retryMilliseconds, to: &buffer) }
        }
    }

    /// Ends the stream after one last event (``ServerSentEvent/sessionExpired``: its session is gone).
    func end(sending last: ServerSentEvent) {
        end { last.write(to: &$0) }
    }

    /// Ends the stream once, writing what `lastWords` puts in a buffer (if anything) before it finishes.
    private func end(writing lastWords: (inout ByteBuffer) -> Void) {
        let output = state.withLock { state -> (any EventStreamOutput)? in
            guard !state.ended else { return nil }
            state.ended = true
            state.pending = []
            return state.output
        }
        guard let output else { return }
        var buffer = ByteBuffer()
        lastWords(&buffer)
        if buffer.readableBytes > 0 { _ = output.write(buffer) }
        output.finish()
    }

    var isEnded: Bool { state.withLock { $0.ended } }

    /// Whether `id` directly follows `last`. Written without `last + 1`: ids come from outside (a resume point is
    /// clamped, but a log entry comes from Redis), and no value from outside may make arithmetic trap.
    static func isNext(_ id: EventID, after last: EventID) -> Bool {
        id > last && id - last == 1
    }

    /// One live event: the common case, written without sorting or lists when it is the next one.
    private func send(_ event: StoredEvent, in state: inout State) -> Bool {
        guard Self.isNext(event.id, after: state.lastSent) else { return send([event], in: &state) }
        guard let output = state.output else { return true }
        state.lastSent = event.id
        // An event the phone is not sent still moves its resume point.
        guard let frame = ServerSentEvent(stored: event, for: audience) else { return true }
        var buffer = ByteBufferAllocator().buffer(capacity: 256)
        frame.write(to: &buffer)
        guard output.write(buffer) else { return false }
        metrics?.delivered(event, live: true)
        return true
    }

    /// Writes `events` in id order, skipping what the reader has; on a gap, starts a refill from the log and keeps
    /// the rest for after it. False when the reader cannot take more.
    private func send(_ events: [StoredEvent], in state: inout State) -> Bool {
        guard let output = state.output else { return true }
        var batch = ByteBufferAllocator().buffer(capacity: 256)
        var sent: [StoredEvent] = []
        for (index, event) in events.sorted(by: { $0.id < $1.id }).enumerated() {
            if event.id <= state.lastSent { continue }
            if !Self.isNext(event.id, after: state.lastSent) {
                state.refilling = true
                state.pending = Array(events.sorted(by: { $0.id < $1.id })[index...])
                startRefill(after: state.lastSent, on: output.preferredExecutor)
                break
            }
            ServerSentEvent(stored: event, for: audience)?.write(to: &batch)
            state.lastSent = event.id
            sent.append(event)
        }
        guard batch.readableBytes > 0 else { return true }
        guard output.write(batch) else { return false }
        for event in sent { metrics?.delivered(event, live: true) }
        return true
    }

    private func startRefill(after lastSent: EventID, on executor: (any TaskExecutor)?) {
        let broker = self.broker
        let id = sessionID
        // A gap is rare (an event lost or overtaken between nodes); the log read is async, so it gets a task.
        Task(executorPreference: executor) {
            let missing = try? await broker.events(of: id, after: lastSent)
            let cut = self.state.withLock { state -> Bool in
                guard !state.ended else { return false }
                state.refilling = false
                // No log, or a log that does not reach past the gap (the session expired): rather than wait or loop,
                // the stream ends, and the browser resumes from its Last-Event-ID wherever the log still is.
                guard let missing, let first = missing.first, Self.isNext(first.id, after: state.lastSent) else { return true }
                // Everything kept meanwhile goes too, the events stored after the log was read included; if a gap
                // remains among them, `send` starts another refill, which has made progress by now.
                let events = missing + state.pending
                state.pending = []
                return !self.send(events, in: &state)
            }
            if cut { self.end() }
        }
    }
}

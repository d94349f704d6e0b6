import Broker
import Logging
import ServiceLifecycle
import Synchronization

/// Owns this node's live SSE streams and their expiry. A stream is a ``SessionStream`` that writes to its
/// connection directly; the registry only decides which streams get what. One loop in `run()` sends heartbeats to
/// every stream and ends the streams of expired sessions; there is no timer or task per session or per stream.
final class SessionRegistry: SessionEventSink, Service {
    private struct LocalSession {
        var expiresAt: Int64
        /// Nearly always one (the PC's stream); an array costs less than a dictionary for so few.
        var streams: [SessionStream] = []
    }

    private struct State {
        var sessions: [SessionID: LocalSession] = [:]
        var openStreams = 0
    }

    /// A lock, not an actor: an event is delivered on the thread that published it (a request's event loop, or the
    /// Redis subscriber's), with no hop to another executor and back. Streams are called outside the lock.
    private let state = Mutex(State())
    private let metrics: TandemMetrics?
    private let heartbeatInterval: Duration
    private let sweepInterval: Duration
    private let time: TimeSource
    private let logger: Logger

    /// - Parameters:
    ///   - heartbeatInterval: how often every stream gets a heartbeat.
    ///   - sweepInterval: how often expired sessions' streams are ended (the expiry's resolution).
    init(
        heartbeatInterval: Duration,
        sweepInterval: Duration = .milliseconds(250),
        time: TimeSource = .system,
        metrics: TandemMetrics? = nil,
        logger: Logger
    ) {
        self.metrics = metrics
        self.heartbeatInterval = heartbeatInterval
        self.sweepInterval = sweepInterval
        self.time = time
        self.logger = logger
    }

    /// Adds a stream; it gets its session's events until it is detached or ends. The caller must `detach` it.
    func attach(_ stream: SessionStream) {
        guard stream.expiresAt > time.now() else {
            stream.end()
            return
        }
        state.withLock { state in
            state.sessions[stream.sessionID, default: LocalSession(expiresAt: stream.expiresAt)].streams.append(stream)
            state.sessions[stream.sessionID]?.expiresAt = stream.expiresAt
            state.openStreams += 1
            countsChanged(state)
        }
    }

    /// Removes a stream; the session's entry goes with its last stream.
    func detach(_ stream: SessionStream) {
        stream.end()
        let id = stream.sessionID
        state.withLock { state in
            guard var session = state.sessions[id], let index = session.streams.firstIndex(where: { $0 === stream }) else { return }
            session.streams.remove(at: index)
            state.sessions[id] = session.streams.isEmpty ? nil : session
            state.openStreams -= 1
            countsChanged(state)
        }
    }

    func deliver(_ event: StoredEvent, to id: SessionID) {
        guard let streams = state.withLock({ $0.sessions[id]?.streams }) else { return }
        for stream in streams { stream.deliver(event) }
    }

    /// The broker found the session gone before its expiry (Redis restarted empty or was flushed): its streams end
    /// with an `expired` event, so the PC page starts a new session now instead of waiting for a countdown whose
    /// session no longer exists.
    func sessionEnded(_ id: SessionID) {
        let streams = state.withLock { state -> [SessionStream] in
            guard let session = state.sessions.removeValue(forKey: id) else { return [] }
            state.openStreams -= session.streams.count
            countsChanged(state)
            return session.streams
        }
        if !streams.isEmpty { logger.info("a held session is gone from the broker; its streams end", metadata: ["streams": "\(streams.count)"]) }
        for stream in streams { stream.end(sending: .sessionExpired) }
    }

    /// Live streams on this node.
    var streamCount: Int { state.withLock { $0.openStreams } }
    /// Sessions with at least one live stream on this node.
    var sessionCount: Int { state.withLock { $0.sessions.count } }

    private func countsChanged(_ state: borrowing State) {
        metrics?.streamsChanged(openStreams: state.openStreams, sessions: state.sessions.count)
    }

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                // Heartbeats are spread over the interval: each sweep sends them to one slice of the streams, so
                // 19,000 streams never stall the event loop for one burst of writes (a latency spike for every
                // event caught behind it). Each stream still gets one heartbeat per interval.
                let slices = max(1, Int((self.heartbeatInterval / self.sweepInterval).rounded()))
                // Deadlines on the clock, not sleeps added up: a sweep takes time, and added-up sleeps would stretch
                // the heartbeat period past what proxies were promised.
                let clock = ContinuousClock()
                var tick = 0
                var next = clock.now + self.sweepInterval
                while true {
                    try await Task.sleep(until: next, clock: clock)
                    self.endExpiredStreams()
                    // Slices missed while the machine stalled are sent now, at most one interval's worth.
                    var sent = 0
                    repeat {
                        self.sendHeartbeats(slice: tick % slices, of: slices)
                        tick += 1
                        sent += 1
                        next += self.sweepInterval
                    } while next <= clock.now && sent < slices
                    if next <= clock.now { next = clock.now + self.sweepInterval }
                }
            }
        } catch is CancellationError {}
        endAllStreams()
    }

    /// Ends the streams of every session whose expiry has passed.
    func endExpiredStreams() {
        let now = time.now()
        let expired = state.withLock { state -> [SessionStream] in
            var expired: [SessionStream] = []
            // Ids first: removing while iterating would copy the whole dictionary.
            for id in state.sessions.compactMap({ $0.value.expiresAt <= now ? $0.key : nil }) {
                guard let session = state.sessions.removeValue(forKey: id) else { continue }
                expired += session.streams
                state.openStreams -= session.streams.count
            }
            if !expired.isEmpty { countsChanged(state) }
            return expired
        }
        for stream in expired { stream.end() }
    }

    /// Sends a heartbeat to every stream.
    func sendHeartbeats() {
        sendHeartbeats(slice: 0, of: 1)
    }

    /// Sends a heartbeat to the streams of one of `slices` fixed slices (a stream stays in its slice for life).
    func sendHeartbeats(slice: Int, of slices: Int) {
        let due = state.withLock { state -> [SessionStream] in
            var due: [SessionStream] = []
            for session in state.sessions.values {
                for stream in session.streams where Self.heartbeatSlice(of: stream, among: slices) == slice { due.append(stream) }
            }
            return due
        }
        for stream in due { stream.heartbeat() }
    }

    /// A stream's slice, from its address: fixed for its life. The address is mixed (Fibonacci hashing) before the
    /// modulo, since objects allocated one after another sit a fixed stride apart and would crowd a few slices.
    static func heartbeatSlice(of stream: SessionStream, among slices: Int) -> Int {
        let mixed = UInt64(UInt(bitPattern: ObjectIdentifier(stream))) &* 0x9E37_79B9_7F4A_7C15
        return Int((mixed >> 32) % UInt64(max(1, slices)))
    }

    private func endAllStreams() {
        let streams = state.withLock { state -> [SessionStream] in
            defer {
                state.sessions.removeAll()
                state.openStreams = 0
                countsChanged(state)
            }
            return state.sessions.values.flatMap(\.streams)
        }
        for stream in streams { stream.end() }
    }
}

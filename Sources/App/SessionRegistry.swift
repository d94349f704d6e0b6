import Broker
import Logging
import ServiceLifecycle

/// Owns this node's live SSE streams and their expiry. A stream is a ``SessionStream`` that writes to its
/// connection directly; the registry only decides which streams get what. One loop in `run()` sends heartbeats to
/// every stream and ends the streams of expired sessions; there is no timer or task per session or per stream.
actor SessionRegistry: SessionEventSink, Service {
    private struct LocalSession {
        var expiresAt: Int64
        /// Nearly always one (the PC's stream); an array costs less than a dictionary for so few.
        var streams: [SessionStream] = []
    }

    private var sessions: [SessionID: LocalSession] = [:]
    private var openStreams = 0 {
        didSet { metrics?.streamsChanged(openStreams: openStreams, sessions: sessions.count) }
    }
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
        sessions[stream.sessionID, default: LocalSession(expiresAt: stream.expiresAt)].streams.append(stream)
        sessions[stream.sessionID]?.expiresAt = stream.expiresAt
        openStreams += 1
    }

    /// Removes a stream; the session's entry goes with its last stream.
    func detach(_ stream: SessionStream) {
        stream.end()
        let id = stream.sessionID
        guard var session = sessions[id], let index = session.streams.firstIndex(where: { $0 === stream }) else { return }
        session.streams.remove(at: index)
        sessions[id] = session.streams.isEmpty ? nil : session
        openStreams -= 1
    }

    func deliver(_ event: StoredEvent, to id: SessionID) {
        guard let session = sessions[id] else { return }
        for stream in session.streams { stream.deliver(event) }
    }

    /// Live streams on this node.
    var streamCount: Int { openStreams }
    /// Sessions with at least one live stream on this node.
    var sessionCount: Int { sessions.count }

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                // Deadlines on the clock, not sleeps added up: with thousands of streams a sweep takes time, and
                // added-up sleeps would stretch the heartbeat period past what proxies were promised.
                let clock = ContinuousClock()
                var nextSweep = clock.now + self.sweepInterval
                var nextHeartbeat = clock.now + self.heartbeatInterval
                while true {
                    try await Task.sleep(until: min(nextSweep, nextHeartbeat), clock: clock)
                    let now = clock.now
                    if now >= nextSweep {
                        await self.endExpiredStreams()
                        nextSweep = now + self.sweepInterval
                    }
                    if now >= nextHeartbeat {
                        await self.sendHeartbeats()
                        nextHeartbeat += self.heartbeatInterval
                        if nextHeartbeat < now { nextHeartbeat = now + self.heartbeatInterval }
                    }
                }
            }
        } catch is CancellationError {}
        endAllStreams()
    }

    /// Ends the streams of every session whose expiry has passed.
    func endExpiredStreams() {
        let now = time.now()
        for (id, session) in sessions where session.expiresAt <= now {
            for stream in session.streams { stream.end() }
            sessions[id] = nil
            openStreams -= session.streams.count
        }
    }

    func sendHeartbeats() {
        for session in sessions.values {
            for stream in session.streams { stream.heartbeat() }
        }
    }

    private func endAllStreams() {
        for session in sessions.values {
            for stream in session.streams { stream.end() }
        }
        sessions.removeAll()
        openStreams = 0
    }
}

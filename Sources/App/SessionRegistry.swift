import Broker
import Logging
import ServiceLifecycle

/// Owns this node's live SSE streams and their expiry. Each stream is an `AsyncStream` with a bounded buffer: a
/// reader that falls that far behind is cut (its client resumes from `Last-Event-ID`), so no slow reader grows
/// memory. One loop in `run()` sends heartbeats to every stream and ends the streams of expired sessions; there is
/// no timer or task per session or per stream.
actor SessionRegistry: SessionEventSink, Service {
    /// What a stream's reader receives.
    enum StreamItem: Sendable, Equatable {
        case event(StoredEvent)
        case heartbeat
    }

    /// A stream handed to a reader. `finish()` ends it from anywhere (the connection closed, the server drains).
    struct Stream: Sendable {
        let token: UInt64
        let items: AsyncStream<StreamItem>
        fileprivate let continuation: AsyncStream<StreamItem>.Continuation

        func finish() { continuation.finish() }
    }

    private struct LocalSession {
        var expiresAt: Int64
        var streams: [UInt64: AsyncStream<StreamItem>.Continuation] = [:]
    }

    private var sessions: [SessionID: LocalSession] = [:]
    private var nextToken: UInt64 = 0
    private var openStreams = 0 {
        didSet { metrics?.streamsChanged(openStreams: openStreams, sessions: sessions.count) }
    }
    private let metrics: TandemMetrics?
    private let bufferedItems: Int
    private let heartbeatInterval: Duration
    private let sweepInterval: Duration
    private let time: TimeSource
    private let logger: Logger

    /// - Parameters:
    ///   - bufferedItems: items a stream may hold for a slow reader before it is cut.
    ///   - heartbeatInterval: how often every stream gets a heartbeat.
    ///   - sweepInterval: how often expired sessions' streams are ended (the expiry's resolution).
    init(
        bufferedItems: Int,
        heartbeatInterval: Duration,
        sweepInterval: Duration = .milliseconds(250),
        time: TimeSource = .system,
        metrics: TandemMetrics? = nil,
        logger: Logger
    ) {
        self.metrics = metrics
        self.bufferedItems = bufferedItems
        self.heartbeatInterval = heartbeatInterval
        self.sweepInterval = sweepInterval
        self.time = time
        self.logger = logger
    }

    /// Adds a stream for a session that expires at `expiresAt` (ms since the epoch). The caller must `detach` it.
    func attach(_ id: SessionID, expiresAt: Int64) -> Stream {
        let (items, continuation) = AsyncStream.makeStream(of: StreamItem.self, bufferingPolicy: .bufferingOldest(bufferedItems))
        nextToken += 1
        let token = nextToken
        if expiresAt <= time.now() {
            continuation.finish()
        } else {
            sessions[id, default: LocalSession(expiresAt: expiresAt)].streams[token] = continuation
            sessions[id]?.expiresAt = expiresAt
            openStreams += 1
        }
        return Stream(token: token, items: items, continuation: continuation)
    }

    /// Removes a stream; the session's entry goes with its last stream.
    func detach(_ id: SessionID, stream: Stream) {
        stream.continuation.finish()
        guard var session = sessions[id], session.streams.removeValue(forKey: stream.token) != nil else { return }
        sessions[id] = session.streams.isEmpty ? nil : session
        openStreams -= 1
    }

    func deliver(_ event: StoredEvent, to id: SessionID) {
        yield(.event(event), to: id)
    }

    /// Live streams on this node.
    var streamCount: Int { openStreams }
    /// Sessions with at least one live stream on this node.
    var sessionCount: Int { sessions.count }

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                var sinceHeartbeat = Duration.zero
                while true {
                    try await Task.sleep(for: self.sweepInterval)
                    await self.endExpiredStreams()
                    sinceHeartbeat += self.sweepInterval
                    if sinceHeartbeat >= self.heartbeatInterval {
                        sinceHeartbeat = .zero
                        await self.sendHeartbeats()
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
            for continuation in session.streams.values { continuation.finish() }
            sessions[id] = nil
            openStreams -= session.streams.count
        }
    }

    func sendHeartbeats() {
        for id in Array(sessions.keys) { yield(.heartbeat, to: id) }
    }

    private func endAllStreams() {
        for session in sessions.values {
            for continuation in session.streams.values { continuation.finish() }
        }
        sessions.removeAll()
        openStreams = 0
    }

    private func yield(_ item: StreamItem, to id: SessionID) {
        guard var session = sessions[id] else { return }
        var cut = 0
        for (token, continuation) in session.streams {
            switch continuation.yield(item) {
            case .enqueued:
                continue
            case .dropped, .terminated:
                // A reader this far behind is cut rather than buffered without bound; it resumes from its last id.
                continuation.finish()
                session.streams[token] = nil
                cut += 1
            @unknown default:
                continue
            }
        }
        if cut > 0 {
            logger.debug("cut slow streams", metadata: ["session": "\(id)", "count": "\(cut)"])
            sessions[id] = session.streams.isEmpty ? nil : session
            openStreams -= cut
            for _ in 0..<cut { metrics?.streamCut(reason: "slow_reader") }
        }
    }
}

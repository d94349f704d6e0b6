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
    private let presenceRenewalInterval: Duration
    /// The broker that keeps the held sessions' PCs present. Set once after start-up wiring: the broker is made
    /// after the registry, whose events it delivers.
    private let presenceBroker = Mutex<(any Broker)?>(nil)

    /// - Parameters:
    ///   - heartbeatInterval: how often every stream gets a heartbeat.
    ///   - sweepInterval: how often expired sessions' streams are ended (the expiry's resolution).
    ///   - presenceRenewalInterval: how often the sessions whose streams this node holds have their PC presence
    ///     renewed (a third of the grace leaves room for two missed renewals).
    init(
        heartbeatInterval: Duration,
        sweepInterval: Duration = .milliseconds(250),
        presenceRenewalInterval: Duration = .seconds(2),
        time: TimeSource = .system,
        metrics: TandemMetrics? = nil,
        logger: Logger
    ) {
        self.metrics = metrics
        self.heartbeatInterval = heartbeatInterval
        self.sweepInterval = sweepInterval
        self.presenceRenewalInterval = presenceRenewalInterval
        self.time = time
        self.logger = logger
    }

    /// Renews the PC presence of held sessions through `broker` from now on.
    func keepPresence(through broker: any Broker) {
        presenceBroker.withLock { $0 = broker }
    }

    /// The sessions with a stream on this node.
    var heldSessionIDs: [SessionID] { state.withLock { Array($0.sessions.keys) } }

    /// The sessions with a stream of `side` on this node.
    func heldSessionIDs(_ side: PresenceSide) -> [SessionID] {
        state.withLock { state in state.sessions.compactMap { $0.value.streams.contains { $0.audience == side } ? $0.key : nil } }
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
    /// Returns whether it was the session's last stream of its audience (the PC's, or the phone's) on this node.
    @discardableResult
    func detach(_ stream: SessionStream) -> Bool {
        stream.end()
        let id = stream.sessionID
        return state.withLock { state -> Bool in
            guard var session = state.sessions[id], let index = session.streams.firstIndex(where: { $0 === stream }) else { return false }
            session.streams.remove(at: index)
            state.sessions[id] = session.streams.isEmpty ? nil : session
            state.openStreams -= 1
            countsChanged(state)
            return !session.streams.contains { $0.audience == stream.audience }
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
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask { try await self.renewPresenceForever() }
                    group.addTask { try await self.sweepForever() }
                }
            }
        } catch is CancellationError {}
        endAllStreams()
    }

    /// Holds the presence of every held stream's device (the PCs', the phones'), one batch per side each
    /// `presenceRenewalInterval`; a session the broker no longer has (Redis lost it) ends its streams with `expired`.
    /// The PCs of sessions whose phones are held here are looked at too: a PC whose node died (no release, no
    /// review) is noticed once its hold lease lapses, and its phone is told. A failure (Redis away) is retried at the
    /// next round; the hold lease outlasts many missed rounds.
    private func renewPresenceForever() async throws {
        while true {
            try await Task.sleep(for: presenceRenewalInterval)
            guard let broker = presenceBroker.withLock({ $0 }) else { continue }
            for side in PresenceSide.allCases {
                let ids = heldSessionIDs(side)
                guard !ids.isEmpty else { continue }
                do {
                    for id in try await broker.holdPresence(of: ids, side: side) { sessionEnded(id) }
                    if side == .phone {
                        let pcHeldHere = Set(heldSessionIDs(.pc))
                        for id in ids where !pcHeldHere.contains(id) { _ = try await broker.reviewPresence(of: id, side: .pc) }
                    }
                } catch {
                    logger.debug(
                        "presence renewal failed; retried next round",
                        metadata: ["error": "\(error)", "sessions": "\(ids.count)", "side": "\(side.rawValue)"])
                }
            }
        }
    }

    /// Ends expired sessions' streams and sends heartbeats, every `sweepInterval`.
    private func sweepForever() async throws {
        // Heartbeats are spread over the interval: each sweep sends them to one slice of the streams, so 19,000
        // streams never stall the event loop for one burst of writes (a latency spike for every event caught behind
        // it). Each stream still gets one heartbeat per interval.
        let slices = max(1, Int((heartbeatInterval / sweepInterval).rounded()))
        // Deadlines on the clock, not sleeps added up: a sweep takes time, and added-up sleeps would stretch the
        // heartbeat period past what proxies were promised.
        let clock = ContinuousClock()
        var tick = 0
        var next = clock.now + sweepInterval
        while true {
            try await Task.sleep(until: next, clock: clock)
            endExpiredStreams()
            // Slices missed while the machine stalled are sent now, at most one interval's worth.
            var sent = 0
            repeat {
                sendHeartbeats(slice: tick % slices, of: slices)
                tick += 1
                sent += 1
                next += sweepInterval
            } while next <= clock.now && sent < slices
            if next <= clock.now { next = clock.now + sweepInterval }
        }
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
        // The PC counts down by itself; the phone's channel is told, so the phone locks at once.
        for stream in expired {
            if stream.audience == .phone { stream.end(sending: .sessionExpired) } else { stream.end() }
        }
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

import Broker
import HTTP
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// What a stream's task is handed by its session's registry, in order.
enum StreamItem: Sendable {
    /// A stored event of the session (the reader skips what it has, and fills gaps from the log).
    case event(StoredEvent)
    /// Time for a heartbeat comment.
    case heartbeat
    /// The stream ends now, after these last words, if any (``ServerSentEvent/sessionExpired``).
    case end(ServerSentEvent?)
}

/// Owns the live streams of the sessions routed to one event loop, and their expiry and heartbeats. An actor whose
/// executor *is* its loop: code already on the loop (the broker's delivery from a request or from the Redis
/// subscriber, a stream's own task, pinned to its connection's loop) enters it with `assumeIsolated`, with no hop
/// and no allocation; a call from another loop hops once (`loop.execute`).
///
/// Each stream is an `AsyncStream<StreamItem>` made here with `bufferingOldest(bufferLimit)` and read by one small
/// task pinned to its connection's loop (``SessionStream``). A reader whose buffer overflows (its task cannot keep up)
/// is cut: its stream finishes, and the browser resumes from the log with `Last-Event-ID`; nothing is skipped
/// silently.
///
/// Its executor is an event loop, and with `NonisolatedNonsendingByDefault` a nonisolated async function called from
/// here runs here, on the loop: so the actor awaits nothing but its own timers and NIO futures (which resume it by a
/// hop), never the broker or other long work. Work that must run from it and may take time goes to a `@concurrent`
/// function or a task of its own.
actor SessionRegistry {
    nonisolated let eventLoop: any EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { eventLoop.executor.asUnownedSerialExecutor() }

    /// A class, never shared outside the actor: what changes with every event (`lastWritten`) is written in place,
    /// with no copy of the session's entry or its array (a dictionary's in-place `_modify` cost an allocation per
    /// event, and a copied array one per session per sweep).
    private final class Attached {
        let token: Int
        let audience: PresenceSide
        let continuation: AsyncStream<StreamItem>.Continuation
        /// The sweep tick of the last thing handed to it that it writes: its next heartbeat is due a heartbeat
        /// interval (`ticksPerHeartbeat`) after it.
        var lastWritten: Int
        /// The highest event id it has (its opening's, or handed since): an event at or below it is one the stream
        /// skips (a broker hands a session's whole log again after a reconnect), so it is no write.
        var handedThrough: EventID
        /// Cut (its buffer overflowed) or ended: nothing more is yielded; it stays until its task detaches it.
        var finished = false

        init(
            token: Int, audience: PresenceSide, continuation: AsyncStream<StreamItem>.Continuation, lastWritten: Int,
            handedThrough: EventID
        ) {
            self.token = token
            self.audience = audience
            self.continuation = continuation
            self.lastWritten = lastWritten
            self.handedThrough = handedThrough
        }

        /// Hands it `event`; false when its buffer is full and it is cut.
        func hand(_ event: StoredEvent, tick: Int) -> Bool {
            if case .dropped = continuation.yield(.event(event)) {
                finished = true
                continuation.finish()
                return false
            }
            if event.id > handedThrough {
                handedThrough = event.id
                if ServerSentEvent.isSent(event.event, to: audience) { lastWritten = tick }
            }
            return true
        }

        /// A heartbeat, when it has been handed nothing it writes for `ticks` ticks; `phase` is its tick of
        /// reference for the next one (`tick`, or earlier to spread beats that a stall brought together).
        func beat(tick: Int, silentFor ticks: Int, phase: Int) {
            guard !finished, tick &- lastWritten >= ticks else { return }
            continuation.yield(.heartbeat)
            lastWritten = phase
        }
    }

    private struct LocalSession {
        var expiresAt: Int64
        /// Nearly always one or two (the PC's stream, the phone's channel): an array costs less than a dictionary.
        var streams: [Attached] = []
        /// A phone took the session and it is not over (as its events say): while the PC's stream is here and the
        /// phone's channel is not, the presence rounds look at the phone's presence (see
        /// ``SessionRegistry/sessionsAwaitingPhone()``).
        var phoneEngaged = false
    }

    private var sessions: [SessionID: LocalSession] = [:]
    /// Presence reviews waiting for their time, oldest first, so in the order of their times (all wait the node's
    /// one delay, `presenceReviewDelay`): started by the sweep, so a device that leaves costs no timer or task.
    private var reviews = CircularBuffer<PendingReview>()

    private struct PendingReview {
        let due: NIODeadline
        let id: SessionID
        let side: PresenceSide
        let broker: any Broker
    }
    private var nextToken = 0
    private let counts: SessionRegistries.Counts
    private let bufferLimit: Int
    /// The heartbeat interval in sweep ticks.
    private let ticksPerHeartbeat: Int
    /// Sweep ticks so far: the clock of the heartbeats.
    private var tick = 0
    private let metrics: TandemMetrics?

    init(eventLoop: any EventLoop, bufferLimit: Int, ticksPerHeartbeat: Int, counts: SessionRegistries.Counts, metrics: TandemMetrics?) {
        self.eventLoop = eventLoop
        self.bufferLimit = bufferLimit
        self.ticksPerHeartbeat = max(1, ticksPerHeartbeat)
        self.counts = counts
        self.metrics = metrics
    }

    /// Adds a stream of `id`; nil when the session has expired by `now`. The caller's task reads the returned
    /// stream and must `detach` its token when it ends. `handedThrough`: the highest event id its reader has or its
    /// opening will write (a later hand of one at or below it is skipped, not written).
    /// `phoneEngaged`: the session's record says a phone took it and it is not over.
    func attach(
        _ id: SessionID, expiresAt: Int64, audience: PresenceSide, now: Int64, handedThrough: EventID = 0, phoneEngaged: Bool = false
    ) -> (token: Int, items: AsyncStream<StreamItem>)? {
        guard expiresAt > now else { return nil }
        let (items, continuation) = AsyncStream.makeStream(of: StreamItem.self, bufferingPolicy: .bufferingOldest(bufferLimit))
        nextToken &+= 1
        // Streams opened together would beat together: each one's first heartbeat comes a little early.
        let attached = Attached(
            token: nextToken, audience: audience, continuation: continuation, lastWritten: tick &- early(nextToken), handedThrough: handedThrough)
        if sessions[id] == nil { counts.sessions.add(1, ordering: .relaxed) }
        sessions[id, default: LocalSession(expiresAt: expiresAt)].streams.append(attached)
        sessions[id]?.expiresAt = expiresAt
        if phoneEngaged { sessions[id]?.phoneEngaged = true }
        counts.streams.add(1, ordering: .relaxed)
        if audience == .phone { counts.phoneStreams.add(1, ordering: .relaxed) }
        countsChanged()
        return (nextToken, items)
    }

    /// The stream's opening writes the events up to `id`: a later hand of any of them (a broker's redelivery) is no
    /// write. (Its log was read after `attach`, so it may hold events newer than the record the attach knew.)
    /// `phoneEngaged`: what the opening's events say of the phone (see ``phoneEngaged(after:was:)``); set only when
    /// the stream's events since have said nothing newer.
    func openingWrites(through id: EventID, session: SessionID, token: Int, phoneEngaged: Bool? = nil) {
        guard let stream = sessions[session]?.streams.first(where: { $0.token == token }) else { return }
        // An event handed since the opening's (delivered live) is newer than what the log said: it decided already.
        if let phoneEngaged, stream.handedThrough <= id, sessions[session]?.phoneEngaged != phoneEngaged {
            sessions[session]?.phoneEngaged = phoneEngaged
        }
        stream.handedThrough = max(stream.handedThrough, id)
    }

    /// Whether a phone is engaged in a session (it took it, and the session is not over) after `event`, when it was
    /// `engaged` before.
    static func phoneEngaged(after event: SessionEvent, was engaged: Bool) -> Bool {
        switch event {
        case .connected, .inputStarted, .phoneReturned: true
        case .complete, .cancelled: false
        case .phoneLeft: engaged  // it may come back: still looked at (the broker tells it once)
        }
    }

    /// Removes a stream; the session's entry goes with its last stream. Returns whether it was the session's last
    /// stream of its audience here (false when it was not here any more: its session expired or ended).
    func detach(_ id: SessionID, token: Int) -> Bool {
        guard var session = sessions[id], let index = session.streams.firstIndex(where: { $0.token == token }) else { return false }
        let gone = session.streams.remove(at: index)
        gone.continuation.finish()
        sessions[id] = session.streams.isEmpty ? nil : session
        counts.streams.subtract(1, ordering: .relaxed)
        if gone.audience == .phone { counts.phoneStreams.subtract(1, ordering: .relaxed) }
        if session.streams.isEmpty { counts.sessions.subtract(1, ordering: .relaxed) }
        countsChanged()
        return !session.streams.contains { $0.audience == gone.audience }
    }

    /// Hands an event to every stream of the session here; a stream whose buffer is full is cut.
    func deliver(_ event: StoredEvent, to id: SessionID) {
        guard let session = sessions[id] else { return }
        metrics?.ops?.delivered(event.event, to: id)
        for stream in session.streams where !stream.finished {
            if !stream.hand(event, tick: tick) { metrics?.slowReaderCut() }
        }
        // Written only when it changes (twice in a session's life): the dictionary's in-place write allocates.
        let engaged = Self.phoneEngaged(after: event.event, was: session.phoneEngaged)
        if engaged != session.phoneEngaged { sessions[id]?.phoneEngaged = engaged }
    }

    /// The sessions whose PC's stream is here, whose phone took them and is not over, and whose phone's channel is
    /// not here: the phone's presence is for this node to look at too, since the node whose channel it was may have
    /// stopped before its own look, once the grace was over.
    func sessionsAwaitingPhone() -> [SessionID] {
        sessions.compactMap { id, session in
            guard session.phoneEngaged, session.streams.contains(where: { $0.audience == .pc && !$0.finished }),
                !session.streams.contains(where: { $0.audience == .phone && !$0.finished })
            else { return nil }
            return id
        }
    }

    /// Ends every stream of the session here, after `lastWords` for the streams of `audience` (nil: every stream).
    func end(_ id: SessionID, lastWords: ServerSentEvent?, for audience: PresenceSide? = nil) {
        guard let session = sessions.removeValue(forKey: id) else { return }
        for stream in session.streams {
            stream.continuation.yield(.end(audience == nil || stream.audience == audience ? lastWords : nil))
            stream.continuation.finish()
        }
        counts.streams.subtract(session.streams.count, ordering: .relaxed)
        counts.phoneStreams.subtract(session.streams.count { $0.audience == .phone }, ordering: .relaxed)
        counts.sessions.subtract(1, ordering: .relaxed)
        countsChanged()
    }

    /// The sessions with a stream of `side` here.
    func heldSessionIDs(_ side: PresenceSide) -> [SessionID] {
        sessions.compactMap { $0.value.streams.contains { $0.audience == side && !$0.finished } ? $0.key : nil }
    }

    /// Ends the streams of every session whose expiry has passed by `now`. The PC counts down by itself; the phone's
    /// channel is told (`expired`), so the phone locks at once.
    func endExpired(now: Int64) {
        // Ids first: removing while iterating would copy the whole dictionary.
        for id in sessions.compactMap({ $0.value.expiresAt <= now ? $0.key : nil }) {
            end(id, lastWords: .sessionExpired, for: .phone)
        }
    }

    /// Advances the heartbeat clock by `ticks` sweep ticks, and gives a heartbeat to every stream that has written
    /// nothing for a heartbeat interval. A stream with events to write needs none (any write keeps a proxy's idle
    /// timer from firing), and its beats follow its own silence, so streams do not all beat in one burst.
    func sendDueHeartbeats(advancingBy ticks: Int = 1) {
        tick &+= max(1, ticks)
        // After a stall (ticks missed), the streams due now beat together: their next beats are spread again.
        let stalled = ticks > 1
        for session in sessions.values {
            for stream in session.streams {
                stream.beat(tick: tick, silentFor: ticksPerHeartbeat, phase: stalled ? tick &- early(stream.token) : tick)
            }
        }
    }

    /// How many ticks early a stream's beat may come so that streams opened (or beaten) together do not stay in step:
    /// spread over half an interval.
    private func early(_ token: Int) -> Int {
        (token & Int.max) % max(1, ticksPerHeartbeat / 2)
    }

    /// Asks `broker`, once `delay` has passed (to the sweep's resolution), whether the device of `side` came back; the
    /// broker tells the other side if not.
    func reviewPresence(of id: SessionID, side: PresenceSide, after delay: Duration, through broker: any Broker) {
        reviews.append(PendingReview(due: eventLoop.now + TimeAmount(delay), id: id, side: side, broker: broker))
    }

    /// Starts the reviews whose time has come, in one task: the actor awaits no broker.
    func startDueReviews() {
        let now = eventLoop.now
        var due: [PendingReview] = []
        while let first = reviews.first, first.due <= now { due.append(reviews.removeFirst()) }
        guard !due.isEmpty else { return }
        Task {
            for review in due { _ = try? await review.broker.reviewPresence(of: review.id, side: review.side) }
        }
    }

    /// Ends every stream (the node stops).
    func endAll() {
        for id in Array(sessions.keys) { end(id, lastWords: nil) }
    }

    /// Heartbeats and expiry, on this loop, until cancelled. The cadence is the loop's own time (`eventLoop.now`, its
    /// scheduled tasks), the expiry the injected wall clock (`time`, which session records are written in).
    func run(sweepInterval: Duration, time: TimeSource) async {
        // Deadlines, not sleeps added up: a sweep takes time, and added-up sleeps would stretch the heartbeat period
        // past what proxies were promised.
        let interval = TimeAmount(sweepInterval)
        var next = eventLoop.now + interval
        while !Task.isCancelled {
            do {
                try await sleep(until: next)
            } catch {
                break
            }
            endExpired(now: time.now())
            startDueReviews()
            // Ticks missed while the machine stalled count as time that passed, at most one interval's worth.
            var elapsed = 0
            repeat {
                elapsed += 1
                next = next + interval
            } while next <= eventLoop.now && elapsed < ticksPerHeartbeat
            if next <= eventLoop.now { next = eventLoop.now + interval }
            sendDueHeartbeats(advancingBy: elapsed)
        }
        endAll()
    }

    /// Waits on this loop until `deadline`; throws when the task is cancelled.
    private func sleep(until deadline: NIODeadline) async throws {
        let wakeUp = eventLoop.scheduleTask(deadline: deadline) {}
        try await withTaskCancellationHandler {
            // Waited for here, resumed on the loop: `EventLoopFuture.get()` is not isolated, and in this task (which
            // prefers no executor) it would wait on the global pool, two thread wakeups a tick.
            try await withCheckedThrowingContinuation(isolation: self) { (continuation: CheckedContinuation<Void, any Error>) in
                wakeUp.futureResult.whenComplete { continuation.resume(with: $0) }
            }
        } onCancel: {
            wakeUp.cancel()
        }
    }

    private func countsChanged() {
        metrics?.streamsChanged(openStreams: counts.streams.load(ordering: .relaxed), sessions: counts.sessions.load(ordering: .relaxed))
    }
}

/// This node's registries, one per event loop, and the sharded table that routes each session to the one that holds
/// its streams: the loop of its first stream, for as long as any of its streams is open. The broker's sink: an event
/// goes to its session's loop, entered at once when the caller is on it, with one hop otherwise.
final class SessionRegistries: SessionEventSink, Service {
    /// Counts across the registries, for health and metrics.
    final class Counts: Sendable {
        let streams = Atomic<Int>(0)
        let sessions = Atomic<Int>(0)
        /// The phones' channels among `streams` (the rest are PCs' streams).
        let phoneStreams = Atomic<Int>(0)
    }

    private struct Route {
        var registry: Int
        var streams: Int
    }

    private final class RouteShard: Sendable {
        let routes = Mutex<[SessionID: Route]>([:])
    }

    private static let routeShards = 16
    private let routes = (0..<SessionRegistries.routeShards).map { _ in RouteShard() }
    let registries: [SessionRegistry]
    private let byLoop: [ObjectIdentifier: Int]
    private let counts = Counts()
    private let sweepInterval: Duration
    private let presenceRenewalInterval: Duration
    private let presenceReviewDelay: Duration?
    private let time: TimeSource
    private let metrics: TandemMetrics?
    private let logger: Logger
    /// The broker that keeps the held sessions' devices present. Set once after start-up wiring: the broker is made
    /// after the registries, whose events it delivers.
    private let presenceBroker = Mutex<(any Broker)?>(nil)
    /// Streams whose end is still being told to the broker (see ``departureBegins()``).
    private let departing = Atomic<Int>(0)

    /// - Parameters:
    ///   - eventLoopGroup: the loops the server's connections run on; one registry each.
    ///   - bufferLimit: events a stream's buffer holds before its reader is cut (`sse.bufferedEvents`).
    ///   - heartbeatInterval: how long a stream writes nothing before it gets a heartbeat (to the sweep's resolution).
    ///   - sweepInterval: how often expired sessions' streams are ended (the expiry's resolution).
    ///   - presenceRenewalInterval: how often the held sessions' devices have their presence renewed.
    ///   - presenceReviewDelay: how long after a device's presence is released the broker is asked whether it came
    ///     back (the grace and a little more); nil: never asked.
    init(
        eventLoopGroup: any EventLoopGroup,
        bufferLimit: Int,
        heartbeatInterval: Duration,
        sweepInterval: Duration = .milliseconds(250),
        presenceRenewalInterval: Duration = .seconds(2),
        presenceReviewDelay: Duration? = nil,
        time: TimeSource = .system,
        metrics: TandemMetrics? = nil,
        logger: Logger
    ) {
        let ticksPerHeartbeat = max(1, Int((heartbeatInterval / sweepInterval).rounded()))
        let counts = self.counts
        var registries: [SessionRegistry] = []
        var byLoop: [ObjectIdentifier: Int] = [:]
        for loop in eventLoopGroup.makeIterator() {
            byLoop[ObjectIdentifier(loop)] = registries.count
            registries.append(SessionRegistry(eventLoop: loop, bufferLimit: bufferLimit, ticksPerHeartbeat: ticksPerHeartbeat, counts: counts, metrics: metrics))
        }
        self.registries = registries
        self.byLoop = byLoop
        self.sweepInterval = sweepInterval
        self.presenceRenewalInterval = presenceRenewalInterval
        self.presenceReviewDelay = presenceReviewDelay
        self.time = time
        self.metrics = metrics
        self.logger = logger
    }

    /// Renews the presence of held sessions' devices through `broker` from now on.
    func keepPresence(through broker: any Broker) {
        presenceBroker.withLock { $0 = broker }
    }

    private func shard(_ id: SessionID) -> RouteShard {
        routes[Int(UInt(bitPattern: id.hashValue) % UInt(Self.routeShards))]
    }

    /// The registry of the calling thread's loop, or the first.
    private var localIndex: Int {
        for (index, registry) in registries.enumerated() where registry.eventLoop.inEventLoop { return index }
        return 0
    }

    /// Routes a new stream of `id`: to the registry that holds the session's streams, or, for its first, to the
    /// caller's loop. Each call needs one ``release(_:)``.
    func route(_ id: SessionID) -> SessionRegistry {
        let local = byLoop.isEmpty ? 0 : localIndex
        let index = shard(id).routes.withLock { routes -> Int in
            var route = routes[id] ?? Route(registry: local, streams: 0)
            route.streams += 1
            routes[id] = route
            return route.registry
        }
        return registries[index]
    }

    /// Drops one count taken by ``route(_:)``; the route goes with the session's last stream.
    func release(_ id: SessionID) {
        shard(id).routes.withLock { routes in
            guard var route = routes[id] else { return }
            route.streams -= 1
            routes[id] = route.streams > 0 ? route : nil
        }
    }

    /// A stream's end is being told to the broker (its subscription dropped, its device's presence released). Each
    /// call needs one ``departureEnded()``; shutdown waits for them (see ``run()``).
    func departureBegins() {
        departing.add(1, ordering: .relaxed)
    }

    func departureEnded() {
        departing.subtract(1, ordering: .releasing)
    }

    /// Until every routed stream has ended and told the broker so, or the task is cancelled (the group's drain
    /// timeout). Routes first: a stream releases its route after its departure began, so no routes and then no
    /// departures means all are done.
    private func departuresDone() async {
        while routes.contains(where: { !$0.routes.withLock { $0.isEmpty } }) || departing.load(ordering: .acquiring) > 0 {
            do {
                try await Task.sleep(for: .milliseconds(10))
            } catch {
                return
            }
        }
    }

    private func routed(_ id: SessionID) -> SessionRegistry? {
        shard(id).routes.withLock { $0[id] }.map { registries[$0.registry] }
    }

    /// Runs `body` isolated to `registry` at once when the caller is on its loop (no hop, no allocation); nil when it
    /// is not (the caller then awaits the actor). Synchronous, so an async caller on the loop can use it too.
    ///
    /// What `assumeIsolated` does, without its costs on every event: its second check of the executor
    /// (`swift_task_isCurrentExecutor`) and two allocations to convert a capturing closure. Being on the loop's thread
    /// is being on the actor's executor, since the actor's executor is its loop; `body` captures nothing (its
    /// arguments come as `argument`), so it is a plain function, and the conversion costs nothing.
    @inline(__always)
    static func onItsLoop<Argument, T: Sendable>(
        _ registry: SessionRegistry, _ argument: Argument, _ body: @escaping (isolated SessionRegistry, Argument) -> T
    ) -> T? {
        guard registry.eventLoop.inEventLoop else { return nil }
        // What the cast relies on, checked in debug builds: this thread is the actor's executor.
        assert(registry.assumeIsolated { _ in true })
        return unsafeBitCast(body, to: ((SessionRegistry, Argument) -> T).self)(registry, argument)
    }

    /// Runs `body` on `registry`: entered at once when the caller is on its loop, after one hop otherwise.
    static func enter(_ registry: SessionRegistry, _ body: @escaping @Sendable (isolated SessionRegistry) -> Void) {
        if registry.eventLoop.inEventLoop {
            registry.assumeIsolated(body)
        } else {
            registry.eventLoop.execute { registry.assumeIsolated(body) }
        }
    }

    // MARK: SessionEventSink

    func deliver(_ event: StoredEvent, to id: SessionID) {
        guard let registry = routed(id) else { return }
        // Not through `enter`: its escaping closure would cost an allocation per event even on the loop.
        if Self.onItsLoop(registry, (event, id), { $0.deliver($1.0, to: $1.1) }) == nil {
            registry.eventLoop.execute { registry.assumeIsolated { $0.deliver(event, to: id) } }
        }
    }

    /// The broker found the session gone before its expiry (Redis restarted empty or was flushed): its streams end
    /// with an `expired` event, so the PC page starts a new session now instead of waiting for a countdown whose
    /// session no longer exists.
    func sessionEnded(_ id: SessionID) {
        guard let registry = routed(id) else { return }
        logger.info("a held session is gone from the broker; its streams end")
        Self.enter(registry) { $0.end(id, lastWords: .sessionExpired) }
    }

    func messageRejected() {
        metrics?.brokerMessageRejected()
    }

    // MARK: Counts

    /// Live streams on this node.
    var streamCount: Int { counts.streams.load(ordering: .relaxed) }
    /// Sessions with at least one live stream on this node.
    var sessionCount: Int { counts.sessions.load(ordering: .relaxed) }
    /// Live phone channels on this node (the rest of ``streamCount`` are PCs' streams).
    var phoneStreamCount: Int { counts.phoneStreams.load(ordering: .relaxed) }

    /// The sessions with a stream of `side` on this node.
    func heldSessionIDs(_ side: PresenceSide) async -> [SessionID] {
        var ids: [SessionID] = []
        for registry in registries { ids += await registry.heldSessionIDs(side) }
        return ids
    }

    /// ``SessionRegistry/sessionsAwaitingPhone()`` of every registry.
    func sessionsAwaitingPhone() async -> [SessionID] {
        var ids: [SessionID] = []
        for registry in registries { ids += await registry.sessionsAwaitingPhone() }
        return ids
    }

    // MARK: Service

    func run() async throws {
        let sweep = sweepInterval
        let time = self.time
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                for registry in self.registries {
                    group.addTask { await registry.run(sweepInterval: sweep, time: time) }
                }
                group.addTask { await self.renewPresenceForever() }
            }
        }
        for registry in registries { await registry.endAll() }
        // The streams just ended, and those that ended a moment before, release their devices' presence before the
        // broker stops: a release lost to the shutdown would keep the device present for the whole hold lease (a
        // minute) instead of the grace, and the other side would hear of it that much later.
        await departuresDone()
    }

    /// A stream that ended while a renewal round ran released its device's presence, which the round may then have
    /// renewed for the whole hold lease (a minute) from its list made before: the device would count as present that
    /// long instead of the grace, and the other side would not be told. So what the round renewed and is no longer
    /// held is released again, and reviewed once its grace is over (the stream's own review may come too early now).
    private func releaseEndedDuringTheRound(_ renewed: [SessionID], side: PresenceSide, through broker: any Broker) async throws {
        let held = Set(await heldSessionIDs(side))
        for id in renewed where !held.contains(id) {
            try await broker.releasePresence(of: id, side: side)
            guard let reviewDelay = presenceReviewDelay else { continue }
            // Any registry can hold the review: the session has no stream here any more.
            let registry = routed(id) ?? registries[Int(UInt(bitPattern: id.hashValue) % UInt(registries.count))]
            Self.enter(registry) { $0.reviewPresence(of: id, side: side, after: reviewDelay, through: broker) }
        }
    }

    /// Holds the presence of every held stream's device (the PCs', the phones'), one batch per side each
    /// `presenceRenewalInterval`; a session the broker no longer has (Redis lost it) ends its streams with `expired`.
    /// The PCs of sessions whose phones are held here are looked at too: a PC whose node died (no release, no
    /// review) is noticed once its hold lease lapses, and its phone is told. So are the phones of sessions in progress
    /// whose PCs are held here and whose channels are not: a phone whose channel closed on a node that stopped or died
    /// before its grace was over is noticed once its presence lapses, and its PC is told. A failure (Redis away) is retried at the
    /// next round; the hold lease outlasts many missed rounds.
    private func renewPresenceForever() async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: presenceRenewalInterval)
            } catch {
                return
            }
            guard let broker = presenceBroker.withLock({ $0 }) else { continue }
            for side in PresenceSide.allCases {
                let ids = await heldSessionIDs(side)
                guard !ids.isEmpty else { continue }
                do {
                    for id in try await broker.holdPresence(of: ids, side: side) { sessionEnded(id) }
                    try await releaseEndedDuringTheRound(ids, side: side, through: broker)
                    // The other side of each session held here on one side only.
                    let other: PresenceSide = side == .phone ? .pc : .phone
                    let reviewed: [SessionID]
                    if side == .phone {
                        let pcHeldHere = Set(await heldSessionIDs(.pc))
                        reviewed = ids.filter { !pcHeldHere.contains($0) }
                    } else {
                        reviewed = await sessionsAwaitingPhone()
                    }
                    if !reviewed.isEmpty { _ = try await broker.reviewPresence(of: reviewed, side: other) }
                } catch {
                    logger.debug(
                        "presence renewal failed; retried next round",
                        metadata: ["error": "\(error)", "sessions": "\(ids.count)", "side": "\(side.rawValue)"])
                }
            }
        }
    }
}

import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The broker for many nodes: sessions live in Redis, so any node serves any session, and events cross nodes through
/// Redis Pub/Sub.
///
/// A command connection per event loop, and one subscriber connection per node. A command connection pipelines the
/// requests of its loop; each operation is one Lua script, so it is one round trip and atomic. The subscriber connection subscribes to exactly the channels of the sessions
/// whose streams this node holds: no pattern subscription, no message for sessions held elsewhere.
///
/// Losing Redis is survived. Calls fail at once with ``BrokerError/Code/unavailable`` (the app answers 503). The
/// outage is logged once. `run()` reconnects with exponential backoff, resubscribes every session it holds, and
/// redelivers those sessions' logged events: a stream that missed an event while Redis was away gets it then.
public final class RedisBroker: Broker {
    public struct Configuration: Sendable {
        public var url: RedisURL
        /// A reply slower than this counts as an outage.
        public var commandTimeout: Duration
        public var initialBackoff: Duration
        public var maximumBackoff: Duration
        /// After Redis refused to store (out of memory, read-only, ...), health reports the refusal for at least
        /// this long, then asks Redis with a probe write, at most once per this interval, until one is accepted.
        public var refusalProbeInterval: Duration
        /// How long a PC counts as present after its stream left (see ``Broker/releasePresence(of:)``).
        public var presenceGrace: Duration
        /// How long a held stream keeps its PC present without another renewal (see ``Broker/holdPresence(of:)``):
        /// longer than any stall of Redis or of a node that should not look like the PC leaving.
        public var presenceHold: Duration
        /// How long the ID of a session Redis lost keeps a tombstone (twice the session TTL, like a session's own).
        public var lostSessionTombstone: Duration

        public init(
            url: RedisURL, commandTimeout: Duration = .seconds(2), initialBackoff: Duration = .milliseconds(100),
            maximumBackoff: Duration = .seconds(5), refusalProbeInterval: Duration = .seconds(1),
            presenceGrace: Duration = .seconds(7), presenceHold: Duration = .seconds(60),
            lostSessionTombstone: Duration = .seconds(1200)
        ) {
            self.url = url
            self.presenceGrace = presenceGrace
            self.presenceHold = presenceHold
            self.lostSessionTombstone = lostSessionTombstone
            self.commandTimeout = commandTimeout
            self.initialBackoff = initialBackoff
            self.maximumBackoff = maximumBackoff
            self.refusalProbeInterval = refusalProbeInterval
        }
    }

    private struct Subscription {
        var count: Int
        /// Completes when Redis confirmed the subscription on the current connection; nil while disconnected.
        var confirmed: EventLoopFuture<[RESPValue]>?
    }

    private struct Connected {
        /// One per event loop: a request's task runs on its connection's loop and uses the command connection of
        /// that loop, so a round trip to Redis never hops between threads.
        var commands: [RedisConnection]
        var subscriber: RedisConnection
        var openScript: String
        var publishScript: String
        var holdScript: String
        var reviewScript: String
        var holdPhoneScript: String

        /// The command connection of the calling thread's event loop, or the first one off the loops.
        var commandsForThisLoop: RedisConnection {
            commands.first { $0.channel.eventLoop.inEventLoop } ?? commands[0]
        }

        var all: [RedisConnection] { commands + [subscriber] }

        func closeAll() {
            for connection in all { connection.close() }
        }
    }

    private struct State {
        var connected: Connected?
        var subscriptions: [SessionID: Subscription] = [:]
        var link = RedisLinkState(now: .now)
    }

    private let configuration: Configuration
    private let eventLoopGroup: any EventLoopGroup
    private let sink: any SessionEventSink
    private let time: TimeSource
    private let logger: Logger
    private let state = Mutex(State())

    /// - Parameter eventLoopGroup: the loops requests run on (the server's); one command connection is made on each.
    public init(
        configuration: Configuration, sink: any SessionEventSink, time: TimeSource = .system,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger
    ) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.sink = sink
        self.time = time
        self.logger = logger
    }

    // MARK: Service

    public func run() async throws {
        await keepConnected()
    }

    private func keepConnected() async {
        var backoff = RedisLinkState.Backoff(initial: configuration.initialBackoff, maximum: configuration.maximumBackoff)
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            do {
                let connected = try await connect()
                let resubscribed = try await install(connected)
                backoff.reset()
                await redeliverLogs(of: resubscribed, over: connected.commands[0])
                await waitUntilEitherCloses(connected)
                if Task.isCancelled || Task.isShuttingDownGracefully { break }
                markDown("connection lost")
            } catch {
                markDown("\(error)")
            }
            let delay = backoff.nextDelay(jitter: Double.random(in: 0.5...1.0))
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
            } catch {
                break
            }
        }
        let connected = state.withLock { state in
            defer { state.connected = nil }
            state.link.shutDown()
            return state.connected
        }
        connected?.closeAll()
    }

    private func connect() async throws -> Connected {
        let url = configuration.url
        var commands: [RedisConnection] = []
        var subscriber: RedisConnection?
        do {
            for loop in eventLoopGroup.makeIterator() {
                commands.append(try await RedisConnection.connect(to: url, group: loop, commandTimeout: configuration.commandTimeout))
            }
            guard let first = commands.first else { throw BrokerError(.unavailable, "no event loop to connect on") }
            subscriber = try await RedisConnection.connect(to: url, group: eventLoopGroup, commandTimeout: configuration.commandTimeout) { [weak self] channel, payload in
                self?.received(payload, on: channel)
            }
            // Scripts are loaded once per connection and run by hash, so each operation sends a few bytes.
            // The script cache is the server's: loaded once, run by hash on every connection.
            let open = first.send(["SCRIPT", "LOAD", RedisScripts.openSession])
            let publish = first.send(["SCRIPT", "LOAD", RedisScripts.publish])
            let hold = first.send(["SCRIPT", "LOAD", RedisScripts.holdPresence])
            let review = first.send(["SCRIPT", "LOAD", RedisScripts.reviewPresence])
            let holdPhone = first.send(["SCRIPT", "LOAD", RedisScripts.holdPhonePresence])
            guard let openHash = try await open.get().throwingError().string, let publishHash = try await publish.get().throwingError().string,
                let holdHash = try await hold.get().throwingError().string, let reviewHash = try await review.get().throwingError().string,
                let holdPhoneHash = try await holdPhone.get().throwingError().string, let subscriber
            else {
                throw BrokerError(.protocolViolation, "SCRIPT LOAD did not answer a hash")
            }
            return Connected(
                commands: commands, subscriber: subscriber, openScript: openHash, publishScript: publishHash, holdScript: holdHash,
                reviewScript: reviewHash, holdPhoneScript: holdPhoneHash)
        } catch {
            // All connections go: one left open would leak a socket on every retry of the backoff loop.
            for connection in commands { connection.close() }
            subscriber?.close()
            throw error
        }
    }

    /// Makes `connected` current and subscribes it to every session held here, in batches; returns those sessions.
    private func install(_ connected: Connected) async throws -> [SessionID] {
        let (ids, confirmations, outage) = state.withLock { state -> ([SessionID], [EventLoopFuture<[RESPValue]>], Duration?) in
            state.connected = connected
            let ids = Array(state.subscriptions.keys)
            var confirmations: [EventLoopFuture<[RESPValue]>] = []
            for start in stride(from: 0, to: ids.count, by: 512) {
                let batch = ids[start..<min(start + 512, ids.count)]
                let confirmed = connected.subscriber.send(["SUBSCRIBE"] + batch.map(RedisKeys.channel), replies: batch.count)
                for id in batch { state.subscriptions[id]?.confirmed = confirmed }
                confirmations.append(confirmed)
            }
            let outage = state.link.connected(now: .now)
            return (ids, confirmations, outage)
        }
        for confirmation in confirmations {
            for reply in try await confirmation.get() { try reply.throwingError() }
        }
        state.withLock { state in
            for id in ids {
                // Only the confirmation of this install: a subscription made since has its own.
                if let current = state.subscriptions[id]?.confirmed, confirmations.contains(where: { $0 === current }) {
                    state.subscriptions[id]?.confirmed = nil
                }
            }
        }
        if let outage {
            logger.notice("Redis reachable again; resubscribed held sessions", metadata: [
                "redis": "\(configuration.url)", "outage_s": "\(outage.components.seconds)", "sessions": "\(ids.count)",
            ])
        } else {
            logger.info("connected to Redis", metadata: ["redis": "\(configuration.url)"])
        }
        return ids
    }

    /// Hands the logged events of `ids` to the sink again; streams skip what they already sent and fill any gap. A
    /// session whose record is gone (Redis restarted empty, or was flushed) or unreadable is reported to the sink as
    /// ended, so its readers start over instead of waiting in silence until the expiry they were told.
    private func redeliverLogs(of ids: [SessionID], over commands: RedisConnection) async {
        for start in stride(from: 0, to: ids.count, by: 512) {
            let batch = Array(ids[start..<min(start + 512, ids.count)])
            // Pipelined, the log before its record: an entry read is never ahead of the lastEventID read after it.
            let replies = batch.map { id in
                (commands.send(["LRANGE", RedisKeys.log(id), "0", "-1"]), commands.send(["HGET", RedisKeys.session(id), "lastEventID"]))
            }
            for (id, (log, record)) in zip(batch, replies) {
                // No answer (the connection went again) decides nothing; the next reconnect asks again.
                guard let entries = try? await log.get(), let last = try? await record.get() else { continue }
                // An error other than a wrong type (Redis loading, busy, ...) says nothing about the session either.
                if case .error(let message) = last, !message.hasPrefix("WRONGTYPE") { continue }
                guard let lastEventID = Self.lastEventID(last) else {
                    sink.sessionEnded(id)
                    continue
                }
                for event in Self.decodeLog(entries, lastEventID: lastEventID) { sink.deliver(event, to: id) }
            }
        }
    }

    /// A `HGET … lastEventID` reply as an id; nil for a missing record or field, a key of another type, or a value
    /// out of range.
    private static func lastEventID(_ reply: RESPValue) -> EventID? {
        guard let text = reply.string, let id = EventID(text), id <= StoredEvent.validIDs.upperBound else { return nil }
        return id
    }

    /// The entries of an LRANGE reply that decode and are not ahead of the record; the rest are skipped.
    private static func decodeLog(_ reply: RESPValue, lastEventID: EventID) -> [StoredEvent] {
        guard let entries = reply.array else { return [] }
        return entries.compactMap { entry in
            guard case .bulkString(let bytes) = entry else { return nil }
            return RedisLogEntry.decode(bytes, lastEventID: lastEventID)
        }
    }

    private func waitUntilEitherCloses(_ connected: Connected) async {
        let closeAll: @Sendable () -> Void = { connected.closeAll() }
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resumed = Mutex(false)
                    let resumeOnce: @Sendable (Result<Void, any Error>) -> Void = { _ in
                        if resumed.withLock({ let first = !$0; $0 = true; return first }) { continuation.resume() }
                    }
                    for connection in connected.all { connection.channel.closeFuture.whenComplete(resumeOnce) }
                }
            } onCancel: {
                closeAll()
            }
        } onGracefulShutdown: {
            closeAll()
        }
    }

    /// Records an outage: later calls fail at once; logged once per outage, not per request.
    private func markDown(_ problem: String) {
        let (connected, firstFailure) = state.withLock { state -> (Connected?, Bool) in
            let connected = state.connected
            state.connected = nil
            for id in state.subscriptions.keys { state.subscriptions[id]?.confirmed = nil }
            return (connected, state.link.wentDown(problem, now: .now))
        }
        connected?.closeAll()
        if firstFailure {
            logger.warning("Redis unreachable; answering 503 and reconnecting", metadata: ["redis": "\(configuration.url)", "problem": "\(problem)"])
        }
    }

    private func received(_ payload: [UInt8], on channel: String) {
        guard let id = RedisKeys.session(ofChannel: channel), let event = RedisLogEntry.decode(payload) else {
            logger.debug("ignored a message that is not a Tandem event", metadata: ["channel": "\(channel)"])
            return
        }
        // On the subscriber's event loop, in the order Redis sent the messages: no queue, no hop.
        sink.deliver(event, to: id)
    }

    // MARK: Broker

    public func openSession(_ id: SessionID, ttl: Duration, readerKey: String?, heldByStream: Bool) async throws -> SessionRecord? {
        let now = time.now()
        let keys = [RedisKeys.session(id), RedisKeys.log(id), RedisKeys.tombstone(id), RedisKeys.presence(id)]
        let reply = try await runScript(\.openScript, RedisScripts.openSession, keys: keys, arguments: [
            String(now), String(now + ttl.milliseconds), String(ttl.milliseconds), readerKey ?? "", String(2 * ttl.milliseconds),
            String((heldByStream ? configuration.presenceHold : configuration.presenceGrace).milliseconds),
        ])
        if let parts = reply.array, parts.count == 1, parts[0].string == "ended" { return nil }
        guard let parts = reply.array, parts.count == 2 else { throw BrokerError(.protocolViolation, "unexpected reply to open: \(reply)") }
        if parts[0].string == "corrupt" { throw Self.corrupt(parts[1]) }
        guard parts[0].string == "ok", let record = SessionRecord(id: id, fields: parts[1]) else {
            throw BrokerError(.protocolViolation, "unexpected reply to open: \(reply)")
        }
        return record
    }

    public func session(_ id: SessionID) async throws -> SessionRecord? {
        let reply = try await send(["HGETALL", RedisKeys.session(id)])
        if case .array(let fields) = reply, fields.isEmpty { return nil }
        guard let record = SessionRecord(id: id, fields: reply) else {
            throw BrokerError(.corruptSession, "the record's fields are missing or out of range")
        }
        return record
    }

    public func publish(_ event: SessionEvent, to id: SessionID, from phone: PhoneClaim?, idempotencyKey: String?) async throws -> PublishOutcome {
        var name = ""
        var phoneNumber = ""
        var reason = ""
        let target: SessionStatus
        switch event {
        case .complete(let submission):
            name = submission.name
            phoneNumber = submission.phone
            target = .completed
        case .cancelled(let why):
            reason = why.rawValue
            target = .cancelled
        case .connected: target = .connected
        case .inputStarted: target = .inputting
        case .phoneLeft, .phoneReturned:
            // Published by the presence scripts only (reviewPresence, holdPresence).
            guard let record = try await session(id) else { return .sessionNotFound }
            return .unchanged(record)
        }
        let keys = [RedisKeys.session(id), RedisKeys.log(id), RedisKeys.presence(id)]
        let reply = try await runScript(\.publishScript, RedisScripts.publish, keys: keys, arguments: [
            target.rawValue, event.name, RedisKeys.channel(id), name, phoneNumber, String(TimeSource.wallMicroseconds()), reason,
            idempotencyKey ?? "", phone.map { $0.presentedKey ?? "-" } ?? "", phone?.pairingCode ?? "", phone?.mayClaim == true ? "1" : "0",
            phone?.newKey ?? "",
        ])
        return try outcome(of: reply, for: id, what: "publish")
    }

    public func reviewPresence(of id: SessionID, side: PresenceSide) async throws -> PublishOutcome {
        let keys = [RedisKeys.session(id), RedisKeys.log(id), RedisKeys.presence(id, side: side)]
        let reply = try await runScript(\.reviewScript, RedisScripts.reviewPresence, keys: keys, arguments: [
            side.rawValue, RedisKeys.channel(id), String(TimeSource.wallMicroseconds()),
        ])
        return try outcome(of: reply, for: id, what: "review")
    }

    /// A publish or review script's reply as an outcome.
    private func outcome(of reply: RESPValue, for id: SessionID, what: String) throws -> PublishOutcome {
        guard let parts = reply.array, let outcome = parts.first?.string else {
            throw BrokerError(.protocolViolation, "unexpected reply to \(what): \(reply)")
        }
        if outcome == "missing" { return .sessionNotFound }
        if outcome == "corrupt", parts.count == 2 { throw Self.corrupt(parts[1]) }
        guard parts.count >= 2, let record = SessionRecord(id: id, fields: parts[1]) else {
            throw BrokerError(.protocolViolation, "unexpected reply to \(what): \(reply)")
        }
        switch outcome {
        case "completed": return .alreadyCompleted(record)
        case "cancelled", "left": return .cancelled(record)
        case "unchanged": return .unchanged(record)
        case "claimed": return .claimedByAnother(record)
        case "unclaimed": return .notClaimed(record)
        default:
            guard parts.count >= 3, case .bulkString(let entry) = parts[2],
                let stored = RedisLogEntry.decode(entry, lastEventID: record.lastEventID)
            else {
                throw BrokerError(.protocolViolation, "unexpected reply to \(what): \(reply)")
            }
            return .published(stored, record)
        }
    }

    public func holdPresence(of ids: [SessionID], side: PresenceSide) async throws -> [SessionID] {
        let (connection, scriptHash) = try state.withLock { state throws(BrokerError) -> (RedisConnection, String) in
            guard let connected = state.connected else { throw BrokerError(.unavailable, "Redis unreachable: \(state.link.problem)") }
            return (connected.commandsForThisLoop, side == .pc ? connected.holdScript : connected.holdPhoneScript)
        }
        let hold = String(configuration.presenceHold.milliseconds)
        let tombstone = String(configuration.lostSessionTombstone.milliseconds)
        let script = side == .pc ? RedisScripts.holdPresence : RedisScripts.holdPhonePresence
        func tail(_ id: SessionID) -> [String] {
            switch side {
            case .pc: ["3", RedisKeys.session(id), RedisKeys.presence(id), RedisKeys.tombstone(id), hold, tombstone]
            case .phone:
                [
                    "4", RedisKeys.session(id), RedisKeys.log(id), RedisKeys.phonePresence(id), RedisKeys.tombstone(id), hold, tombstone,
                    RedisKeys.channel(id), String(TimeSource.wallMicroseconds()),
                ]
            }
        }
        var gone: [SessionID] = []
        // Pipelined in batches, so a node holding thousands of streams renews them in a few round trips.
        for start in stride(from: 0, to: ids.count, by: 512) {
            let batch = Array(ids[start..<min(start + 512, ids.count)])
            let replies = batch.map { id in connection.send(["EVALSHA", scriptHash] + tail(id)) }
            for (id, reply) in zip(batch, replies) {
                var answer = try await reply.get()
                if case .error(let message) = answer, message.hasPrefix("NOSCRIPT") {
                    answer = try await connection.send(["EVAL", script] + tail(id)).get()
                }
                if case .integer(0) = try checked(answer) { gone.append(id) }
            }
        }
        return gone
    }

    public func releasePresence(of id: SessionID, side: PresenceSide) async throws {
        // XX: only a presence that is still there starts its grace; a lapsed one stays lapsed.
        let grace = String(configuration.presenceGrace.milliseconds)
        _ = try checked(await commandConnection().send(["SET", RedisKeys.presence(id, side: side), "1", "PX", grace, "XX"]).get())
    }

    public func events(of id: SessionID, after: EventID) async throws -> [StoredEvent] {
        // The log, then its record's lastEventID, pipelined (one round trip): Redis runs them in order, so every
        // entry read was written before the id read after it, and an entry ahead of it is not Tandem's.
        let connection = try commandConnection()
        let log = connection.send(["LRANGE", RedisKeys.log(id), "0", "-1"])
        let record = connection.send(["HGET", RedisKeys.session(id), "lastEventID"])
        let entries = try checked(await log.get())
        let last = try checked(await record.get())
        if last == .null { return [] }
        guard let lastEventID = Self.lastEventID(last) else { throw BrokerError(.corruptSession, "lastEventID is not an event id") }
        return Self.decodeLog(entries, lastEventID: lastEventID).filter { $0.id > after }
    }

    public func subscribe(_ id: SessionID) async throws {
        let confirmed = state.withLock { state -> EventLoopFuture<[RESPValue]>? in
            if var subscription = state.subscriptions[id] {
                subscription.count += 1
                state.subscriptions[id] = subscription
                return subscription.confirmed
            }
            // Sent under the lock, so SUBSCRIBE and UNSUBSCRIBE reach Redis in the order the counts changed.
            let confirmed = state.connected?.subscriber.send(["SUBSCRIBE", RedisKeys.channel(id)], replies: 1)
            state.subscriptions[id] = Subscription(count: 1, confirmed: confirmed)
            return confirmed
        }
        // Disconnected, or lost before Redis confirmed: the reconnect subscribes it and redelivers its log.
        guard let confirmed else { return }
        _ = try? await confirmed.get()
        // Confirmed: the future (and the reply it holds) is not needed any more; a held session keeps nothing but
        // its count.
        state.withLock { state in
            if let current = state.subscriptions[id]?.confirmed, current === confirmed { state.subscriptions[id]?.confirmed = nil }
        }
    }

    public func unsubscribe(_ id: SessionID) async {
        let confirmed = state.withLock { state -> EventLoopFuture<[RESPValue]>? in
            guard var subscription = state.subscriptions[id] else { return nil }
            subscription.count -= 1
            if subscription.count > 0 {
                state.subscriptions[id] = subscription
                return nil
            }
            state.subscriptions[id] = nil
            return state.connected?.subscriber.send(["UNSUBSCRIBE", RedisKeys.channel(id)], replies: 1)
        }
        // Once Redis confirms, no message of this session can follow on the connection.
        _ = try? await confirmed?.get()
    }

    /// Unavailable while Redis is unreachable. While it is reachable but lately refused to store, `refusal` says so:
    /// for at least ``Configuration/refusalProbeInterval`` after the last refusal, then until a probe write (a key
    /// that expires in a second) is accepted. Probes are made here, when health is asked (`/readyz`, `/healthz`), at most one
    /// at a time and one per interval, so a node's readiness comes back by itself once Redis stores again.
    public var health: BrokerHealth {
        get async {
            let interval = configuration.refusalProbeInterval
            let (health, probe) = state.withLock { state -> (BrokerHealth, (RedisConnection, ContinuousClock.Instant?)?) in
                guard let connected = state.connected else {
                    return (BrokerHealth(isAvailable: false, detail: "redis unreachable: \(state.link.problem)"), nil)
                }
                let health = state.link.refusal.map {
                    BrokerHealth(isAvailable: true, detail: "ok", refusal: "redis refuses to store: \($0.message)")
                } ?? .ok
                guard case .probe(let refusedAt) = state.link.probeDue(now: .now, interval: interval) else { return (health, nil) }
                return (health, (connected.commandsForThisLoop, refusedAt))
            }
            guard let (connection, refusedAt) = probe else { return health }
            let reply: RedisLinkState.ProbeReply
            switch try? await connection.send(["SET", "tandem:{probe}:writable", "1", "PX", "1000"]).get() {
            case .simpleString?: reply = .stored
            case .error(let message)? where Self.refusalKind(message) != nil: reply = .refused(message)
            default: reply = .noAnswer
            }
            let (recovered, refusal) = state.withLock { state -> (Bool, String?) in
                let recovered = state.link.probeAnswered(reply, answering: refusedAt, now: .now)
                return (recovered, state.link.refusal?.message)
            }
            if recovered {
                logger.notice("Redis stores again", metadata: ["redis": "\(configuration.url)"])
                return .ok
            }
            if let refusal { return BrokerHealth(isAvailable: true, detail: "ok", refusal: "redis refuses to store: \(refusal)") }
            return health
        }
    }

    /// Sessions this node is subscribed to (for tests and health).
    public var subscribedSessionCount: Int { state.withLock { $0.subscriptions.count } }

    // MARK: Commands

    private func commandConnection() throws(BrokerError) -> RedisConnection {
        try state.withLock { state throws(BrokerError) -> RedisConnection in
            guard let connected = state.connected else { throw BrokerError(.unavailable, "Redis unreachable: \(state.link.problem)") }
            return connected.commandsForThisLoop
        }
    }

    private func send(_ arguments: [String]) async throws -> RESPValue {
        try checked(await commandConnection().send(arguments).get())
    }

    /// A reply, or its error reply thrown as a broker error (a refusal to store is remembered for health).
    private func checked(_ reply: RESPValue) throws(BrokerError) -> RESPValue {
        guard case .error(let message) = reply else { return reply }
        let error = Self.error(message)
        if error.refusal != nil { refused(message) }
        throw error
    }

    /// Remembers a refusal for health (readiness); logged once per episode, not per request.
    private func refused(_ message: String) {
        let first = state.withLock { $0.link.refused(message, now: .now) }
        if first {
            logger.warning(
                "Redis refuses to store; answering 503 and reporting not ready",
                metadata: ["redis": "\(configuration.url)", "problem": "\(message)"])
        }
    }

    /// EVALSHA, falling back to EVAL if Redis lost its script cache (SCRIPT FLUSH, or a failover).
    private func runScript(_ hash: KeyPath<Connected, String>, _ script: String, keys: [String], arguments: [String]) async throws -> RESPValue {
        let (connection, scriptHash) = try state.withLock { state throws(BrokerError) -> (RedisConnection, String) in
            guard let connected = state.connected else { throw BrokerError(.unavailable, "Redis unreachable: \(state.link.problem)") }
            return (connected.commandsForThisLoop, connected[keyPath: hash])
        }
        let tail = [String(keys.count)] + keys + arguments
        var reply = try await connection.send(["EVALSHA", scriptHash] + tail).get()
        if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") {
            reply = try await connection.send(["EVAL", script] + tail).get()
        }
        return try checked(reply)
    }

    private static func corrupt(_ why: RESPValue) -> BrokerError {
        BrokerError(.corruptSession, "the session's keys are not what Tandem writes: \(why.string ?? "?")")
    }

    /// The error codes with which Redis says it cannot store now, though it may later: out of memory, a read-only
    /// replica or one without its master, loading its data, busy with a script, a cluster slot moving or down, too
    /// few replicas, a failed background save.
    static let refusalCodes = ["OOM", "READONLY", "MASTERDOWN", "LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "MISCONF"]

    /// The refusal kind of an error reply (its code in lower case), or nil when it is not a refusal.
    static func refusalKind(_ message: String) -> String? {
        // The code is the first word; `BUSYKEY` (a key exists) is not `BUSY`.
        let code = String(message.prefix { $0 != " " })
        return refusalCodes.contains(code) ? code.lowercased() : nil
    }

    /// A Redis error reply as a broker error: a refusal to store now is an outage, answered 503; a key of the wrong
    /// type is a corrupt session; anything else is a bug.
    static func error(_ message: String) -> BrokerError {
        if let kind = refusalKind(message) { return BrokerError(.unavailable, "Redis: \(message)", refusal: kind) }
        if message.hasPrefix("WRONGTYPE") { return BrokerError(.corruptSession, "Redis: \(message)") }
        return BrokerError(.protocolViolation, "Redis error: \(message)")
    }
}

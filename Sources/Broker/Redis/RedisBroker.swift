import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The broker for many nodes: sessions live in Redis (one server, or a Redis Cluster), so any node serves any
/// session, and events cross nodes through Redis Pub/Sub.
///
/// On one Redis: a command connection per event loop, and one subscriber connection per node. A command connection
/// pipelines the requests of its loop; each operation is one Lua script, so it is one round trip and atomic. The
/// subscriber connection subscribes to exactly the channels of the sessions whose streams this node holds: no pattern
/// subscription, no message for sessions held elsewhere.
///
/// On a Redis Cluster: every key of a session carries its `{ID}` hash tag, so the session lives in one slot and its
/// scripts stay atomic; a command goes to the slot's master (``RedisClusterClient``, which follows `MOVED` and
/// `ASK`); events go out with `SPUBLISH` and this node listens with `SSUBSCRIBE` at the slot's master
/// (``RedisClusterSubscriber``). A channel the cluster drops (a slot migrated, a failover) is subscribed again where
/// its slot went, and the session's log fills what was missed.
///
/// Losing Redis is survived. Calls fail at once with ``BrokerError/Code/unavailable`` (the app answers 503). The
/// outage is logged once. `run()` reconnects with exponential backoff, resubscribes every session it holds, and
/// redelivers those sessions' logged events: a stream that missed an event while Redis was away gets it then.
public final class RedisBroker: Broker {
    public struct Configuration: Sendable {
        /// One Redis server, or the seed nodes of a Redis Cluster.
        public enum Target: Sendable, CustomStringConvertible {
            case server(RedisURL)
            case cluster(seeds: [RedisURL])

            public var description: String {
                switch self {
                case .server(let url): "\(url)"
                case .cluster(let seeds): "cluster " + seeds.map { "\($0.host):\($0.port)" }.joined(separator: ",")
                }
            }
        }

        public var target: Target
        /// After an event is stored, wait until this many replicas have it (`WAIT`) before the publish is answered,
        /// so an acknowledged event survives its master's death; fewer in ``waitTimeout`` is an outage (503, and the
        /// phone's retry with the same idempotency key is answered from what was stored). 0: no wait.
        public var waitReplicas: Int
        public var waitTimeout: Duration
        /// On a cluster, how often the topology is read even when nothing asked for it.
        public var topologyRefreshInterval: Duration
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
            self.init(
                target: .server(url), commandTimeout: commandTimeout, initialBackoff: initialBackoff, maximumBackoff: maximumBackoff,
                refusalProbeInterval: refusalProbeInterval, presenceGrace: presenceGrace, presenceHold: presenceHold,
                lostSessionTombstone: lostSessionTombstone)
        }

        public init(
            target: Target, commandTimeout: Duration = .seconds(2), initialBackoff: Duration = .milliseconds(100),
            maximumBackoff: Duration = .seconds(5), refusalProbeInterval: Duration = .seconds(1),
            presenceGrace: Duration = .seconds(7), presenceHold: Duration = .seconds(60),
            lostSessionTombstone: Duration = .seconds(1200), waitReplicas: Int = 0, waitTimeout: Duration = .seconds(1),
            topologyRefreshInterval: Duration = .seconds(5)
        ) {
            self.target = target
            self.waitReplicas = waitReplicas
            self.waitTimeout = waitTimeout
            self.topologyRefreshInterval = topologyRefreshInterval
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
        enum Link {
            /// One per event loop: a request's task runs on its connection's loop and uses the command connection
            /// of that loop, so a round trip to Redis never hops between threads.
            case server(commands: [RedisConnection], subscriber: RedisConnection)
            case cluster(RedisClusterClient, RedisClusterSubscriber)
        }

        var link: Link
        var scripts: RedisScriptSet

        /// Where this thread's commands go.
        var route: RedisRoute {
            switch link {
            case .server(let commands, _): .server(commands.first { $0.channel.eventLoop.inEventLoop } ?? commands[0])
            case .cluster(let client, _): .cluster(client)
            }
        }

        func closeAll() {
            switch link {
            case .server(let commands, let subscriber):
                for connection in commands + [subscriber] { connection.close() }
            case .cluster(let client, let subscriber):
                subscriber.close()
                client.close()
            }
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
    private let rejectedMessages = Atomic<Int>(0)
    /// Whether the wrong type of the reports key was logged already (once per process is enough).
    private let wrongTypeWarned = Atomic<Bool>(false)

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
                await redeliverLogs(of: resubscribed, over: connected.route)
                await waitUntilLost(connected)
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
        switch configuration.target {
        case .server(let url): try await connect(to: url)
        case .cluster(let seeds): try await connect(toCluster: seeds)
        }
    }

    private func connect(to url: RedisURL) async throws -> Connected {
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
            guard let subscriber else { throw BrokerError(.unavailable, "no subscriber connection") }
            let scripts = try await Self.load(RedisScriptSet(sharded: false), over: .server(first))
            return Connected(link: .server(commands: commands, subscriber: subscriber), scripts: scripts)
        } catch {
            // All connections go: one left open would leak a socket on every retry of the backoff loop.
            for connection in commands { connection.close() }
            subscriber?.close()
            throw error
        }
    }

    private func connect(toCluster seeds: [RedisURL]) async throws -> Connected {
        let client = RedisClusterClient(
            configuration: .init(seeds: seeds, commandTimeout: configuration.commandTimeout), group: eventLoopGroup)
        let subscriber = RedisClusterSubscriber(
            client: client,
            onMessage: { [weak self] channel, payload in self?.received(payload, on: channel) },
            onResubscribed: { [weak self] channel in self?.resubscribed(channel) })
        do {
            try await client.refreshTopology()
            let scripts = try await Self.load(RedisScriptSet(sharded: true), over: .cluster(client))
            return Connected(link: .cluster(client, subscriber), scripts: scripts)
        } catch {
            subscriber.close()
            client.close()
            throw error
        }
    }

    /// Loads the scripts (on a cluster, at one master; the others learn each at its first `NOSCRIPT`): each
    /// operation then sends a hash, not the script.
    private static func load(_ scripts: RedisScriptSet, over route: RedisRoute) async throws -> RedisScriptSet {
        var scripts = scripts
        for script in RedisScriptSet.all {
            guard let hash = try await route.send(["SCRIPT", "LOAD", scripts[keyPath: script].text], key: "tandem:{scripts}").throwingError().string
            else {
                throw BrokerError(.protocolViolation, "SCRIPT LOAD did not answer a hash")
            }
            scripts[keyPath: script].hash = hash
        }
        return scripts
    }

    /// Makes `connected` current and subscribes it to every session held here, in batches; returns those sessions.
    private func install(_ connected: Connected) async throws -> [SessionID] {
        let (ids, confirmations, outage) = state.withLock { state -> ([SessionID], [EventLoopFuture<[RESPValue]>], Duration?) in
            state.connected = connected
            let ids = Array(state.subscriptions.keys)
            var confirmations: [EventLoopFuture<[RESPValue]>] = []
            if case .server(_, let subscriber) = connected.link {
                for start in stride(from: 0, to: ids.count, by: 512) {
                    let batch = ids[start..<min(start + 512, ids.count)]
                    let confirmed = subscriber.send(["SUBSCRIBE"] + batch.map(RedisKeys.channel), replies: batch.count)
                    for id in batch { state.subscriptions[id]?.confirmed = confirmed }
                    confirmations.append(confirmed)
                }
            }
            let outage = state.link.connected(now: .now)
            return (ids, confirmations, outage)
        }
        for confirmation in confirmations {
            for reply in try await confirmation.get() { try reply.throwingError() }
        }
        if case .cluster(_, let subscriber) = connected.link {
            // Each at its slot's master, a batch at a time in flight.
            for start in stride(from: 0, to: ids.count, by: 512) {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for id in ids[start..<min(start + 512, ids.count)] {
                        group.addTask { try await subscriber.subscribe(RedisKeys.channel(id)) }
                    }
                    try await group.waitForAll()
                }
            }
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
                "redis": "\(configuration.target)", "outage_s": "\(outage.components.seconds)", "sessions": "\(ids.count)",
            ])
        } else {
            logger.info("connected to Redis", metadata: ["redis": "\(configuration.target)"])
        }
        return ids
    }

    /// Hands the logged events of `ids` to the sink again; streams skip what they already sent and fill any gap. A
    /// session whose record is gone (Redis restarted empty, or was flushed) or unreadable is reported to the sink as
    /// ended, so its readers start over instead of waiting in silence until the expiry they were told.
    private func redeliverLogs(of ids: [SessionID], over route: RedisRoute) async {
        for start in stride(from: 0, to: ids.count, by: 512) {
            let batch = Array(ids[start..<min(start + 512, ids.count)])
            // Pipelined, the log before its record: an entry read is never ahead of the lastEventID read after it.
            let replies = await route.send(each: batch.map { id in
                (pipeline: [["LRANGE", RedisKeys.log(id), "0", "-1"], ["HGET", RedisKeys.session(id), "lastEventID"]], key: RedisKeys.session(id))
            })
            for (id, reply) in zip(batch, replies) {
                // No answer (the connection went again) decides nothing; the next reconnect asks again.
                guard case .success(let pair) = reply, pair.count == 2 else { continue }
                let (entries, last) = (pair[0], pair[1])
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

    /// A cluster channel subscribed again after its slot moved or its master failed: what was published meanwhile is
    /// in the log.
    private func resubscribed(_ channel: String) {
        guard let id = RedisKeys.session(ofChannel: channel), let route = state.withLock({ $0.connected?.route }) else { return }
        Task { await redeliverLogs(of: [id], over: route) }
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

    /// Returns when the link is lost (or the service stops): on one Redis, when a connection closes; on a cluster,
    /// when no node gives the topology any more (a master lost is not the link lost: its replica takes over, and
    /// the cluster client and subscriber follow).
    private func waitUntilLost(_ connected: Connected) async {
        let closeAll: @Sendable () -> Void = { connected.closeAll() }
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                switch connected.link {
                case .server(let commands, let subscriber):
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let resumed = Mutex(false)
                        let resumeOnce: @Sendable (Result<Void, any Error>) -> Void = { _ in
                            if resumed.withLock({ let first = !$0; $0 = true; return first }) { continuation.resume() }
                        }
                        for connection in commands + [subscriber] { connection.channel.closeFuture.whenComplete(resumeOnce) }
                    }
                case .cluster(let client, let subscriber):
                    var failures = 0
                    while failures < 3, !Task.isCancelled, !Task.isShuttingDownGracefully {
                        // A drain ends the wait at once: the node's shutdown does not wait out a refresh interval.
                        let interval = configuration.topologyRefreshInterval
                        do {
                            try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
                        } catch {
                            break
                        }
                        guard !Task.isCancelled, !Task.isShuttingDownGracefully else { break }
                        do {
                            subscriber.reconcile(with: try await client.refreshTopology())
                            failures = 0
                        } catch {
                            failures += 1
                        }
                    }
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
            logger.warning("Redis unreachable; answering 503 and reconnecting", metadata: ["redis": "\(configuration.target)", "problem": "\(problem)"])
        }
    }

    private func received(_ payload: [UInt8], on channel: String) {
        guard let id = RedisKeys.session(ofChannel: channel), let event = RedisLogEntry.decode(payload) else {
            sink.messageRejected()
            // Logged at the 1st, 2nd, 4th, 8th, ... so that a flood of them cannot flood the log too.
            let count = rejectedMessages.wrappingAdd(1, ordering: .relaxed).newValue
            if count & (count - 1) == 0 {
                // The session of the channel as a prefix only: a session ID is a capability.
                let session = RedisKeys.session(ofChannel: channel)?.redacted ?? "not a session's"
                logger.warning("dropped a message that is not a Tandem event", metadata: ["session": "\(session)", "dropped_so_far": "\(count)"])
            }
            return
        }
        // On the subscriber's event loop, in the order Redis sent the messages: no queue, no hop.
        sink.deliver(event, to: id)
    }

    // MARK: Broker

    public func openSession(_ id: SessionID, ttl: Duration, readerKey: String?, heldByStream: Bool) async throws -> SessionRecord? {
        let now = time.now()
        let keys = [RedisKeys.session(id), RedisKeys.log(id), RedisKeys.tombstone(id), RedisKeys.presence(id)]
        let reply = try await runScript(\.openSession, keys: keys, arguments: [
            String(now), String(now + ttl.milliseconds), String(ttl.milliseconds), readerKey ?? "", String(2 * ttl.milliseconds),
            String((heldByStream ? configuration.presenceHold : configuration.presenceGrace).milliseconds),
        ])
        if let parts = reply.array, parts.count == 1, parts[0].string == "ended" { return nil }
        guard let parts = reply.array, parts.count == 2 else { throw BrokerError(.protocolViolation, "unexpected reply to open: \(reply)") }
        if parts[0].string == "corrupt" { throw Self.corrupt(parts[1]) }
        guard parts[0].string == "ok" else { throw BrokerError(.protocolViolation, "unexpected reply to open: \(reply)") }
        // The script checks what it reads; the rest of the record is checked here, as every read of it is.
        guard let record = SessionRecord(id: id, fields: parts[1]) else {
            throw BrokerError(.corruptSession, "the record's fields are missing or out of range")
        }
        return record
    }

    public func session(_ id: SessionID) async throws -> SessionRecord? {
        let reply = try await send(["HGETALL", RedisKeys.session(id)], key: RedisKeys.session(id))
        if case .array(let fields) = reply, fields.isEmpty { return nil }
        guard let record = SessionRecord(id: id, fields: reply) else {
            throw BrokerError(.corruptSession, "the record's fields are missing or out of range")
        }
        return record
    }

    public func publish(_ event: SessionEvent, to id: SessionID, from phone: PhoneClaim?, idempotencyKey: String?) async throws -> PublishOutcome {
        var name = ""
        var phoneNumber = ""
        var form = ""
        var reason = ""
        let target: SessionStatus
        switch event {
        case .complete(let submission):
            // The article's form keeps its two hash fields and entry keys; any other form is stored as its text.
            if submission.isArticleForm {
                name = submission.name
                phoneNumber = submission.phone
            } else {
                form = submission.formText
            }
            target = .completed
        case .cancelled(let why):
            reason = why.rawValue
            target = .cancelled
        case .connected: target = .connected
        case .inputStarted: target = .inputting
        case .phoneLeft, .phoneReturned:
            // Published by the presence scripts only (reviewPresence, holdPresence).
            guard let record = try await session(id) else { return .sessionNotFound }
            return .unchanged(record.summary)
        }
        let keys = [RedisKeys.session(id), RedisKeys.log(id), RedisKeys.presence(id)]
        let waitReplicas = configuration.waitReplicas
        // WAIT right behind the script, on its connection: it waits for the replicas to have what the script wrote.
        let wait = waitReplicas > 0 ? ["WAIT", String(waitReplicas), String(configuration.waitTimeout.milliseconds)] : nil
        if waitReplicas > 0, case .cluster(let client)? = state.withLock({ $0.connected?.route }), let topology = client.topology {
            // A shard without enough replicas (its master died and its replica took over) cannot acknowledge: refused
            // at once, not after a WAIT that would hold the shard's shared connection for its whole timeout.
            let replicas = topology.onlineReplicaCount(ofSlot: RedisClusterSlot.of(keys[0]))
            if replicas < waitReplicas {
                throw BrokerError(.unavailable, "the session's shard has \(replicas) of the \(waitReplicas) replicas that must acknowledge an event")
            }
        }
        let (reply, acknowledged) = try await runScript(\.publish, keys: keys, arguments: [
            target.rawValue, event.name, RedisKeys.channel(id), name, phoneNumber, String(TimeSource.wallMicroseconds()), reason,
            idempotencyKey ?? "", phone.map { $0.presentedKey ?? "-" } ?? "", phone?.pairingCode ?? "", phone?.mayClaim == true ? "1" : "0",
            phone?.newKey ?? "", form, String(time.now()),
        ], then: wait)
        let outcome = try outcome(of: reply, for: id, what: "publish", summarized: true)
        if case .published = outcome, let acknowledged, (acknowledged.integer ?? 0) < waitReplicas {
            throw BrokerError(
                .unavailable, "the event is stored but \(acknowledged.integer ?? 0) of \(waitReplicas) replicas acknowledged it in time")
        }
        return outcome
    }

    private static func summary(of id: SessionID, lastEventID: EventID, fields: RESPValue) throws(BrokerError) -> SessionSummary {
        guard let summary = SessionSummary(id: id, lastEventID: lastEventID, fields: fields) else {
            throw BrokerError(.corruptSession, "the record's fields are missing or out of range")
        }
        return summary
    }

    public func reviewPresence(of id: SessionID, side: PresenceSide) async throws -> PublishOutcome {
        let keys = [RedisKeys.session(id), RedisKeys.log(id), RedisKeys.presence(id, side: side)]
        let reply = try await runScript(\.reviewPresence, keys: keys, arguments: [
            side.rawValue, RedisKeys.channel(id), String(TimeSource.wallMicroseconds()),
        ])
        return try outcome(of: reply, for: id, what: "review")
    }

    public func reviewPresence(of ids: [SessionID], side: PresenceSide) async throws -> [StoredEvent] {
        let now = String(TimeSource.wallMicroseconds())
        var published: [StoredEvent] = []
        // `quiet`: what it leaves as it is comes back without the record's fields.
        try await eachScriptReply(\.reviewPresence, for: ids) { id in
            ["3", RedisKeys.session(id), RedisKeys.log(id), RedisKeys.presence(id, side: side), side.rawValue, RedisKeys.channel(id), now, "quiet"]
        } handle: { _, answer in
            guard let parts = answer.array, let outcome = parts.first?.string else {
                throw BrokerError(.protocolViolation, "unexpected reply to review: \(answer)")
            }
            switch outcome {
            case "published":
                guard parts.count == 3, case .bulkString(let entry) = parts[2], let stored = RedisLogEntry.decode(entry) else {
                    throw BrokerError(.protocolViolation, "unexpected reply to review: \(answer)")
                }
                published.append(stored)
            case "unchanged", "missing", "corrupt":
                break  // a corrupt session is its streams' business, not the round's
            default:
                throw BrokerError(.protocolViolation, "unexpected reply to review: \(answer)")
            }
        }
        return published
    }

    /// Runs `script` once for each of `ids` (`tail`: what follows its hash: the key count, keys, arguments),
    /// pipelined in batches of 512, so a round over thousands of sessions is a few round trips; `handle` gets each
    /// reply, checked (an error reply is thrown), in the order of `ids`.
    private func eachScriptReply(
        _ script: KeyPath<RedisScriptSet, RedisScriptSet.Script>, for ids: [SessionID], tail: (SessionID) -> [String],
        handle: (SessionID, RESPValue) throws -> Void
    ) async throws {
        let (route, script) = try state.withLock { state throws(BrokerError) -> (RedisRoute, RedisScriptSet.Script) in
            guard let connected = state.connected else { throw BrokerError(.unavailable, "Redis unreachable: \(state.link.problem)") }
            return (connected.route, connected.scripts[keyPath: script])
        }
        for start in stride(from: 0, to: ids.count, by: 512) {
            let batch = Array(ids[start..<min(start + 512, ids.count)])
            let replies = await route.send(each: batch.map { id in (pipeline: [["EVALSHA", script.hash] + tail(id)], key: RedisKeys.session(id)) })
            for (id, reply) in zip(batch, replies) {
                var answer = try reply.get()[0]
                if case .error(let message) = answer, message.hasPrefix("NOSCRIPT") {
                    answer = try await route.send(["EVAL", script.text] + tail(id), key: RedisKeys.session(id))
                }
                try handle(id, try checked(answer))
            }
        }
    }

    /// A publish or review script's reply as an outcome. `summarized`: a `published` reply carries the session's
    /// summary (the publish script's), not the whole record.
    private func outcome(of reply: RESPValue, for id: SessionID, what: String, summarized: Bool = false) throws -> PublishOutcome {
        guard let parts = reply.array, let outcome = parts.first?.string else {
            throw BrokerError(.protocolViolation, "unexpected reply to \(what): \(reply)")
        }
        if outcome == "missing" { return .sessionNotFound }
        if outcome == "corrupt", parts.count == 2 { throw Self.corrupt(parts[1]) }
        if summarized, outcome == "published" {
            guard parts.count == 3, case .bulkString(let entry) = parts[2], let stored = RedisLogEntry.decode(entry) else {
                throw BrokerError(.protocolViolation, "unexpected reply to \(what): \(reply)")
            }
            return .published(stored, try Self.summary(of: id, lastEventID: stored.id, fields: parts[1]))
        }
        if summarized, outcome == "unchanged" {
            // The script checked the last event id it answers with, as the record's decoder would.
            guard parts.count == 3, let last = parts[2].string.flatMap({ EventID($0) }), last <= StoredEvent.validIDs.upperBound else {
                throw BrokerError(.protocolViolation, "unexpected reply to \(what): \(reply)")
            }
            return .unchanged(try Self.summary(of: id, lastEventID: last, fields: parts[1]))
        }
        guard parts.count >= 2 else { throw BrokerError(.protocolViolation, "unexpected reply to \(what): \(reply)") }
        // What the script did not check (fields it does not read) is checked here, as every read of the record does.
        guard let record = SessionRecord(id: id, fields: parts[1]) else {
            throw BrokerError(.corruptSession, "the record's fields are missing or out of range")
        }
        switch outcome {
        case "completed": return .alreadyCompleted(record)
        case "cancelled", "left": return .cancelled(record)
        case "unchanged": return .unchanged(record.summary)
        case "claimed": return .claimedByAnother(record)
        case "unclaimed": return .notClaimed(record)
        default:
            guard parts.count >= 3, case .bulkString(let entry) = parts[2],
                let stored = RedisLogEntry.decode(entry, lastEventID: record.lastEventID)
            else {
                throw BrokerError(.protocolViolation, "unexpected reply to \(what): \(reply)")
            }
            return .published(stored, record.summary)
        }
    }

    public func holdPresence(of ids: [SessionID], side: PresenceSide) async throws -> [SessionID] {
        let hold = String(configuration.presenceHold.milliseconds)
        let tombstone = String(configuration.lostSessionTombstone.milliseconds)
        var gone: [SessionID] = []
        try await eachScriptReply(side == .pc ? \.holdPresence : \.holdPhonePresence, for: ids) { id in
            switch side {
            case .pc: ["3", RedisKeys.session(id), RedisKeys.presence(id), RedisKeys.tombstone(id), hold, tombstone]
            case .phone:
                [
                    "4", RedisKeys.session(id), RedisKeys.log(id), RedisKeys.phonePresence(id), RedisKeys.tombstone(id), hold, tombstone,
                    RedisKeys.channel(id), String(TimeSource.wallMicroseconds()),
                ]
            }
        } handle: { id, answer in
            if case .integer(0) = answer { gone.append(id) }
        }
        return gone
    }

    public func releasePresence(of id: SessionID, side: PresenceSide) async throws {
        // XX: only a presence that is still there starts its grace; a lapsed one stays lapsed.
        let grace = String(configuration.presenceGrace.milliseconds)
        let key = RedisKeys.presence(id, side: side)
        _ = try checked(await route().send(["SET", key, "1", "PX", grace, "XX"], key: key))
    }

    public func events(of id: SessionID, after: EventID) async throws -> [StoredEvent] {
        // The log, then its record's lastEventID, pipelined (one round trip): Redis runs them in order, so every
        // entry read was written before the id read after it, and an entry ahead of it is not Tandem's.
        let replies = try await route().send(
            pipeline: [["LRANGE", RedisKeys.log(id), "0", "-1"], ["HGET", RedisKeys.session(id), "lastEventID"]], key: RedisKeys.session(id))
        let entries = try checked(replies[0])
        let last = try checked(replies[1])
        if last == .null { return [] }
        guard let lastEventID = Self.lastEventID(last) else { throw BrokerError(.corruptSession, "lastEventID is not an event id") }
        return Self.decodeLog(entries, lastEventID: lastEventID).filter { $0.id > after }
    }

    public func subscribe(_ id: SessionID) async throws {
        let (confirmed, cluster) = state.withLock { state -> (EventLoopFuture<[RESPValue]>?, RedisClusterSubscriber?) in
            if var subscription = state.subscriptions[id] {
                subscription.count += 1
                state.subscriptions[id] = subscription
                return (subscription.confirmed, nil)
            }
            switch state.connected?.link {
            case .server(_, let subscriber)?:
                // Sent under the lock, so SUBSCRIBE and UNSUBSCRIBE reach Redis in the order the counts changed.
                let confirmed = subscriber.send(["SUBSCRIBE", RedisKeys.channel(id)], replies: 1)
                state.subscriptions[id] = Subscription(count: 1, confirmed: confirmed)
                return (confirmed, nil)
            case .cluster(_, let subscriber)?:
                state.subscriptions[id] = Subscription(count: 1, confirmed: nil)
                return (nil, subscriber)
            case nil:
                state.subscriptions[id] = Subscription(count: 1, confirmed: nil)
                return (nil, nil)
            }
        }
        if let cluster {
            let channel = RedisKeys.channel(id)
            // Not reachable now: the reconnect subscribes it and redelivers its log.
            try? await cluster.subscribe(channel)
            // Unsubscribed while this subscription was on its way: undone, so nothing of it is delivered.
            if state.withLock({ $0.subscriptions[id] == nil }) { try? await cluster.unsubscribe(channel) }
            return
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
        let (confirmed, cluster) = state.withLock { state -> (EventLoopFuture<[RESPValue]>?, RedisClusterSubscriber?) in
            guard var subscription = state.subscriptions[id] else { return (nil, nil) }
            subscription.count -= 1
            if subscription.count > 0 {
                state.subscriptions[id] = subscription
                return (nil, nil)
            }
            state.subscriptions[id] = nil
            switch state.connected?.link {
            case .server(_, let subscriber)?: return (subscriber.send(["UNSUBSCRIBE", RedisKeys.channel(id)], replies: 1), nil)
            case .cluster(_, let subscriber)?: return (nil, subscriber)
            case nil: return (nil, nil)
            }
        }
        // Once Redis confirms, no message of this session can follow on the connection.
        _ = try? await confirmed?.get()
        try? await cluster?.unsubscribe(RedisKeys.channel(id))
    }

    /// Unavailable while Redis is unreachable. While it is reachable but lately refused to store, `refusal` says so:
    /// for at least ``Configuration/refusalProbeInterval`` after the last refusal, then until a probe write (a key
    /// that expires in a second) is accepted. Probes are made here, when health is asked (`/readyz`, `/healthz`), at most one
    /// at a time and one per interval, so a node's readiness comes back by itself once Redis stores again.
    public var health: BrokerHealth {
        get async {
            let interval = configuration.refusalProbeInterval
            // A cluster's topology is forgotten when any of its connections closes (a master restarted, an idle
            // timeout); health reads it again rather than report a cluster it has not looked at.
            if case .cluster(let client, _)? = state.withLock({ $0.connected?.link }), client.topology == nil {
                _ = try? await client.refreshTopology()
            }
            let (health, probe) = state.withLock { state -> (BrokerHealth, (RedisRoute, ContinuousClock.Instant?)?) in
                guard let connected = state.connected else {
                    return (BrokerHealth(isAvailable: false, detail: "redis unreachable: \(state.link.problem)"), nil)
                }
                if case .cluster(let client, _) = connected.link, let topology = client.topology, let unserved = Self.unservedSlot(topology) {
                    return (BrokerHealth(isAvailable: false, detail: "redis cluster: no master serves slot \(unserved)"), nil)
                }
                let health = state.link.refusal.map {
                    BrokerHealth(isAvailable: true, detail: "ok", refusal: "redis refuses to store: \($0.message)")
                } ?? .ok
                guard case .probe(let refusedAt) = state.link.probeDue(now: .now, interval: interval) else { return (health, nil) }
                return (health, (connected.route, refusedAt))
            }
            guard let (route, refusedAt) = probe else { return health }
            let reply: RedisLinkState.ProbeReply
            switch try? await route.send(["SET", "tandem:{probe}:writable", "1", "PX", "1000"], key: "tandem:{probe}:writable") {
            case .simpleString?: reply = .stored
            case .error(let message)? where Self.refusalKind(message) != nil: reply = .refused(message)
            default: reply = .noAnswer
            }
            let (recovered, refusal) = state.withLock { state -> (Bool, String?) in
                let recovered = state.link.probeAnswered(reply, answering: refusedAt, now: .now)
                return (recovered, state.link.refusal?.message)
            }
            if recovered {
                logger.notice("Redis stores again", metadata: ["redis": "\(configuration.target)"])
                return .ok
            }
            if let refusal { return BrokerHealth(isAvailable: true, detail: "ok", refusal: "redis refuses to store: \(refusal)") }
            return health
        }
    }

    /// Sessions this node is subscribed to (for tests and health).
    public var subscribedSessionCount: Int { state.withLock { $0.subscriptions.count } }

    // MARK: Node reports

    /// All nodes' reports live in one hash (one key, so one slot on a cluster), a field per node holding
    /// `<reportedAt ms>\n<body>`. Each node writes its field and reads the whole hash in one pipelined round trip;
    /// fields past `ttl` (a node that stopped) are left out and deleted by whoever sees them first.
    public func exchangeReport(
        _ report: NodeReport, ttl: Duration, limit: Int, accept: (NodeReport) -> Bool
    ) async throws -> [NodeReport] {
        do {
            return try await exchangeReportOnce(report, ttl: ttl, limit: limit, accept: accept)
        } catch let error as BrokerError where error.code == .corruptSession && error.reason.contains("WRONGTYPE") {
            // Something else made the key another type: every HSET fails and every PEXPIRE keeps it alive, so the
            // page would say "unreachable" for good. The key is ours (the `{ops}` hash tag): drop it and go on.
            if !wrongTypeWarned.exchange(true, ordering: .relaxed) {
                logger.warning("the operators' reports key had the wrong type; deleted it", metadata: ["key": "\(RedisKeys.nodeReports)"])
            }
            _ = try checked(await route().send(["DEL", RedisKeys.nodeReports], key: RedisKeys.nodeReports))
            return try await exchangeReportOnce(report, ttl: ttl, limit: limit, accept: accept)
        }
    }

    private func exchangeReportOnce(
        _ report: NodeReport, ttl: Duration, limit: Int, accept: (NodeReport) -> Bool
    ) async throws -> [NodeReport] {
        let key = RedisKeys.nodeReports
        let ttlMilliseconds = max(1, ttl.milliseconds)
        let value = String(report.reportedAt) + "\n" + String(decoding: report.body, as: UTF8.self)
        let replies = try await route().send(
            pipeline: [
                ["HSET", key, report.node, value],
                // With every node gone, the hash goes too.
                ["PEXPIRE", key, String(ttlMilliseconds * 3)],
                // HGETALL, bounded: at most the fields looked at, none over the largest report (deleted instead).
                [
                    "EVAL", RedisScripts.readNodeReports, "1", key, String(Self.maximumNodeReportsRead),
                    String(NodeReport.maximumBodyBytes + Self.maximumReportStampBytes),
                ],
            ], key: key)
        guard replies.count == 3 else { throw BrokerError(.protocolViolation, "Redis answered \(replies.count) replies to 3 commands") }
        _ = try checked(replies[0])
        guard case .array(let flat) = try checked(replies[2]) else { throw BrokerError(.protocolViolation, "reading the reports answered no array") }
        let (live, doomed) = Self.liveReports(
            in: flat, own: report.node, now: time.now(), ttlMilliseconds: ttlMilliseconds, limit: limit, accept: accept)
        if !doomed.isEmpty {
            // Best effort: the next reader retries, and the key's own expiry bounds what is left.
            _ = try? await route().send(["HDEL", key] + doomed.prefix(Self.maximumNodeReportsRead), key: key)
        }
        return live
    }

    /// The reports in the reading script's reply (field, value, field, value, ...: whatever wrote the hash): the
    /// fresh ones `accept` takes, `own` first and then the freshest, at most `limit`; and the names of the fields to delete (the others
    /// that have a name, never `own`).
    static func liveReports(
        in flat: [RESPValue], own: String, now: Int64, ttlMilliseconds: Int64, limit: Int, accept: (NodeReport) -> Bool
    ) -> (live: [NodeReport], doomed: [String]) {
        var live: [NodeReport] = []
        var doomed: [String] = []
        // Bounded however many fields something else wrote: a cluster of more nodes than this is not read whole.
        // Every field read is checked before the limit applies, so fields that are not reports cannot crowd out
        // the real ones; those are deleted, as are stale ones.
        for pair in stride(from: 0, to: min(flat.count - 1, 2 * maximumNodeReportsRead), by: 2) {
            guard let name = flat[pair].string else { continue }  // no field name to delete; the key expires
            guard let parsed = parseReport(node: name, value: flat[pair + 1]),
                freshness(of: parsed.reportedAt, now: now, ttlMilliseconds: ttlMilliseconds) == .fresh, accept(parsed)
            else {
                doomed.append(name)
                continue
            }
            live.append(parsed)
        }
        doomed.removeAll { $0 == own }
        // The node's own report first, so that a limit reached by others never leaves it out; then the freshest.
        let ordered = live.sorted { ($0.node == own ? 1 : 0, $0.reportedAt) > ($1.node == own ? 1 : 0, $1.reportedAt) }
        return (Array(ordered.prefix(limit)), doomed)
    }

    /// A field of the reports hash as a report, or nil when it is not one: a name that is not acceptable
    /// (``NodeReport/isAcceptableNodeName(_:)``), a value that is not `<ms>\n<body>`, or a body over
    /// ``NodeReport/maximumBodyBytes``.
    static func parseReport(node: String, value: RESPValue) -> NodeReport? {
        guard NodeReport.isAcceptableNodeName(node), case .bulkString(let bytes) = value,
            bytes.count <= NodeReport.maximumBodyBytes + maximumReportStampBytes,
            let newline = bytes.prefix(maximumReportStampBytes).firstIndex(of: UInt8(ascii: "\n")),
            let reportedAt = Int64(String(decoding: bytes[..<newline], as: UTF8.self))
        else { return nil }
        let body = bytes[(newline + 1)...]
        guard body.count <= NodeReport.maximumBodyBytes else { return nil }
        return NodeReport(node: node, reportedAt: reportedAt, body: Array(body))
    }

    enum Freshness { case fresh, stale, future }

    /// Older than the TTL: stale. More than the TTL ahead of this clock: written with a wrong clock, or planted to
    /// stay on top; either way not a report to show.
    static func freshness(of reportedAt: Int64, now: Int64, ttlMilliseconds: Int64) -> Freshness {
        let (age, overflow) = now.subtractingReportingOverflow(reportedAt)
        if overflow { return reportedAt > now ? .future : .stale }
        if age > ttlMilliseconds { return .stale }
        if age < -ttlMilliseconds { return .future }
        return .fresh
    }

    /// Fields of the reports hash looked at, at most (so at most this many times 8 KiB cross the network).
    static let maximumNodeReportsRead = 256
    /// The `<reportedAt ms>\n` before a report's body, at most.
    static let maximumReportStampBytes = 24

    // MARK: Commands

    /// Where this thread's commands go; unavailable while Redis is unreachable.
    private func route() throws(BrokerError) -> RedisRoute {
        try state.withLock { state throws(BrokerError) -> RedisRoute in
            guard let connected = state.connected else { throw BrokerError(.unavailable, "Redis unreachable: \(state.link.problem)") }
            return connected.route
        }
    }

    private func send(_ arguments: [String], key: String) async throws -> RESPValue {
        try checked(await route().send(arguments, key: key))
    }

    /// The first slot no online master serves in `topology`, or nil.
    private static func unservedSlot(_ topology: RedisClusterTopology) -> Int? {
        RedisClusterSlot.all.first { topology.master(ofSlot: $0) == nil }
    }

    /// A reply, or its error reply thrown as a broker error (a refusal to store is remembered for health).
    private func checked(_ reply: RESPValue) throws(BrokerError) -> RESPValue {
        guard case .error(let message) = reply else { return reply }
        let error = Self.error(message)
        // TRYAGAIN is one slot in migration, over in moments: answered 503, but the node stays ready.
        if let refusal = error.refusal, refusal != "tryagain" { refused(message) }
        throw error
    }

    /// Remembers a refusal for health (readiness); logged once per episode, not per request.
    private func refused(_ message: String) {
        let first = state.withLock { $0.link.refused(message, now: .now) }
        if first {
            logger.warning(
                "Redis refuses to store; answering 503 and reporting not ready",
                metadata: ["redis": "\(configuration.target)", "problem": "\(message)"])
        }
    }

    /// EVALSHA, falling back to EVAL if Redis lost its script cache (SCRIPT FLUSH, a failover, or a cluster master that
    /// has not run it yet). `then`, when given, is pipelined right behind the script on the same connection; its reply
    /// is the second value.
    private func runScript(
        _ script: KeyPath<RedisScriptSet, RedisScriptSet.Script>, keys: [String], arguments: [String], then: [String]? = nil
    ) async throws -> (RESPValue, RESPValue?) {
        let (route, script) = try state.withLock { state throws(BrokerError) -> (RedisRoute, RedisScriptSet.Script) in
            guard let connected = state.connected else { throw BrokerError(.unavailable, "Redis unreachable: \(state.link.problem)") }
            return (connected.route, connected.scripts[keyPath: script])
        }
        let tail = [String(keys.count)] + keys + arguments
        // One command without `then` (every script but a publish that waits for replicas): no pipeline arrays.
        func run(_ command: [String]) async throws -> [RESPValue] {
            guard let then else { return [try await route.send(command, key: keys[0])] }
            return try await route.send(pipeline: [command, then], key: keys[0])
        }
        var replies = try await run(["EVALSHA", script.hash] + tail)
        if case .error(let message) = replies[0], message.hasPrefix("NOSCRIPT") {
            replies = try await run(["EVAL", script.text] + tail)
        }
        return (try checked(replies[0]), then == nil ? nil : try checked(replies[1]))
    }

    private func runScript(_ script: KeyPath<RedisScriptSet, RedisScriptSet.Script>, keys: [String], arguments: [String]) async throws -> RESPValue {
        try await runScript(script, keys: keys, arguments: arguments, then: nil).0
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

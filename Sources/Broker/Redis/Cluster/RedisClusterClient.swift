import NIOCore
import NIOPosix
import Synchronization

/// Commands to a Redis Cluster, each sent to the master of its key's slot over one pipelined connection per master
/// (made when first needed, dropped when it closes). The topology comes from `CLUSTER SHARDS`: read at start from the
/// seeds, read again on a `MOVED` reply, on a lost connection and whenever ``refreshTopology()`` is called. An `ASK`
/// reply (a slot being migrated) sends that one command to the target after `ASKING`, without changing the topology.
final class RedisClusterClient: Sendable {
    struct Configuration: Sendable {
        /// Where to ask for the topology first; any node of the cluster will do. Their user and password are used
        /// for every node.
        var seeds: [RedisURL]
        var commandTimeout: Duration
        /// Redirects followed for one command before it fails (a cluster reshaping faster than this is not served).
        var maximumRedirects = 5
        /// `TRYAGAIN` replies (a script's keys split by a migration) answered by sending again, 20 ms more apart
        /// each time; past this the reply is returned (the broker answers 503).
        var maximumTryAgains = 5
    }

    private let configuration: Configuration
    private let group: any EventLoopGroup
    /// The topology in use; nil until one is read, and again once a connection closed (it is read before the next
    /// command).
    private let knownTopology = KnownTopology()
    private final class KnownTopology: Sendable {
        let value = Mutex<RedisClusterTopology?>(nil)
    }
    private let connections: RedisNodeConnections

    init(configuration: Configuration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.configuration = configuration
        self.group = group
        let knownTopology = self.knownTopology
        let seed = configuration.seeds.first
        self.connections = RedisNodeConnections(
            connect: { endpoint in
                try await RedisConnection.connect(
                    to: Self.url(of: endpoint, like: seed), group: group, commandTimeout: configuration.commandTimeout)
            },
            onClose: { _ in knownTopology.value.withLock { $0 = nil } })
    }

    /// The topology in use, nil until one was read.
    var topology: RedisClusterTopology? { knownTopology.value.withLock { $0 } }

    /// Reads the topology from the first node that answers with a valid one: the known masters first, then the seeds.
    /// Throws ``BrokerError/Code/unavailable`` when none does; the topology in use is kept.
    @discardableResult
    func refreshTopology() async throws -> RedisClusterTopology {
        let known = knownTopology.value.withLock { $0?.masters.map(RedisEndpoint.init) ?? [] }
        let candidates = known + configuration.seeds.map { RedisEndpoint(host: $0.host, port: $0.port) }
        var problems: [String] = []
        for endpoint in candidates {
            do {
                let reply = try await connections.connection(to: endpoint).send(["CLUSTER", "SHARDS"]).get()
                if case .error(let message) = reply {
                    problems.append("\(endpoint.host):\(endpoint.port): \(message)")
                    continue
                }
                guard let topology = RedisClusterTopology(shardsReply: reply) else {
                    problems.append("\(endpoint.host):\(endpoint.port): a CLUSTER SHARDS reply that does not hold together")
                    continue
                }
                knownTopology.value.withLock { $0 = topology }
                return topology
            } catch {
                problems.append("\(endpoint.host):\(endpoint.port): \(error)")
            }
        }
        throw BrokerError(.unavailable, "no Redis Cluster node gave its topology (\(problems.joined(separator: "; ")))")
    }

    /// Sends a command about `key` to the master of its slot and returns the reply (a Redis error reply is a value,
    /// as on one Redis). `MOVED` refreshes the topology and retries there, `ASK` retries once at the target after
    /// `ASKING`; either at most `maximumRedirects` times.
    func send(_ arguments: [String], key: String) async throws -> RESPValue {
        try await send(pipeline: [arguments], key: key)[0]
    }

    /// Sends commands about keys of `key`'s slot to its master in one pipelined write, so Redis runs them in this
    /// order with nothing of this client's in between, and returns their replies. When any reply redirects (the
    /// slot moved, or is moving), the whole pipeline is sent again where it says: the commands are reads, or a
    /// script Redis refused to run there, followed by what only makes sense after it (`WAIT`).
    func send(pipeline commands: [[String]], key: String) async throws -> [RESPValue] {
        precondition(!commands.isEmpty, "an empty pipeline")
        let slot = RedisClusterSlot.of(key)
        var topology = try await currentTopology()
        // Where a redirect said to go next, when the topology does not say it (yet).
        var redirected: (endpoint: RedisEndpoint, asking: Bool)?
        var tryAgains = 0
        var attempts = 0
        while attempts <= configuration.maximumRedirects + tryAgains {
            attempts += 1
            let endpoint: RedisEndpoint
            let asking: Bool
            if let next = redirected {
                (endpoint, asking) = next
            } else {
                guard let master = topology.master(ofSlot: slot) else {
                    // No master for the slot (a failover in progress): read the topology again.
                    topology = try await refreshTopology()
                    continue
                }
                (endpoint, asking) = (RedisEndpoint(master), false)
            }
            redirected = nil
            let connection: RedisConnection
            do {
                connection = try await connections.connection(to: endpoint)
            } catch {
                topology = try await refreshTopology()
                continue
            }
            // ASKING holds for the next command on the connection only: one before each, all in one write.
            let futures = commands.map { command in
                let asked = asking ? connection.send(["ASKING"]) : nil
                return (asked, connection.send(command))
            }
            var replies: [RESPValue] = []
            replies.reserveCapacity(commands.count)
            for (asked, answer) in futures {
                _ = try await asked?.get()
                replies.append(try await answer.get())
            }
            // TRYAGAIN: a multi-key command (a script) whose keys are split by a slot migration in progress; nothing
            // ran. Sent again shortly, as the migration moves the rest.
            if replies.contains(where: { if case .error(let message) = $0 { message.hasPrefix("TRYAGAIN") } else { false } }),
                tryAgains < configuration.maximumTryAgains
            {
                tryAgains += 1
                try await Task.sleep(for: .milliseconds(20 * tryAgains))
                redirected = asking ? (endpoint, true) : nil
                continue
            }
            guard let redirect = replies.lazy.compactMap({ reply -> RedisClusterRedirect? in
                guard case .error(let message) = reply else { return nil }
                return RedisClusterRedirect(errorMessage: message)
            }).first(where: { $0.slot == slot }) else {
                return replies
            }
            let target = RedisEndpoint(host: redirect.host.isEmpty ? endpoint.host : redirect.host, port: redirect.port)
            switch redirect.kind {
            case .ask:
                redirected = (target, true)
            case .moved:
                topology = (try? await refreshTopology()) ?? topology
                if topology.master(ofSlot: slot).map(RedisEndpoint.init) != target { redirected = (target, false) }
            }
        }
        throw BrokerError(.unavailable, "Redis Cluster: slot \(slot) redirected more than \(configuration.maximumRedirects) times")
    }

    /// Many pipelines, each about its own key's slot (a node renewing the presence of every session it holds), sent
    /// the way one Redis gets them: grouped by the master the topology names, each group written to its connection
    /// without waiting, then all replies awaited. A pipeline whose reply redirects or asks to try again, or whose
    /// connection fails, is sent again on its own through ``send(pipeline:key:)``. Results are in the order given.
    func send(batch: [(pipeline: [[String]], key: String)]) async -> [Result<[RESPValue], any Error>] {
        var results = [Result<[RESPValue], any Error>?](repeating: nil, count: batch.count)
        var sent: [(index: Int, futures: [EventLoopFuture<RESPValue>])] = []
        if let topology = try? await currentTopology() {
            var groups: [RedisEndpoint: [Int]] = [:]
            for (index, entry) in batch.enumerated() {
                guard let master = topology.master(ofKey: entry.key) else { continue }
                groups[RedisEndpoint(master), default: []].append(index)
            }
            for (endpoint, indices) in groups {
                guard let connection = try? await connections.connection(to: endpoint) else { continue }
                for index in indices { sent.append((index, batch[index].pipeline.map { connection.send($0) })) }
            }
        }
        for (index, futures) in sent {
            guard let replies = try? await futures.replies() else { continue }
            let redirected = replies.contains { reply in
                guard case .error(let message) = reply else { return false }
                return message.hasPrefix("TRYAGAIN") || RedisClusterRedirect(errorMessage: message) != nil
            }
            if !redirected { results[index] = .success(replies) }
        }
        // What the grouped pass did not settle, one by one (following redirects, refreshing the topology).
        for index in results.indices where results[index] == nil {
            do {
                results[index] = .success(try await send(pipeline: batch[index].pipeline, key: batch[index].key))
            } catch {
                results[index] = .failure(error)
            }
        }
        return results.map { $0 ?? .failure(BrokerError(.unavailable, "no reply")) }
    }

    /// Closes every connection; later commands fail.
    func close() {
        connections.closeAll()
    }

    /// The URL of a node: its address, the seeds' user and password, database 0 (a cluster has no other).
    func url(host: String, port: Int) -> RedisURL {
        Self.url(of: RedisEndpoint(host: host, port: port), like: configuration.seeds.first)
    }

    var commandTimeout: Duration { configuration.commandTimeout }

    private static func url(of endpoint: RedisEndpoint, like seed: RedisURL?) -> RedisURL {
        var url = seed ?? RedisURL("redis://127.0.0.1:6379/0")!
        url.host = endpoint.host
        url.port = endpoint.port
        url.database = 0
        return url
    }

    private func currentTopology() async throws -> RedisClusterTopology {
        if let topology { return topology }
        return try await refreshTopology()
    }
}

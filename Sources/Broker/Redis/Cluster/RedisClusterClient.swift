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
    }

    private struct Endpoint: Hashable, Sendable {
        let host: String
        let port: Int

        init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        init(_ node: RedisClusterTopology.Node) {
            self.init(host: node.host, port: node.port)
        }
    }

    private struct State {
        var topology: RedisClusterTopology?
        /// Connections by node, as tasks so that concurrent first commands to a node share one connection; each
        /// with a number, so that a closing connection removes itself and not its successor.
        var connections: [Endpoint: (number: UInt64, task: Task<RedisConnection, any Error>)] = [:]
        var made: UInt64 = 0
        var closed = false
    }

    private let configuration: Configuration
    private let group: any EventLoopGroup
    private let state = Mutex(State())

    init(configuration: Configuration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.configuration = configuration
        self.group = group
    }

    /// The topology in use, nil until one was read.
    var topology: RedisClusterTopology? { state.withLock { $0.topology } }

    /// Reads the topology from the first node that answers with a valid one: the known masters first, then the seeds.
    /// Throws ``BrokerError/Code/unavailable`` when none does; the topology in use is kept.
    @discardableResult
    func refreshTopology() async throws -> RedisClusterTopology {
        let known = state.withLock { $0.topology?.masters.map { Endpoint(host: $0.host, port: $0.port) } ?? [] }
        let candidates = known + configuration.seeds.map { Endpoint(host: $0.host, port: $0.port) }
        var problems: [String] = []
        for endpoint in candidates {
            do {
                let reply = try await connection(to: endpoint).send(["CLUSTER", "SHARDS"]).get()
                if case .error(let message) = reply {
                    problems.append("\(endpoint.host):\(endpoint.port): \(message)")
                    continue
                }
                guard let topology = RedisClusterTopology(shardsReply: reply) else {
                    problems.append("\(endpoint.host):\(endpoint.port): a CLUSTER SHARDS reply that does not hold together")
                    continue
                }
                state.withLock { $0.topology = topology }
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
        let slot = RedisClusterSlot.of(key)
        var topology = try await currentTopology()
        // Where a redirect said to go next, when the topology does not say it (yet).
        var redirected: (endpoint: Endpoint, asking: Bool)?
        for _ in 0...configuration.maximumRedirects {
            let endpoint: Endpoint
            let asking: Bool
            if let next = redirected {
                (endpoint, asking) = next
            } else {
                guard let master = topology.master(ofSlot: slot) else {
                    // No master for the slot (a failover in progress): read the topology again.
                    topology = try await refreshTopology()
                    continue
                }
                (endpoint, asking) = (Endpoint(master), false)
            }
            redirected = nil
            let connection: RedisConnection
            do {
                connection = try await self.connection(to: endpoint)
            } catch {
                topology = try await refreshTopology()
                continue
            }
            let reply: RESPValue
            if asking {
                // ASKING holds for the next command on the connection: both leave in one pipelined write.
                let askingReply = connection.send(["ASKING"])
                let answer = connection.send(arguments)
                _ = try await askingReply.get()
                reply = try await answer.get()
            } else {
                reply = try await connection.send(arguments).get()
            }
            guard case .error(let message) = reply, let redirect = RedisClusterRedirect(errorMessage: message), redirect.slot == slot else {
                return reply
            }
            let target = Endpoint(host: redirect.host.isEmpty ? endpoint.host : redirect.host, port: redirect.port)
            switch redirect.kind {
            case .ask:
                redirected = (target, true)
            case .moved:
                topology = (try? await refreshTopology()) ?? topology
                if topology.master(ofSlot: slot).map(Endpoint.init) != target { redirected = (target, false) }
            }
        }
        throw BrokerError(.unavailable, "Redis Cluster: slot \(slot) redirected more than \(configuration.maximumRedirects) times")
    }

    /// Closes every connection; later commands fail.
    func close() {
        let tasks = state.withLock { state in
            state.closed = true
            defer { state.connections = [:] }
            return state.connections.values.map(\.task)
        }
        for task in tasks {
            Task { (try? await task.value)?.close() }
        }
    }

    /// The URL of a node: its address, the seeds' user and password, database 0 (a cluster has no other).
    func url(host: String, port: Int) -> RedisURL {
        var url = configuration.seeds.first ?? RedisURL("redis://127.0.0.1:6379/0")!
        url.host = host
        url.port = port
        url.database = 0
        return url
    }

    var commandTimeout: Duration { configuration.commandTimeout }

    private func currentTopology() async throws -> RedisClusterTopology {
        if let topology = state.withLock({ $0.topology }) { return topology }
        return try await refreshTopology()
    }

    private func connection(to endpoint: Endpoint) async throws -> RedisConnection {
        let (number, task) = try state.withLock { state throws(BrokerError) -> (UInt64, Task<RedisConnection, any Error>) in
            guard !state.closed else { throw BrokerError(.unavailable, "Redis Cluster client closed") }
            if let existing = state.connections[endpoint] { return existing }
            let url = url(host: endpoint.host, port: endpoint.port)
            let timeout = configuration.commandTimeout
            let group = self.group
            state.made += 1
            let number = state.made
            let task = Task { [self] in
                let connection = try await RedisConnection.connect(to: url, group: group, commandTimeout: timeout)
                // A connection that closes is dropped, and the topology read again before the next command. (The
                // client is kept alive by its open connections until `close()`.)
                connection.channel.closeFuture.whenComplete { _ in self.dropConnection(to: endpoint, number: number, staleTopology: true) }
                return connection
            }
            state.connections[endpoint] = (number, task)
            return (number, task)
        }
        do {
            return try await task.value
        } catch {
            dropConnection(to: endpoint, number: number, staleTopology: false)
            throw error
        }
    }

    private func dropConnection(to endpoint: Endpoint, number: UInt64, staleTopology: Bool) {
        state.withLock { state in
            if state.connections[endpoint]?.number == number { state.connections[endpoint] = nil }
            if staleTopology { state.topology = nil }
        }
    }
}

import NIOCore
import Synchronization

/// Where a cluster node listens.
struct RedisEndpoint: Hashable, Sendable {
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

/// One connection per cluster node, made when first needed (concurrent first users share it) and forgotten when it
/// closes, so the next user makes a new one. `onClose` hears of each close (the owner then reads the topology again).
final class RedisNodeConnections: Sendable {
    typealias Connect = @Sendable (RedisEndpoint) async throws -> RedisConnection

    private struct State {
        /// Each with a number, so that a closing connection removes itself and not its successor.
        var connections: [RedisEndpoint: (number: UInt64, task: Task<RedisConnection, any Error>)] = [:]
        /// The connections made: every command after the first takes one from here, without waiting on its task.
        var ready: [RedisEndpoint: RedisConnection] = [:]
        var made: UInt64 = 0
        var closed = false
    }

    private let connect: Connect
    private let onClose: @Sendable (RedisEndpoint) -> Void
    private let state = Mutex(State())

    init(connect: @escaping Connect, onClose: @escaping @Sendable (RedisEndpoint) -> Void) {
        self.connect = connect
        self.onClose = onClose
    }

    func connection(to endpoint: RedisEndpoint) async throws -> RedisConnection {
        if let ready = state.withLock({ $0.closed ? nil : $0.ready[endpoint] }) { return ready }
        let (number, task) = try state.withLock { state throws(BrokerError) -> (UInt64, Task<RedisConnection, any Error>) in
            guard !state.closed else { throw BrokerError(.unavailable, "Redis Cluster connections closed") }
            if let existing = state.connections[endpoint] { return existing }
            state.made += 1
            let number = state.made
            let connect = self.connect
            // Holds this object until the connection closes (`closeAll` closes them all).
            let task = Task { [self] in
                let connection = try await connect(endpoint)
                connection.channel.closeFuture.whenComplete { _ in
                    self.forget(endpoint, number: number)
                    self.onClose(endpoint)
                }
                // Ready for the fast path, unless it closed already (then the close forgot it first).
                self.state.withLock { state in
                    if state.connections[endpoint]?.number == number, connection.channel.isActive { state.ready[endpoint] = connection }
                }
                return connection
            }
            state.connections[endpoint] = (number, task)
            return (number, task)
        }
        do {
            return try await task.value
        } catch {
            forget(endpoint, number: number)
            throw error
        }
    }

    /// Closes every connection; later calls fail.
    func closeAll() {
        let tasks = state.withLock { state in
            state.closed = true
            state.ready = [:]
            defer { state.connections = [:] }
            return state.connections.values.map(\.task)
        }
        for task in tasks { Task { (try? await task.value)?.close() } }
    }

    private func forget(_ endpoint: RedisEndpoint, number: UInt64) {
        state.withLock { state in
            if state.connections[endpoint]?.number == number {
                state.connections[endpoint] = nil
                state.ready[endpoint] = nil
            }
        }
    }
}

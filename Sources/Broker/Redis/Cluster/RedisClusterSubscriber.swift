import NIOCore
import Synchronization

/// Sharded Pub/Sub (Redis 7) over a cluster: each shard channel is subscribed (`SSUBSCRIBE`) on a connection to the
/// master of its slot, so a message crosses only the shard that owns it. When the server unsubscribes a channel by
/// itself (its slot moved, or a failover) or the connection is lost, the channel is subscribed again at the slot's
/// owner in the newly read topology, and `onResubscribed` is told, so that the owner fills the gap from the log.
final class RedisClusterSubscriber: Sendable {
    private struct State {
        /// The channels wanted, and where each is subscribed now (nil while being moved).
        var channels: [String: RedisEndpoint?] = [:]
        var closed = false
    }

    private let client: RedisClusterClient
    private let onResubscribed: @Sendable (String) -> Void
    private let state = Mutex(State())
    /// Subscriber connections, one per master that serves a subscribed channel (a RESP2 connection that subscribed
    /// takes no other commands, so these are not the client's).
    private let connections: RedisNodeConnections

    /// - Parameters:
    ///   - onMessage: each message of a subscribed shard channel (channel, payload), on a connection's event loop.
    ///   - onResubscribed: a channel subscribed again after the server dropped it or its connection was lost; messages
    ///     published in between were missed.
    init(client: RedisClusterClient, onMessage: @escaping @Sendable (String, [UInt8]) -> Void, onResubscribed: @escaping @Sendable (String) -> Void) {
        self.client = client
        self.onResubscribed = onResubscribed
        let back = Back()
        self.connections = RedisNodeConnections(
            connect: { endpoint in
                try await RedisConnection.connect(
                    to: client.url(host: endpoint.host, port: endpoint.port), commandTimeout: client.commandTimeout, onMessage: onMessage,
                    onShardUnsubscribed: { channel in back.subscriber?.serverUnsubscribed(channel, at: endpoint) })
            },
            onClose: { endpoint in back.subscriber?.connectionClosed(endpoint) })
        back.subscriber = self
    }

    /// How the connections' callbacks reach their subscriber without keeping it alive.
    private final class Back: Sendable {
        private struct Reference { weak var subscriber: RedisClusterSubscriber? }
        private let reference = Mutex(Reference())

        var subscriber: RedisClusterSubscriber? {
            get { reference.withLock { $0.subscriber } }
            set { reference.withLock { $0.subscriber = newValue } }
        }
    }

    /// Where `channel` is subscribed now (for tests and health); nil when it is not.
    func subscription(of channel: String) -> (host: String, port: Int)? {
        state.withLock { state in state.channels[channel].flatMap { $0 }.map { ($0.host, $0.port) } }
    }

    /// Subscribes `channel` at the master of its slot; returns once Redis confirmed it. When that fails (the master is
    /// unreachable, a failover is under way), it is tried again in the background until it holds or is unsubscribed,
    /// and `onResubscribed` is told then, so what was published meanwhile is filled from the log.
    func subscribe(_ channel: String) async throws {
        state.withLock { $0.channels[channel] = .some(nil) }
        do {
            try await place(channel, refresh: false)
        } catch {
            resubscribe([channel])
            throw error
        }
    }

    /// Unsubscribes `channel`; no message of it is delivered once this returns.
    func unsubscribe(_ channel: String) async throws {
        let endpoint = state.withLock { state -> RedisEndpoint? in
            defer { state.channels[channel] = nil }
            return state.channels[channel].flatMap { $0 }
        }
        guard let endpoint, let connection = try? await connections.connection(to: endpoint) else { return }
        _ = try await connection.send(["SUNSUBSCRIBE", channel]).get()
    }

    /// Moves every channel subscribed where `topology` says its slot is not served any more to where it is: a master
    /// that froze (or was cut off) without closing its connections never tells its subscribers, and its channels
    /// would stay silent. Called after each periodic topology read.
    func reconcile(with topology: RedisClusterTopology) {
        let misplaced = state.withLock { state -> [String] in
            guard !state.closed else { return [] }
            var misplaced: [String] = []
            for (channel, endpoint) in state.channels {
                guard let endpoint, let master = topology.master(ofKey: channel), RedisEndpoint(master) != endpoint else { continue }
                state.channels[channel] = .some(nil)
                misplaced.append(channel)
            }
            return misplaced
        }
        if !misplaced.isEmpty { resubscribe(misplaced) }
    }

    func close() {
        state.withLock { state in
            state.closed = true
            state.channels = [:]
        }
        connections.closeAll()
    }

    /// Subscribes `channel` where its slot is served now (reading the topology first when `refresh`).
    private func place(_ channel: String, refresh: Bool) async throws {
        var known = refresh ? nil : client.topology
        if known == nil { known = try await client.refreshTopology() }
        guard let topology = known else { return }
        guard let master = topology.master(ofKey: channel) else {
            throw BrokerError(.unavailable, "Redis Cluster: no master serves the slot of \(channel)")
        }
        let endpoint = RedisEndpoint(master)
        let connection = try await connections.connection(to: endpoint)
        let reply = try await connection.send(["SSUBSCRIBE", channel]).get()
        if case .error(let message) = reply { throw BrokerError(.unavailable, "Redis Cluster: SSUBSCRIBE \(channel): \(message)") }
        let stillWanted = state.withLock { state -> Bool in
            guard state.channels[channel] != nil else { return false }
            state.channels[channel] = .some(endpoint)
            return true
        }
        // Unsubscribed meanwhile: undo, so no message of it arrives.
        if !stillWanted { _ = try? await connection.send(["SUNSUBSCRIBE", channel]).get() }
    }

    /// Subscribes `channels` again where their slots are now (the server dropped them, their connection was lost, or
    /// their first subscription failed): in rounds, the topology read once a round, until each holds or is no longer
    /// wanted, backing off up to 2 s between rounds. It never gives up while a channel is wanted: a failover with
    /// Redis's default `cluster-node-timeout` (15 s) takes longer than any fixed number of quick retries.
    private func resubscribe(_ channels: [String]) {
        Task {
            var pending = channels
            var round = 0
            while true {
                pending = state.withLock { state in state.closed ? [] : pending.filter { state.channels[$0] != nil } }
                if pending.isEmpty { return }
                if round > 0 { try? await Task.sleep(for: .milliseconds(min(2_000, 50 * round))) }
                round += 1
                guard (try? await client.refreshTopology()) != nil else { continue }
                var failed: [String] = []
                for channel in pending {
                    do {
                        try await place(channel, refresh: false)
                        onResubscribed(channel)
                    } catch {
                        failed.append(channel)
                    }
                }
                pending = failed
            }
        }
    }

    private func serverUnsubscribed(_ channel: String, at endpoint: RedisEndpoint) {
        let wanted = state.withLock { state -> Bool in
            guard let current = state.channels[channel], current == endpoint else { return false }
            state.channels[channel] = .some(nil)
            return true
        }
        if wanted { resubscribe([channel]) }
    }

    private func connectionClosed(_ endpoint: RedisEndpoint) {
        let lost = state.withLock { state -> [String] in
            guard !state.closed else { return [] }
            let lost = state.channels.compactMap { $0.value == endpoint ? $0.key : nil }
            for channel in lost { state.channels[channel] = .some(nil) }
            return lost
        }
        if !lost.isEmpty { resubscribe(lost) }
    }
}

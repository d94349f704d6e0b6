import Foundation
import NIOCore
import Synchronization
import Testing

@testable import Broker

/// The cluster building blocks against a real Redis Cluster (3 masters, 3 replicas), which `scripts/test.sh` starts
/// with `scripts/redis-cluster.sh` and names in `TANDEM_TEST_REDIS_CLUSTER_NODES` (host:port, comma-separated).
/// Without it these tests are skipped locally, and fail under CI (`CI=true`), where the cluster must be there.
@Suite(.serialized, .timeLimit(.minutes(1)))
struct RedisClusterLiveTests {
    static var seeds: [RedisURL]? {
        guard let list = ProcessInfo.processInfo.environment["TANDEM_TEST_REDIS_CLUSTER_NODES"] else { return nil }
        let urls = list.split(separator: ",").compactMap { RedisURL("redis://\($0)/0") }
        return urls.isEmpty ? nil : urls
    }

    static var enabled: Bool { seeds != nil || ProcessInfo.processInfo.environment["CI"] == "true" }

    private func connect(_ url: RedisURL) async throws -> RedisConnection {
        try await RedisConnection.connect(to: url, commandTimeout: .seconds(2))
    }

    private func topology() async throws -> RedisClusterTopology {
        let seeds = try #require(Self.seeds, "TANDEM_TEST_REDIS_CLUSTER_NODES is not set: run the tests through scripts/test.sh")
        let seed = try await connect(seeds[0])
        defer { seed.close() }
        let reply = try await seed.send(["CLUSTER", "SHARDS"]).get()
        return try #require(RedisClusterTopology(shardsReply: reply), "CLUSTER SHARDS: \(reply)")
    }

    @Test(.enabled(if: enabled)) func theTopologyHasThreeMastersEachWithAReplicaServingEverySlot() async throws {
        let topology = try await topology()
        #expect(topology.servesAllSlots)
        #expect(topology.masters.count == 3)
        #expect(topology.shards.allSatisfy { $0.replicas.count == 1 })
        #expect(topology.shards.flatMap(\.slots).reduce(0) { $0 + $1.count } == RedisClusterSlot.count)
    }

    @Test(.enabled(if: enabled)) func slotsAreTheOnesRedisComputes() async throws {
        let seeds = try #require(Self.seeds)
        let connection = try await connect(seeds[0])
        defer { connection.close() }
        var keys = ["", "foo", "123456789", "{}", "{a", "a}", "{}x{y}", "tandem:{ABCdef123}:log", "日本語{鍵}"]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let length = Int.random(in: 0...24, using: &generator)
            keys.append(String((0..<length).map { _ in "ab{}:xyz019日".randomElement(using: &generator)! }))
        }
        let replies = keys.map { connection.send(["CLUSTER", "KEYSLOT", $0]) }
        for (key, reply) in zip(keys, replies) {
            let slot = try await reply.get().integer
            #expect(slot.map(Int.init) == RedisClusterSlot.of(key), "\(key)")
        }
    }

    @Test(.enabled(if: enabled)) func aCommandSentToAnotherMasterIsRedirectedToTheOwner() async throws {
        let topology = try await topology()
        let key = "tandem:{\(UUID().uuidString)}:record"
        let owner = try #require(topology.master(ofKey: key))
        let other = try #require(topology.masters.first { $0 != owner })
        let wrong = try await connect(try #require(RedisURL("redis://\(other.host):\(other.port)/0")))
        defer { wrong.close() }
        let reply = try await wrong.send(["SET", key, "1", "PX", "5000"]).get()
        guard case .error(let message) = reply else {
            Issue.record("expected MOVED, got \(reply)")
            return
        }
        let redirect = try #require(RedisClusterRedirect(errorMessage: message), "\(message)")
        #expect(redirect.kind == .moved)
        #expect(redirect.slot == RedisClusterSlot.of(key))
        #expect(redirect.port == owner.port)
        let right = try await connect(try #require(RedisURL("redis://\(owner.host):\(owner.port)/0")))
        defer { right.close() }
        #expect(try await right.send(["SET", key, "1", "PX", "5000"]).get() == .simpleString("OK"))
    }

    // MARK: The client

    private func client() throws -> RedisClusterClient {
        RedisClusterClient(configuration: .init(seeds: try #require(Self.seeds), commandTimeout: .seconds(2)))
    }

    private func direct(_ node: RedisClusterTopology.Node) async throws -> RedisConnection {
        try await connect(try #require(RedisURL("redis://\(node.host):\(node.port)/0")))
    }

    /// A key of a fresh session whose slot holds no key at all, so the slot can be moved without migrating keys.
    private func keyInAnEmptySlot(_ topology: RedisClusterTopology) async throws -> String {
        for _ in 0..<50 {
            let key = "tandem:{\(UUID().uuidString)}:record"
            let owner = try #require(topology.master(ofKey: key))
            let connection = try await direct(owner)
            defer { connection.close() }
            let count = try await connection.send(["CLUSTER", "COUNTKEYSINSLOT", String(RedisClusterSlot.of(key))]).get()
            if count == .integer(0) { return key }
        }
        throw RedisNotConfigured()
    }

    /// Moves an empty slot the way `redis-cli --cluster reshard` does: IMPORTING at the target, MIGRATING at the
    /// source, then NODE at the target first (it was importing, so it bumps its config epoch and the cluster takes its
    /// claim), the source next, every other master last. Told in any other order, a node that still believes the old
    /// owner (with the higher epoch) answers the new owner's claim with an UPDATE, and the new owner gives the slot
    /// back while the old one has let go: both answer MOVED to the other until someone intervenes.
    private func moveEmptySlot(
        _ slot: String,
        from source: RedisClusterTopology.Node,
        to target: RedisClusterTopology.Node,
        in topology: RedisClusterTopology
    ) async throws {
        let others = topology.masters.filter { $0 != source && $0 != target }
        let steps: [(RedisClusterTopology.Node, [String])] =
            [
                (target, ["CLUSTER", "SETSLOT", slot, "IMPORTING", source.id]),
                (source, ["CLUSTER", "SETSLOT", slot, "MIGRATING", target.id]),
                (target, ["CLUSTER", "SETSLOT", slot, "NODE", target.id]),
                (source, ["CLUSTER", "SETSLOT", slot, "NODE", target.id]),
            ] + others.map { ($0, ["CLUSTER", "SETSLOT", slot, "NODE", target.id]) }
        for (node, arguments) in steps {
            let connection = try await direct(node)
            defer { connection.close() }
            let reply = try await connection.send(arguments).get()
            #expect(reply == .simpleString("OK"), "\(arguments) on \(node.port): \(reply)")
        }
    }

    @Test(.enabled(if: enabled)) func commandsReachTheMasterOfTheirKeysSlotOnEveryShard() async throws {
        let client = try client()
        defer { client.close() }
        let topology = try await client.refreshTopology()
        var owners = Set<Int>()
        for index in 0..<300 {
            let key = "tandem:{live\(index)-\(UUID().uuidString)}:record"
            #expect(try await client.send(["SET", key, "v\(index)", "PX", "30000"], key: key) == .simpleString("OK"))
            #expect(try await client.send(["GET", key], key: key).string == "v\(index)")
            let owner = try #require(topology.master(ofKey: key))
            owners.insert(owner.port)
            if index % 50 == 0 {
                // It is on the owner itself, not forwarded.
                let connection = try await direct(owner)
                #expect(try await connection.send(["GET", key]).get().string == "v\(index)")
                connection.close()
            }
        }
        #expect(owners.count == 3, "keys landed on every master")
    }

    @Test(.enabled(if: enabled)) func aSlotMovedToAnotherMasterIsFollowedAndTheTopologyRead() async throws {
        let client = try client()
        defer { client.close() }
        let before = try await client.refreshTopology()
        let key = try await keyInAnEmptySlot(before)
        let slot = String(RedisClusterSlot.of(key))
        let owner = try #require(before.master(ofKey: key))
        let newOwner = try #require(before.masters.first { $0 != owner })
        #expect(try await client.send(["GET", key], key: key) == .null)
        try await moveEmptySlot(slot, from: owner, to: newOwner, in: before)
        do {
            // The client still believes the old owner: it is told MOVED, reads the topology, and goes there.
            #expect(try await client.send(["SET", key, "moved", "PX", "30000"], key: key) == .simpleString("OK"))
            #expect(client.topology?.master(ofKey: key) == newOwner)
            let connection = try await direct(newOwner)
            #expect(try await connection.send(["GET", key]).get().string == "moved")
            connection.close()
            _ = try await client.send(["DEL", key], key: key)
        }
        try await moveEmptySlot(slot, from: newOwner, to: owner, in: before)
    }

    @Test(.enabled(if: enabled)) func aSlotBeingMigratedIsAskedOnceAtItsTargetWithoutChangingTheTopology() async throws {
        let client = try client()
        defer { client.close() }
        let topology = try await client.refreshTopology()
        let key = try await keyInAnEmptySlot(topology)
        let slot = String(RedisClusterSlot.of(key))
        let source = try #require(topology.master(ofKey: key))
        let target = try #require(topology.masters.first { $0 != source })
        let sourceConnection = try await direct(source)
        let targetConnection = try await direct(target)
        defer {
            sourceConnection.close()
            targetConnection.close()
        }
        #expect(try await targetConnection.send(["CLUSTER", "SETSLOT", slot, "IMPORTING", source.id]).get() == .simpleString("OK"))
        #expect(try await sourceConnection.send(["CLUSTER", "SETSLOT", slot, "MIGRATING", target.id]).get() == .simpleString("OK"))
        // The key is not on the source: it answers ASK, and the client sends ASKING + SET to the target.
        #expect(try await client.send(["SET", key, "asked", "PX", "30000"], key: key) == .simpleString("OK"))
        #expect(client.topology?.master(ofKey: key) == source, "ASK changes nothing for the next commands")
        let asking = targetConnection.send(["ASKING"])
        let value = targetConnection.send(["GET", key])
        _ = try await asking.get()
        #expect(try await value.get().string == "asked")
        let askingAgain = targetConnection.send(["ASKING"])
        let deleted = targetConnection.send(["DEL", key])
        _ = try await askingAgain.get()
        #expect(try await deleted.get() == .integer(1))
        #expect(try await targetConnection.send(["CLUSTER", "SETSLOT", slot, "STABLE"]).get() == .simpleString("OK"))
        #expect(try await sourceConnection.send(["CLUSTER", "SETSLOT", slot, "STABLE"]).get() == .simpleString("OK"))
    }

    // MARK: Sharded Pub/Sub

    private final class Inbox: Sendable {
        let messages = Mutex<[(String, String)]>([])
        let resubscribed = Mutex<[String]>([])

        /// Up to 15 s: a moved slot converges across the masters in well under a second on a quiet machine, but the
        /// suites share two cores with each other (and with builds) when CI runs.
        func waitFor(_ condition: @escaping @Sendable (Inbox) -> Bool) async -> Bool {
            for _ in 0..<300 {
                if condition(self) { return true }
                try? await Task.sleep(for: .milliseconds(50))
            }
            return condition(self)
        }
    }

    private func subscriber(_ client: RedisClusterClient, _ inbox: Inbox) -> RedisClusterSubscriber {
        RedisClusterSubscriber(
            client: client,
            onMessage: { channel, payload in inbox.messages.withLock { $0.append((channel, String(decoding: payload, as: UTF8.self))) } },
            onResubscribed: { channel in inbox.resubscribed.withLock { $0.append(channel) } })
    }

    @Test(.enabled(if: enabled)) func aShardChannelIsHeardAtItsSlotsMasterAndNotAfterItIsUnsubscribed() async throws {
        let client = try client()
        let inbox = Inbox()
        let subscriber = subscriber(client, inbox)
        defer {
            subscriber.close()
            client.close()
        }
        let topology = try await client.refreshTopology()
        let channel = "tandem:{\(UUID().uuidString)}:events"
        try await subscriber.subscribe(channel)
        let owner = try #require(topology.master(ofKey: channel))
        #expect(subscriber.subscription(of: channel)?.port == owner.port)
        #expect(try await client.send(["SPUBLISH", channel, "one"], key: channel) == .integer(1))
        #expect(await inbox.waitFor { $0.messages.withLock { $0.map(\.1) } == ["one"] })
        try await subscriber.unsubscribe(channel)
        #expect(try await client.send(["SPUBLISH", channel, "two"], key: channel) == .integer(0), "nobody listens any more")
        #expect(subscriber.subscription(of: channel) == nil)
    }

    @Test(.enabled(if: enabled)) func aShardChannelWhoseSlotMovesIsSubscribedAgainAtTheNewOwner() async throws {
        let client = try client()
        let inbox = Inbox()
        let subscriber = subscriber(client, inbox)
        defer {
            subscriber.close()
            client.close()
        }
        let before = try await client.refreshTopology()
        let key = try await keyInAnEmptySlot(before)
        let channel = key.replacingOccurrences(of: ":record", with: ":events")
        let slot = String(RedisClusterSlot.of(channel))
        let owner = try #require(before.master(ofKey: channel))
        let newOwner = try #require(before.masters.first { $0 != owner })
        try await subscriber.subscribe(channel)
        try await moveEmptySlot(slot, from: owner, to: newOwner, in: before)
        // The old owner unsubscribes its subscribers (sunsubscribe); the subscriber goes to the new owner and says so.
        #expect(await inbox.waitFor { $0.resubscribed.withLock { $0 } == [channel] })
        #expect(subscriber.subscription(of: channel)?.port == newOwner.port)
        // The replicas learn the move by gossip: until then a command for the slot may be sent where it was.
        var published: RESPValue?
        for _ in 0..<50 where published == nil {
            published = try? await client.send(["SPUBLISH", channel, "after the move"], key: channel)
            if published == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(published == .integer(1))
        #expect(await inbox.waitFor { $0.messages.withLock { $0.map(\.1) } == ["after the move"] })
        try await subscriber.unsubscribe(channel)
        try await moveEmptySlot(slot, from: newOwner, to: owner, in: before)
    }
}

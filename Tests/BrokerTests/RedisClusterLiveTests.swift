import Foundation
import NIOCore
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
}

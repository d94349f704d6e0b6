import Foundation
import PropertyBased
import Testing

@testable import Broker

/// Redis Cluster's building blocks on their own: the hash slot of a key, the `CLUSTER SHARDS` reply (hostile until
/// checked), and `MOVED`/`ASK` redirects. The same against a real cluster in `RedisClusterLiveTests`.
struct RedisClusterTopologyTests {
    // MARK: Slots

    @Test func slotsMatchRedisForKnownKeys() {
        // Values from the cluster specification and from `CLUSTER KEYSLOT` on redis-server 7.0.
        #expect(RedisClusterSlot.crc16(Array("123456789".utf8)[...]) == 0x31C3)
        #expect(RedisClusterSlot.of("123456789") == 12_739)
        #expect(RedisClusterSlot.of("foo") == 12_182)
        #expect(RedisClusterSlot.of("{user1000}.following") == RedisClusterSlot.of("user1000"))
        #expect(RedisClusterSlot.of("foo{}{bar}") == RedisClusterSlot.of("foo{}{bar}"), "an empty tag hashes the whole key")
        #expect(RedisClusterSlot.of("foo{}{bar}") != RedisClusterSlot.of("bar"))
        #expect(RedisClusterSlot.of("foo{{bar}}zap") == RedisClusterSlot.of("{bar"), "the tag ends at the first }")
        #expect(RedisClusterSlot.of("foo{bar}{zap}") == RedisClusterSlot.of("bar"), "the first tag counts")
        #expect(RedisClusterSlot.of("") == 0)
    }

    @Test func everyKeyOfASessionIsInOneSlot() async {
        await propertyCheck(count: 300, input: Gen.letterOrNumber.string(of: 1...40)) { id in
            let slot = RedisClusterSlot.of("{\(id)}")
            for suffix in [":record", ":log", ":pc", ":phone", ":events"] {
                #expect(RedisClusterSlot.of("tandem:{\(id)}\(suffix)") == slot)
            }
            #expect(RedisClusterSlot.all.contains(slot))
        }
    }

    // MARK: CLUSTER SHARDS

    static func node(_ id: String, _ port: Int64, role: String, health: String = "online", extra: [RESPValue] = []) -> RESPValue {
        .array(
            [
                .bulkString(Array("id".utf8)), .bulkString(Array(id.utf8)), .bulkString(Array("port".utf8)), .integer(port),
                .bulkString(Array("ip".utf8)), .bulkString(Array("127.0.0.1".utf8)), .bulkString(Array("endpoint".utf8)),
                .bulkString(Array("127.0.0.1".utf8)), .bulkString(Array("role".utf8)), .bulkString(Array(role.utf8)),
                .bulkString(Array("replication-offset".utf8)), .integer(0), .bulkString(Array("health".utf8)), .bulkString(Array(health.utf8)),
            ] + extra)
    }

    static func shard(_ slots: [Int64], _ nodes: [RESPValue]) -> RESPValue {
        .array([.bulkString(Array("slots".utf8)), .array(slots.map { .integer($0) }), .bulkString(Array("nodes".utf8)), .array(nodes)])
    }

    static let threeShards = RESPValue.array([
        shard([0, 5460], [node("a", 7000, role: "master"), node("d", 7003, role: "replica")]),
        shard([5461, 10922], [node("b", 7001, role: "master"), node("e", 7004, role: "replica", health: "loading")]),
        shard([10923, 16383], [node("c", 7002, role: "master", extra: [.bulkString(Array("hostname".utf8)), .bulkString([])]), node("f", 7005, role: "replica")]),
    ])

    @Test func aHealthyClusterServesEverySlotFromItsMaster() throws {
        let topology = try #require(RedisClusterTopology(shardsReply: Self.threeShards))
        #expect(topology.servesAllSlots)
        #expect(topology.masters.map(\.port) == [7000, 7001, 7002])
        #expect(topology.master(ofSlot: 0)?.id == "a")
        #expect(topology.master(ofSlot: 5461)?.id == "b")
        #expect(topology.master(ofSlot: 16_383)?.id == "c")
        #expect(topology.master(ofSlot: 16_384) == nil)
        #expect(topology.master(ofSlot: -1) == nil)
        #expect(topology.shards[1].replicas.first?.isOnline == false)
        #expect(topology.master(ofKey: "123456789")?.id == "c")
        // What can acknowledge a write (WAIT): online replicas only; none for a slot out of range.
        #expect(topology.onlineReplicaCount(ofSlot: 0) == 1)
        #expect(topology.onlineReplicaCount(ofSlot: 5461) == 0)
        #expect(topology.onlineReplicaCount(ofSlot: 16_384) == 0)
        #expect(topology.onlineReplicaCount(ofSlot: -1) == 0)
    }

    /// `cluster-preferred-endpoint-type unknown-endpoint` leaves `endpoint` empty or `?`: the node's `ip` is dialled.
    @Test(arguments: ["", "?"])
    func anUnknownEndpointFallsBackToTheNodesIP(endpoint: String) throws {
        func node(_ id: String, _ port: Int64, role: String) -> RESPValue {
            .array([
                .bulkString(Array("id".utf8)), .bulkString(Array(id.utf8)), .bulkString(Array("port".utf8)), .integer(port),
                .bulkString(Array("ip".utf8)), .bulkString(Array("10.0.0.7".utf8)), .bulkString(Array("endpoint".utf8)),
                .bulkString(Array(endpoint.utf8)), .bulkString(Array("role".utf8)), .bulkString(Array(role.utf8)),
                .bulkString(Array("health".utf8)), .bulkString(Array("online".utf8)),
            ])
        }
        let topology = try #require(RedisClusterTopology(shardsReply: .array([Self.shard([0, 16383], [node("a", 7000, role: "master")])])))
        #expect(topology.master(ofSlot: 9)?.host == "10.0.0.7")
    }

    /// On a cluster an event goes out with SPUBLISH; nothing else in the scripts differs.
    @Test func clusterScriptsPublishOnShardChannelsAndDifferInNothingElse() {
        let plain = RedisScriptSet(sharded: false)
        let sharded = RedisScriptSet(sharded: true)
        for script in RedisScriptSet.all {
            let (one, other) = (plain[keyPath: script].text, sharded[keyPath: script].text)
            #expect(!one.contains("SPUBLISH"))
            #expect(!other.contains("'PUBLISH'"))
            #expect(one.replacing("'PUBLISH'", with: "'SPUBLISH'") == other)
        }
        #expect(sharded.publish.text.contains("redis.call('SPUBLISH', channel, entry)"))
    }

    @Test func aShardWithoutAnOnlineMasterLeavesItsSlotsUnserved() throws {
        let reply = RESPValue.array([
            Self.shard([0, 16383], [Self.node("a", 7000, role: "master", health: "failed"), Self.node("d", 7003, role: "replica")])
        ])
        let topology = try #require(RedisClusterTopology(shardsReply: reply))
        #expect(!topology.servesAllSlots)
        #expect(topology.master(ofSlot: 42) == nil)
        let partial = try #require(RedisClusterTopology(shardsReply: .array([Self.shard([0, 100], [Self.node("a", 7000, role: "master")])])))
        #expect(partial.master(ofSlot: 100)?.id == "a")
        #expect(partial.master(ofSlot: 101) == nil)
        #expect(!partial.servesAllSlots)
    }

    @Test(arguments: [
        ("a slot owned twice", RESPValue.array([shard([0, 10], [node("a", 1, role: "master")]), shard([10, 20], [node("b", 2, role: "master")])])),
        ("a slot past 16383", .array([shard([0, 16384], [node("a", 1, role: "master")])])),
        ("a negative slot", .array([shard([-1, 5], [node("a", 1, role: "master")])])),
        ("a range backwards", .array([shard([9, 5], [node("a", 1, role: "master")])])),
        ("an odd slot list", .array([shard([0, 5, 9], [node("a", 1, role: "master")])])),
        ("port 0", .array([shard([0, 5], [node("a", 0, role: "master")])])),
        ("port 65536", .array([shard([0, 5], [node("a", 65_536, role: "master")])])),
        ("two masters", .array([shard([0, 5], [node("a", 1, role: "master"), node("b", 2, role: "master")])])),
        ("an unknown role", .array([shard([0, 5], [node("a", 1, role: "leader")])])),
        ("not an array", .bulkString(Array("slots".utf8))),
        ("a shard that is not a map", .array([.array([.bulkString(Array("slots".utf8))])])),
        ("a name given twice", .array([.array([
            .bulkString(Array("slots".utf8)), .array([.integer(0), .integer(5)]), .bulkString(Array("slots".utf8)), .array([]),
            .bulkString(Array("nodes".utf8)), .array([]),
        ])])),
        ("an error reply", .error("ERR unknown subcommand")),
        ("slots as strings", .array([.array([
            .bulkString(Array("slots".utf8)), .array([.bulkString(Array("0".utf8)), .bulkString(Array("5".utf8))]),
            .bulkString(Array("nodes".utf8)), .array([node("a", 1, role: "master")]),
        ])])),
    ])
    func aContradictoryOrMalformedReplyIsRefusedWhole(_ name: String, reply: RESPValue) {
        #expect(RedisClusterTopology(shardsReply: reply) == nil, "\(name)")
    }

    /// Any reply at all: never a trap, and whatever is accepted is consistent (each slot served by the master of the
    /// shard that lists it).
    @Test func randomRepliesNeverTrapAndWhatIsAcceptedIsConsistent() async {
        let integers = Gen<Int64>.oneOf(Gen.int64(in: -2...16_385), Gen.int64(), Gen.int64(in: 0...70_000))
        let slotLists = integers.array(of: 0...6)
        let roles = Gen<String?>.element(of: ["master", "replica", "x"]).map { $0 ?? "master" }
        let healths = Gen<String?>.element(of: ["online", "failed", "loading"]).map { $0 ?? "online" }
        let nodes = zip(integers, roles, healths).map { port, role, health in Self.node("n\(port)", port, role: role, health: health) }
        let shards = zip(slotLists, nodes.array(of: 0...3)).map { slots, nodes in Self.shard(slots, nodes) }
        await propertyCheck(count: 1000, input: shards.array(of: 0...4)) { shards in
            guard let topology = RedisClusterTopology(shardsReply: .array(shards)) else { return }
            for slot in stride(from: 0, to: RedisClusterSlot.count, by: 97) {
                guard let master = topology.master(ofSlot: slot) else { continue }
                let owning = topology.shards.filter { $0.slots.contains { $0.contains(slot) } }
                #expect(owning.count == 1)
                #expect(owning.first?.master == master)
                #expect(master.isOnline && (1...65_535).contains(master.port))
            }
        }
    }

    // MARK: Redirects

    @Test func redirectsAreParsedAndAnythingElseIsNot() {
        #expect(RedisClusterRedirect(errorMessage: "MOVED 3999 127.0.0.1:6381") == .init(kind: .moved, slot: 3999, host: "127.0.0.1", port: 6381))
        #expect(RedisClusterRedirect(errorMessage: "ASK 0 10.0.0.2:7000")?.kind == .ask)
        #expect(RedisClusterRedirect(errorMessage: "MOVED 16383 ::1:7000")?.host == "::1")
        #expect(RedisClusterRedirect(errorMessage: "MOVED 12 :7000")?.host == "", "an empty host means the node asked")
        for bad in [
            "MOVED 16384 127.0.0.1:7000", "MOVED -1 127.0.0.1:7000", "MOVED 1 127.0.0.1:0", "MOVED 1 127.0.0.1:65536", "MOVED 1 127.0.0.1",
            "MOVED 1", "MOVED  1 h:1", "MOVED 1 h:1 extra", "moved 1 h:1", "ERR wrong", "MOVED 99999999999999999999 h:1",
            "MOVED 1 h:99999999999999999999", "MOVED +1 h:1", "MOVED 1 h:+1", "",
        ] {
            #expect(RedisClusterRedirect(errorMessage: bad) == nil, "\(bad)")
        }
    }
}

extension RedisClusterRedirect {
    init(kind: Kind, slot: Int, host: String, port: Int) {
        self.init(errorMessage: "\(kind == .moved ? "MOVED" : "ASK") \(slot) \(host):\(port)")!
    }
}

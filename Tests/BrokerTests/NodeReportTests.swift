@testable import Broker
import Foundation
import Testing

/// The operators' page's node reports: each node's report comes back to every node while it is fresh, bounded.
@Suite(.timeLimit(.minutes(1)))
struct NodeReportTests {
    static func report(_ node: String, at reportedAt: Int64 = TimeSource.system.now()) -> NodeReport {
        NodeReport(node: node, reportedAt: reportedAt, body: Array(#"{"node":"\#(node)"}"#.utf8))
    }

    static func acceptAll(_ report: NodeReport) -> Bool { true }

    @Test(arguments: BrokerUnderTest.available)
    func everyFreshReportComesBackAndAStaleOneIsDropped(_ kind: BrokerUnderTest) async throws {
        try await withBroker(kind) { fixture in
            let broker = fixture.broker
            // Unique names: the hash is shared by everything that uses this Redis.
            let suffix = UUID().uuidString.prefix(8)
            let a = Self.report("a-\(suffix)")
            let mine = try await broker.exchangeReport(a, ttl: .seconds(5), limit: 64, accept: Self.acceptAll)
            #expect(mine.contains(a))
            guard kind != .memory else {
                // One node alone knows only its own report.
                #expect(mine == [a])
                return
            }
            let stale = Self.report("stale-\(suffix)", at: TimeSource.system.now() - 60_000)
            let afterStale = try await broker.exchangeReport(stale, ttl: .seconds(5), limit: 64, accept: Self.acceptAll)
            #expect(!afterStale.contains { $0.node == stale.node }, "a report past its TTL is not returned")
            let b = Self.report("b-\(suffix)")
            let both = try await broker.exchangeReport(b, ttl: .seconds(5), limit: 64, accept: Self.acceptAll)
            #expect(both.contains(a) && both.contains(b))
            #expect(!both.contains { $0.node == stale.node })
            // Freshest first, and never more than the limit.
            let one = try await broker.exchangeReport(Self.report("c-\(suffix)", at: TimeSource.system.now() + 1000), ttl: .seconds(5), limit: 1, accept: Self.acceptAll)
            #expect(one.map(\.node) == ["c-\(suffix)"])
        }
    }

    /// What else wrote the hash (on a Redis of the test's own): fields that are not reports, oversized, planted in
    /// the future, refused by `accept`, or with a control or format character in the name are deleted and never
    /// crowd a real node out of the limit.
    @Test(.enabled(if: RedisServerProcess.available))
    func hostileFieldsAreDeletedBeforeTheLimitApplies() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        try await withRedisBroker(.init(url: redis.url), sink: RecordingSink()) { broker in
            let key = RedisKeys.nodeReports
            let now = TimeSource.system.now()
            var planted: [String] = []
            for index in 0..<80 {
                let value: String
                switch index % 5 {
                case 0: value = "not a report"
                case 1: value = "\(now)\n" + String(repeating: "x", count: NodeReport.maximumBodyBytes + 1)
                case 2: value = "\(now + 3_600_000)\n{}"  // an hour ahead: would always sort first
                case 3: value = "\(now)\nrefused"
                default: value = "\(now)\n{}"
                }
                let name = index % 5 == 4 ? "evil\u{202E}\(index)" : "junk-\(index)"
                planted.append(name)
                _ = try await redis.command(["HSET", key, name, value]).throwingError()
            }
            let real = Self.report("real")
            let seen = try await broker.exchangeReport(real, ttl: .seconds(5), limit: 64) { String(decoding: $0.body, as: UTF8.self) != "refused" }
            #expect(seen == [real])
            guard case .array(let fields) = try await redis.command(["HKEYS", key]) else {
                Issue.record("HKEYS answered no array")
                return
            }
            #expect(fields.compactMap(\.string) == ["real"], "the planted fields are deleted")
        }
    }

    /// A reports key of another type (`SET tandem:{ops}:nodes x`) is deleted once and the exchange goes on.
    @Test(.enabled(if: RedisServerProcess.available))
    func aReportsKeyOfTheWrongTypeIsReplaced() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        try await withRedisBroker(.init(url: redis.url), sink: RecordingSink()) { broker in
            _ = try await redis.command(["SET", RedisKeys.nodeReports, "x"]).throwingError()
            let real = Self.report("real")
            #expect(try await broker.exchangeReport(real, ttl: .seconds(5), limit: 64, accept: Self.acceptAll) == [real])
            #expect(try await redis.command(["TYPE", RedisKeys.nodeReports]) == .simpleString("hash"))
        }
    }

    @Test func freshnessRefusesReportsFromTheFarFutureOrPast() {
        #expect(RedisBroker.freshness(of: 10_000, now: 10_000, ttlMilliseconds: 5000) == .fresh)
        #expect(RedisBroker.freshness(of: 14_000, now: 10_000, ttlMilliseconds: 5000) == .fresh)
        #expect(RedisBroker.freshness(of: 16_000, now: 10_000, ttlMilliseconds: 5000) == .future)
        #expect(RedisBroker.freshness(of: 4000, now: 10_000, ttlMilliseconds: 5000) == .stale)
        #expect(RedisBroker.freshness(of: .max, now: -10, ttlMilliseconds: 5000) == .future)
        #expect(RedisBroker.freshness(of: .min, now: 10, ttlMilliseconds: 5000) == .stale)
        #expect(RedisBroker.parseReport(node: "a", value: .bulkString(Array("12\n{}".utf8))) == NodeReport(node: "a", reportedAt: 12, body: Array("{}".utf8)))
        #expect(RedisBroker.parseReport(node: "a\u{200B}", value: .bulkString(Array("12\n{}".utf8))) == nil)
        #expect(RedisBroker.parseReport(node: "a", value: .bulkString(Array("x\n{}".utf8))) == nil)
        #expect(RedisBroker.parseReport(node: "a", value: .integer(1)) == nil)
    }
}

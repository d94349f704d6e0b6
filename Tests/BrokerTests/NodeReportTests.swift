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

    /// Field names of any bytes (written by something else: Redis names are bytes): the reading script deletes every
    /// name that is not UTF-8, exactly as Swift decides it (a node reads names as strings, so it could never name
    /// such a field itself); the rest are kept or deleted by the node's rule. Byte strings built from fragments that
    /// sit on UTF-8's edges (overlong forms, surrogates, past U+10FFFF, cut sequences) and random bytes.
    @Test(.enabled(if: RedisServerProcess.available))
    func fieldNamesThatAreNotUTF8AreDeletedByTheReadingScript() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let fragments: [[UInt8]] = [
            Array("node".utf8), [0x41], [0x7F], [0x80], [0xBF], [0xC0, 0x80], [0xC1, 0xBF], [0xC2, 0x80], [0xDF, 0xBF],
            [0xE0, 0x80, 0x80], [0xE0, 0x9F, 0xBF], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xED, 0xA0, 0x80],
            [0xEF, 0xBF, 0xBF], [0xF0, 0x8F, 0xBF, 0xBF], [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF],
            [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xFF], [0xE3, 0x81], [0xF0, 0x9F, 0x98], Array("ノード".utf8),
        ]
        var rng = SystemRandomNumberGenerator()
        try await withRedisBroker(.init(url: redis.url), sink: RecordingSink()) { broker in
            let key = RedisKeys.nodeReports
            for round in 0..<4 {
                let now = TimeSource.system.now()
                var planted = Set<[UInt8]>()
                while planted.count < 200 {
                    var name = Array("r\(round)-".utf8)
                    for _ in 0..<Int.random(in: 1...4, using: &rng) {
                        if Int.random(in: 0...3, using: &rng) == 0 {
                            name += (0..<Int.random(in: 1...3, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                        } else {
                            name += fragments.randomElement(using: &rng)!
                        }
                    }
                    planted.insert(name)
                }
                for name in planted {
                    let hex = name.map { String(format: "%02x", $0) }.joined()
                    _ = try await redis.command([
                        "EVAL", "redis.call('HSET', KEYS[1], (ARGV[1]:gsub('..', function(h) return string.char(tonumber(h, 16)) end)), ARGV[2])",
                        "1", key, hex, "\(now)\n{}",
                    ]).throwingError()
                }
                // A TTL far longer than the planting takes on a loaded machine: nothing planted is stale when read.
                _ = try await broker.exchangeReport(Self.report("real"), ttl: .seconds(600), limit: 64, accept: Self.acceptAll)
                guard case .array(let fields) = try await redis.command(["HKEYS", key]) else {
                    Issue.record("HKEYS answered no array")
                    return
                }
                let left = Set(fields.compactMap { field -> [UInt8]? in if case .bulkString(let bytes) = field { bytes } else { nil } })
                for name in planted {
                    let text = String(validating: name, as: UTF8.self)
                    let kept = text.map(NodeReport.isAcceptableNodeName) ?? false
                    #expect(left.contains(name) == kept, "\(name): \(text.map { _ in "UTF-8, acceptable: \(kept)" } ?? "not UTF-8")")
                }
                _ = try await redis.command(["DEL", key]).throwingError()
            }
        }
    }

    /// With more nodes than the limit, all fresher than this one, the node's own report still comes back (first).
    @Test(.enabled(if: RedisServerProcess.available))
    func theNodesOwnReportIsKeptWhenOthersReachTheLimit() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        try await withRedisBroker(.init(url: redis.url), sink: RecordingSink()) { broker in
            let now = TimeSource.system.now()
            for index in 0..<70 {
                _ = try await redis.command(["HSET", RedisKeys.nodeReports, "other-\(index)", "\(now + 1000)\n{}"]).throwingError()
            }
            let mine = Self.report("mine", at: now - 1000)
            // A TTL far longer than the 70 writes take on a loaded machine: this node's report is still fresh.
            let seen = try await broker.exchangeReport(mine, ttl: .seconds(600), limit: 64, accept: Self.acceptAll)
            #expect(seen.count == 64)
            #expect(seen.first == mine)
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

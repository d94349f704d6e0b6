import Broker
import Foundation
import Testing

/// The operators' page's node reports: each node's report comes back to every node while it is fresh, bounded.
@Suite(.timeLimit(.minutes(1)))
struct NodeReportTests {
    static func report(_ node: String, at reportedAt: Int64 = TimeSource.system.now()) -> NodeReport {
        NodeReport(node: node, reportedAt: reportedAt, body: Array(#"{"node":"\#(node)"}"#.utf8))
    }

    @Test(arguments: BrokerUnderTest.available)
    func everyFreshReportComesBackAndAStaleOneIsDropped(_ kind: BrokerUnderTest) async throws {
        try await withBroker(kind) { fixture in
            let broker = fixture.broker
            // Unique names: the hash is shared by everything that uses this Redis.
            let suffix = UUID().uuidString.prefix(8)
            let a = Self.report("a-\(suffix)")
            let mine = try await broker.exchangeReport(a, ttl: .seconds(5), limit: 64)
            #expect(mine.contains(a))
            guard kind != .memory else {
                // One node alone knows only its own report.
                #expect(mine == [a])
                return
            }
            let stale = Self.report("stale-\(suffix)", at: TimeSource.system.now() - 60_000)
            let afterStale = try await broker.exchangeReport(stale, ttl: .seconds(5), limit: 64)
            #expect(!afterStale.contains { $0.node == stale.node }, "a report past its TTL is not returned")
            let b = Self.report("b-\(suffix)")
            let both = try await broker.exchangeReport(b, ttl: .seconds(5), limit: 64)
            #expect(both.contains(a) && both.contains(b))
            #expect(!both.contains { $0.node == stale.node })
            // Freshest first, and never more than the limit.
            let one = try await broker.exchangeReport(Self.report("c-\(suffix)", at: TimeSource.system.now() + 1000), ttl: .seconds(5), limit: 1)
            #expect(one.map(\.node) == ["c-\(suffix)"])
        }
    }
}

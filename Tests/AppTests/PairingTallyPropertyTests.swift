import Broker
import PropertyBased
import Testing

@testable import App

/// The pairing tally keeps its counts as pairings change and finds expired ones through heaps, so that a summary never
/// scans the table under the lock the event loops share. Checked against a model that does scan: the same operations
/// in any order give the same summaries, and the heaps' marks stay bounded by the table.
@Suite struct PairingTallyPropertyTests {
    /// What the tally must answer, from its documented rules, by scanning everything.
    struct Model {
        var entries: [SessionID: PairingTally.Entry] = [:]
        let capacity: Int

        mutating func attached(_ id: SessionID, status: SessionStatus, createdAt: Int64, expiresAt: Int64) {
            if var entry = entries[id] {
                entry.status = max(entry.status, status)
                entry.expiresAt = expiresAt
                entries[id] = entry
            } else if entries.count < capacity {
                entries[id] = PairingTally.Entry(status: status, createdAt: createdAt, expiresAt: expiresAt)
            }
        }

        mutating func advanced(_ id: SessionID, to status: SessionStatus) {
            if let entry = entries[id], status > entry.status { entries[id]?.status = status }
        }

        mutating func left(_ id: SessionID) {
            if let entry = entries[id], !entry.status.isFinal { entries[id] = nil }
        }

        mutating func summary(now: Int64) -> PairingTally.Summary {
            entries = entries.filter { $0.value.expiresAt > now }
            var summary = PairingTally.Summary()
            for entry in entries.values { summary.byStatus[entry.status, default: 0] += 1 }
            summary.oldestWaitingCreatedAt = Array(
                entries.values.filter { $0.status == .waiting }.map(\.createdAt).sorted().prefix(PairingTally.oldestWaitingShown))
            return summary
        }
    }

    enum Operation: Sendable, CustomStringConvertible {
        case attach(Int, SessionStatus, Int64)
        case advance(Int, SessionStatus)
        case leave(Int)
        case summary(Int64)

        var description: String {
            switch self {
            case .attach(let n, let status, let ttl): "attach(\(n), \(status), ttl \(ttl))"
            case .advance(let n, let status): "advance(\(n), \(status))"
            case .leave(let n): "leave(\(n))"
            case .summary(let step): "summary(+\(step))"
            }
        }
    }

    static let statuses = Gen<SessionStatus?>.element(of: SessionStatus.allCases).map { $0 ?? .waiting }
    static let operations = Gen<Operation>.oneOf(
        zip(Gen.int(in: 0...23), statuses, Gen.int64(in: 1...40)).map { Operation.attach($0, $1, $2) },
        zip(Gen.int(in: 0...23), statuses).map { Operation.advance($0, $1) },
        Gen.int(in: 0...23).map { Operation.leave($0) },
        Gen.int64(in: 0...15).map { Operation.summary($0) }
    ).array(of: 0...120)

    @Test func summariesEqualAModelThatScansEverything() async throws {
        let ids = try (0..<24).map { try #require(SessionID("sess_tally_\($0)_aaaaaaaa")) }
        await propertyCheck(count: 1000, input: Self.operations, Gen.int(in: 1...30)) { (operations: [Operation], capacity: Int) in
            var tally = PairingTally(capacity: capacity)
            var model = Model(capacity: capacity)
            var now: Int64 = 1000
            for operation in operations {
                switch operation {
                case .attach(let n, let status, let ttl):
                    // A session's creation time is its own (one per ID); its expiry may move when it attaches again.
                    let createdAt = Int64(n) * 7
                    tally.attached(ids[n], status: status, createdAt: createdAt, expiresAt: now + ttl)
                    model.attached(ids[n], status: status, createdAt: createdAt, expiresAt: now + ttl)
                case .advance(let n, let status):
                    tally.advanced(ids[n], to: status)
                    model.advanced(ids[n], to: status)
                case .leave(let n):
                    tally.left(ids[n])
                    model.left(ids[n])
                case .summary(let step):
                    now += step
                    #expect(tally.summary(now: now) == model.summary(now: now), "\(operations) capacity \(capacity)")
                }
            }
            now += 50
            #expect(tally.summary(now: now) == model.summary(now: now))
            #expect(tally.entries.isEmpty)
        }
    }

    /// A pairing table at its capacity whose pairings churn (attach, advance, expire) for many rounds keeps its heaps
    /// within twice the table plus the slack, however many marks went stale.
    @Test func staleMarksStayBounded() throws {
        var tally = PairingTally(capacity: 2000)
        var now: Int64 = 0
        for round in 0..<50 {
            for n in 0..<2000 {
                let id = try #require(SessionID("sess_churn_\(round)_\(n)_aaaa"))
                tally.attached(id, status: .waiting, createdAt: now, expiresAt: now + 3)
                tally.attached(id, status: .connected, createdAt: now, expiresAt: now + 5)
                if n.isMultiple(of: 3) { tally.advanced(id, to: .completed) } else { tally.left(id) }
            }
            now += 1
            _ = tally.summary(now: now)
            #expect(tally.markCount <= 2 * (2 * tally.entries.count + 1024) + 4000)
        }
    }
}

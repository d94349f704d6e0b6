import Broker
import Synchronization

/// The pairings this node follows, by state, for the operators' page: a session enters when its PC's stream attaches
/// here, moves forward with the events delivered to it here, and leaves at its expiry, or earlier when its last PC
/// stream here closes before it is over (its PC may be reconnecting to another node, which then follows it).
///
/// Counting what each node follows, rather than scanning the store, keeps the cost at one lookup per delivered
/// event. Accuracy: a pairing is counted by the node(s) holding its PC's stream; a completed or cancelled one stays
/// counted until its expiry; a pairing whose PC left for good before the end drops out instead of being counted as
/// cancelled. Identifiers stay in this table and are never reported.
struct PairingTally: Sendable {
    struct Entry: Sendable {
        var status: SessionStatus
        var createdAt: Int64
        var expiresAt: Int64
    }

    /// Counts by state and the creation times of the oldest waiting pairings (no identifiers).
    struct Summary: Sendable, Equatable {
        var byStatus: [SessionStatus: Int] = [:]
        /// Oldest first, at most ``PairingTally/oldestWaitingShown``.
        var oldestWaitingCreatedAt: [Int64] = []
    }

    static let oldestWaitingShown = 5

    private(set) var entries: [SessionID: Entry] = [:]
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// The PC's stream of a session attached here.
    mutating func attached(_ id: SessionID, status: SessionStatus, createdAt: Int64, expiresAt: Int64) {
        if var entry = entries[id] {
            entry.status = max(entry.status, status)
            entry.expiresAt = expiresAt
            entries[id] = entry
        } else if entries.count < capacity {
            // Past the capacity new pairings go uncounted rather than grow the table.
            entries[id] = Entry(status: status, createdAt: createdAt, expiresAt: expiresAt)
        }
    }

    /// An event of a followed session was delivered here.
    mutating func advanced(_ id: SessionID, to status: SessionStatus) {
        guard var entry = entries[id], status > entry.status else { return }
        entry.status = status
        entries[id] = entry
    }

    /// The last PC stream of the session here closed: it stays only when it is over (counted until its expiry).
    mutating func left(_ id: SessionID) {
        guard let entry = entries[id], !entry.status.isFinal else { return }
        entries[id] = nil
    }

    /// Forgets expired pairings, then counts the rest.
    mutating func summary(now: Int64) -> Summary {
        entries = entries.filter { $0.value.expiresAt > now }
        var summary = Summary()
        var waiting: [Int64] = []
        for entry in entries.values {
            summary.byStatus[entry.status, default: 0] += 1
            if entry.status == .waiting { waiting.append(entry.createdAt) }
        }
        summary.oldestWaitingCreatedAt = Array(waiting.sorted().prefix(Self.oldestWaitingShown))
        return summary
    }
}

/// What the operators' page needs from this node's hot paths, cheaply: the pairing tally, events published, and
/// broker round trips in fixed latency buckets (cumulative; the reporter takes differences over a window).
final class OpsCounters: Sendable {
    /// Upper bounds of the latency buckets, in microseconds; the last bucket is everything slower.
    static let bucketBounds: [Int64] = [50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000]

    struct Sample: Sendable, Equatable {
        var eventsPublished = 0
        var brokerBuckets = [Int](repeating: 0, count: OpsCounters.bucketBounds.count + 1)
    }

    private let tally: Mutex<PairingTally>
    private let sample = Mutex(Sample())

    init(capacity: Int = 100_000) {
        tally = Mutex(PairingTally(capacity: capacity))
    }

    func pcAttached(_ id: SessionID, status: SessionStatus, createdAt: Int64, expiresAt: Int64) {
        tally.withLock { $0.attached(id, status: status, createdAt: createdAt, expiresAt: expiresAt) }
    }

    func delivered(_ event: SessionEvent, to id: SessionID) {
        guard let status = event.resultingStatus else { return }
        tally.withLock { $0.advanced(id, to: status) }
    }

    func pcLeft(_ id: SessionID) {
        tally.withLock { $0.left(id) }
    }

    func pairings(now: Int64) -> PairingTally.Summary {
        tally.withLock { $0.summary(now: now) }
    }

    func eventPublished() {
        sample.withLock { $0.eventsPublished += 1 }
    }

    func brokerCall(nanoseconds: Int64) {
        let microseconds = nanoseconds / 1000
        let bucket = Self.bucketBounds.firstIndex { microseconds <= $0 } ?? Self.bucketBounds.count
        sample.withLock { $0.brokerBuckets[bucket] += 1 }
    }

    /// The cumulative counts so far.
    var current: Sample { sample.withLock { $0 } }

    /// The 99th percentile of the broker round trips between two samples, as the upper bound of its bucket in
    /// milliseconds (nil without calls; the slowest bucket reports its lower bound).
    static func brokerP99Milliseconds(from earlier: Sample, to later: Sample) -> Double? {
        let counts = zip(later.brokerBuckets, earlier.brokerBuckets).map { max(0, $0 - $1) }
        let total = counts.reduce(0, +)
        guard total > 0 else { return nil }
        // The smallest bucket holding the 99th percentile: ceil(0.99 × total) calls at or below it.
        let rank = (total * 99 + 99) / 100
        var seen = 0
        for (index, count) in counts.enumerated() {
            seen += count
            if seen >= rank { return Double(bucketBounds[min(index, bucketBounds.count - 1)]) / 1000 }
        }
        return Double(bucketBounds[bucketBounds.count - 1]) / 1000
    }
}

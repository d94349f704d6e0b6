import Broker
import HeapModule
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

    /// A pairing's place in one of the time-ordered heaps. Heaps are not updated when a pairing changes (they cannot
    /// find an element); a mark that no longer matches its pairing is dropped when it comes to the top.
    struct Mark: Comparable, Sendable {
        var time: Int64
        var id: SessionID

        static func < (lhs: Mark, rhs: Mark) -> Bool { lhs.time < rhs.time }
    }

    static let oldestWaitingShown = 5

    private(set) var entries: [SessionID: Entry] = [:]
    let capacity: Int
    /// The entries' counts by state, kept as they change, so a summary reads them instead of every entry: the table
    /// holds up to `capacity` pairings, and the hot paths share its lock with the summary.
    private var counts: [SessionStatus: Int] = [:]
    /// Expiry times, soonest first (a pairing attached again may have a later one: its older mark is skipped).
    private var expiries = Heap<Mark>()
    /// Creation times of the pairings that entered waiting, oldest first (a mark whose pairing moved on is dropped).
    private var waitingSince = Heap<Mark>()

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// The PC's stream of a session attached here.
    mutating func attached(_ id: SessionID, status: SessionStatus, createdAt: Int64, expiresAt: Int64) {
        if var entry = entries[id] {
            let before = entry.status
            entry.status = max(entry.status, status)
            if entry.expiresAt != expiresAt { expiries.insert(Mark(time: expiresAt, id: id)) }
            entry.expiresAt = expiresAt
            entries[id] = entry
            moved(from: before, to: entry.status)
        } else if entries.count < capacity {
            // Past the capacity new pairings go uncounted rather than grow the table.
            entries[id] = Entry(status: status, createdAt: createdAt, expiresAt: expiresAt)
            counts[status, default: 0] += 1
            expiries.insert(Mark(time: expiresAt, id: id))
            if status == .waiting { waitingSince.insert(Mark(time: createdAt, id: id)) }
        }
    }

    /// An event of a followed session was delivered here.
    mutating func advanced(_ id: SessionID, to status: SessionStatus) {
        guard var entry = entries[id], status > entry.status else { return }
        let before = entry.status
        entry.status = status
        entries[id] = entry
        moved(from: before, to: status)
    }

    /// The last PC stream of the session here closed: it stays only when it is over (counted until its expiry).
    mutating func left(_ id: SessionID) {
        guard let entry = entries[id], !entry.status.isFinal else { return }
        entries[id] = nil
        counts[entry.status, default: 0] -= 1
    }

    private mutating func moved(from before: SessionStatus, to after: SessionStatus) {
        guard before != after else { return }
        counts[before, default: 0] -= 1
        counts[after, default: 0] += 1
    }

    /// Forgets expired pairings, then counts the rest: only what expired and the oldest waiting marks are looked at.
    mutating func summary(now: Int64) -> Summary {
        while let first = expiries.min, first.time <= now {
            expiries.removeMin()
            // Gone already (left), or attached again with a later expiry: that has its own mark.
            guard let entry = entries[first.id], entry.expiresAt <= now else { continue }
            entries[first.id] = nil
            counts[entry.status, default: 0] -= 1
        }
        var oldest: [Mark] = []
        while oldest.count < Self.oldestWaitingShown, let first = waitingSince.popMin() {
            // Dropped for good: the pairing left, moved on, or this is a second mark of one already taken.
            guard let entry = entries[first.id], entry.status == .waiting, !oldest.contains(where: { $0.id == first.id }) else { continue }
            oldest.append(first)
        }
        for mark in oldest { waitingSince.insert(mark) }
        compactMarks()
        var summary = Summary(byStatus: counts.filter { $0.value > 0 })
        summary.oldestWaitingCreatedAt = oldest.map(\.time)
        return summary
    }

    /// Rebuilds a heap once most of its marks are stale, so neither outgrows the table by more than a bounded slack;
    /// the rebuild's cost is paid for by the inserts that made the stale marks.
    private mutating func compactMarks() {
        let slack = 1024
        if expiries.count > 2 * entries.count + slack {
            expiries = Heap(entries.map { Mark(time: $0.value.expiresAt, id: $0.key) })
        }
        let waiting = counts[.waiting] ?? 0
        if waitingSince.count > 2 * waiting + slack {
            waitingSince = Heap(entries.compactMap { $0.value.status == .waiting ? Mark(time: $0.value.createdAt, id: $0.key) : nil })
        }
    }

    /// How many marks the heaps hold (for tests: they stay bounded by the table).
    var markCount: Int { expiries.count + waitingSince.count }
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

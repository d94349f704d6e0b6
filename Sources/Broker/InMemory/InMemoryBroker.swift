import Logging
import ServiceLifecycle
import Synchronization

/// The broker for a single node: sessions, logs and subscriptions in this process's memory.
///
/// Sessions are split over 64 shards by id, each behind its own lock; no call awaits while holding one. Expired
/// sessions are invisible at once (every read checks the expiry) and their memory is reclaimed by one sweep in
/// `run()` every `sweepInterval`, not by a timer per session. Each shard's sweep takes sessions from a queue ordered
/// by expiry, so it touches only what has expired: a lock that publishes need is never held for a scan of every
/// session.
public final class InMemoryBroker: Broker {
    private struct Entry {
        var record: SessionRecord
        var log: [StoredEvent] = []
        /// Until when the PC counts as present (see ``Broker/holdPresence(of:side:)``).
        var presentUntil: Int64
        /// Until when the phone's channel counts as present; 0 before it first attached.
        var phonePresentUntil: Int64 = 0

        func presence(_ side: PresenceSide) -> Int64 { side == .pc ? presentUntil : phonePresentUntil }

        mutating func setPresence(_ side: PresenceSide, until: Int64) {
            if side == .pc { presentUntil = until } else { phonePresentUntil = until }
        }

        /// Numbers and stores `event` (its status and notice effects already decided by the caller).
        mutating func append(_ event: SessionEvent) -> StoredEvent {
            record.lastEventID += 1
            let stored = StoredEvent(id: record.lastEventID, event: event, publishedAt: TimeSource.wallMicroseconds())
            log.append(stored)
            return stored
        }
    }

    private struct State {
        var sessions: [SessionID: Entry] = [:]
        var subscriptions: [SessionID: Int] = [:]
        var expiries = ExpiryQueue()
        /// IDs of ended sessions, with the time until which they may not be opened again (see
        /// ``Broker/openSession(_:ttl:readerKey:)``). Only the ID is kept: the session's data is gone.
        var tombstones: [SessionID: Int64] = [:]
        var tombstoneExpiries = ExpiryQueue()

        /// Runs `body` on the live entry of `id` in place (nil when there is none, or it has expired by `now`): a
        /// copy taken out and written back would copy its log and its record's keys on every change.
        mutating func withLiveEntry<R>(_ id: SessionID, now: Int64, _ body: (inout Entry) -> R) -> R? {
            guard let index = sessions.index(forKey: id), sessions.values[index].record.expiresAt > now else { return nil }
            return body(&sessions.values[index])
        }
    }

    /// The sessions split by id over independent tables, each with its own lock: a table that grows rehashes only
    /// its share (one table of 100,000 sessions stalls every publish for tens of milliseconds when it doubles), and
    /// event loops rarely wait for each other.
    private final class Shard: Sendable {
        let state = Mutex(State())
    }

    private static let shardCount = 64
    private let shards: [Shard] = (0..<InMemoryBroker.shardCount).map { _ in Shard() }

    private func shard(_ id: SessionID) -> Shard {
        shards[Int(UInt(bitPattern: id.hashValue) % UInt(Self.shardCount))]
    }
    private let sink: any SessionEventSink
    private let time: TimeSource
    private let sweepInterval: Duration
    private let presenceGrace: Int64
    private let presenceHold: Int64
    private let logger: Logger

    /// - Parameters:
    ///   - sink: receives the events of subscribed sessions.
    ///   - sweepInterval: how often expired sessions are removed from memory.
    ///   - presenceGrace: how long a PC counts as present after its stream left.
    ///   - presenceHold: how long a held stream keeps its PC present without another renewal.
    public init(
        sink: any SessionEventSink, time: TimeSource = .system, sweepInterval: Duration = .seconds(1),
        presenceGrace: Duration = .seconds(7), presenceHold: Duration = .seconds(60), logger: Logger
    ) {
        self.sink = sink
        self.time = time
        self.sweepInterval = sweepInterval
        self.presenceGrace = presenceGrace.milliseconds
        self.presenceHold = presenceHold.milliseconds
        self.logger = logger
    }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while true {
                    try await Task.sleep(for: self.sweepInterval)
                    self.removeExpiredSessions()
                }
            }
        } catch is CancellationError {
            return
        }
    }

    public func openSession(_ id: SessionID, ttl: Duration, readerKey: String?, heldByStream: Bool) async throws -> SessionRecord? {
        let now = time.now()
        return shard(id).state.withLock { state in
            if let entry = state.sessions[id] {
                // Ended but not yet swept: its tombstone starts at its expiry.
                if entry.record.expiresAt > now { return entry.record }
                if now < Self.tombstoneEnd(of: entry.record) { return nil }
            }
            if let until = state.tombstones[id] {
                if now < until { return nil }
                state.tombstones[id] = nil
            }
            let record = SessionRecord(id: id, createdAt: now, expiresAt: now + ttl.milliseconds, readerKey: readerKey)
            state.sessions[id] = Entry(record: record, presentUntil: now + (heldByStream ? presenceHold : presenceGrace))
            state.expiries.insert(id, expiresAt: record.expiresAt)
            return record
        }
    }

    /// Until when an ended session's ID may not be opened again: its expiry plus its own TTL.
    private static func tombstoneEnd(of record: SessionRecord) -> Int64 {
        let ttl = max(0, record.expiresAt - record.createdAt)
        return record.expiresAt + ttl
    }

    public func session(_ id: SessionID) async throws -> SessionRecord? {
        let now = time.now()
        return shard(id).state.withLock { state in
            guard let entry = state.sessions[id], entry.record.expiresAt > now else { return nil }
            return entry.record
        }
    }

    public func publish(_ event: SessionEvent, to id: SessionID, from phone: PhoneClaim?, idempotencyKey: String?) async throws -> PublishOutcome {
        let now = time.now()
        let (outcome, delivery) = shard(id).state.withLock { state -> (PublishOutcome, StoredEvent?) in
            let subscribed = state.subscriptions[id, default: 0] > 0
            return state.withLiveEntry(id, now: now) { entry -> (PublishOutcome, StoredEvent?) in
                if entry.record.status == .completed { return (.alreadyCompleted(entry.record), nil) }
                if entry.record.status == .cancelled { return (.cancelled(entry.record), nil) }
                var claims = false
                if event.isPhoneStep, let phone {
                    if let holder = entry.record.phoneKey {
                        guard holder == phone.presentedKey else { return (.claimedByAnother(entry.record), nil) }
                    } else {
                        guard phone.mayClaim else { return (.notClaimed(entry.record), nil) }
                        claims = true
                    }
                }
                // The phone's steps need the PC: past its presence, the session is cancelled instead.
                let pcLeft = event.isPhoneStep && entry.presentUntil <= now
                var event = pcLeft ? .cancelled(.pcLeft) : event
                if claims && !pcLeft {
                    entry.record.phoneKey = phone?.newKey
                    entry.record.pairingCode = phone?.pairingCode
                }
                switch event {
                case .phoneLeft, .phoneReturned:
                    // Not published by callers; see reviewPresence and holdPresence.
                    return (.unchanged(entry.record.summary), nil)
                case .connected:
                    event = .connected(pairingCode: entry.record.pairingCode)
                default: break
                }
                guard let target = event.resultingStatus, target > entry.record.status else {
                    return (.unchanged(entry.record.summary), nil)
                }
                entry.record.status = target
                if case .complete(let submission) = event { entry.record.submission = submission }
                if case .cancelled(let reason) = event { entry.record.cancelReason = reason }
                if !pcLeft, let idempotencyKey { entry.record.idempotencyKeys[target] = idempotencyKey }
                let stored = entry.append(event)
                let outcome: PublishOutcome = pcLeft ? .cancelled(entry.record) : .published(stored, entry.record.summary)
                return (outcome, subscribed ? stored : nil)
            } ?? (.sessionNotFound, nil)
        }
        if let delivery { sink.deliver(delivery, to: id) }
        return outcome
    }

    public func reviewPresence(of id: SessionID, side: PresenceSide) async throws -> PublishOutcome {
        let now = time.now()
        let (outcome, delivery) = shard(id).state.withLock { state -> (PublishOutcome, StoredEvent?) in
            let subscribed = state.subscriptions[id, default: 0] > 0
            return state.withLiveEntry(id, now: now) { entry -> (PublishOutcome, StoredEvent?) in
                guard let stored = Self.review(&entry, side: side, now: now) else { return (.unchanged(entry.record.summary), nil) }
                return (.published(stored, entry.record.summary), subscribed ? stored : nil)
            } ?? (.sessionNotFound, nil)
        }
        if let delivery { sink.deliver(delivery, to: id) }
        return outcome
    }

    public func reviewPresence(of ids: [SessionID], side: PresenceSide) async throws -> [StoredEvent] {
        let now = time.now()
        var published: [StoredEvent] = []
        for id in ids {
            let (stored, delivery) = shard(id).state.withLock { state -> (StoredEvent?, StoredEvent?) in
                let subscribed = state.subscriptions[id, default: 0] > 0
                return state.withLiveEntry(id, now: now) { entry -> (StoredEvent?, StoredEvent?) in
                    let stored = Self.review(&entry, side: side, now: now)
                    return (stored, subscribed ? stored : nil)
                } ?? (nil, nil)
            }
            if let delivery { sink.deliver(delivery, to: id) }
            if let stored { published.append(stored) }
        }
        return published
    }

    /// What a review of `side`'s presence publishes in `entry` by `now` (see ``Broker/reviewPresence(of:side:)``),
    /// appended to its log; nil when it leaves the session as it is.
    private static func review(_ entry: inout Entry, side: PresenceSide, now: Int64) -> StoredEvent? {
        guard !entry.record.status.isFinal, entry.presence(side) <= now else { return nil }
        let event: SessionEvent
        switch side {
        case .pc:
            event = .cancelled(.pcLeft)
            entry.record.status = .cancelled
            entry.record.cancelReason = .pcLeft
        case .phone:
            // Only a phone that had a channel and is not already away.
            guard entry.phonePresentUntil > 0, !entry.record.phoneAway else { return nil }
            event = .phoneLeft
            entry.record.phoneAway = true
        }
        return entry.append(event)
    }

    public func holdPresence(of ids: [SessionID], side: PresenceSide) async throws -> [SessionID] {
        let now = time.now()
        var gone: [SessionID] = []
        for id in ids {
            let (exists, delivery) = shard(id).state.withLock { state -> (Bool, StoredEvent?) in
                let subscribed = state.subscriptions[id, default: 0] > 0
                return state.withLiveEntry(id, now: now) { entry -> (Bool, StoredEvent?) in
                    entry.setPresence(side, until: max(entry.presence(side), now + presenceHold))
                    var stored: StoredEvent?
                    if side == .phone, entry.record.phoneAway, !entry.record.status.isFinal {
                        entry.record.phoneAway = false
                        stored = entry.append(.phoneReturned)
                    }
                    return (true, subscribed ? stored : nil)
                } ?? (false, nil)
            }
            if let delivery { sink.deliver(delivery, to: id) }
            if !exists { gone.append(id) }
        }
        return gone
    }

    public func releasePresence(of id: SessionID, side: PresenceSide) async throws {
        let now = time.now()
        shard(id).state.withLock { state in
            guard var entry = state.sessions[id], entry.presence(side) > now else { return }
            entry.setPresence(side, until: now + presenceGrace)
            state.sessions[id] = entry
        }
    }

    public func events(of id: SessionID, after: EventID) async throws -> [StoredEvent] {
        let now = time.now()
        return shard(id).state.withLock { state in
            guard let entry = state.sessions[id], entry.record.expiresAt > now else { return [] }
            return entry.log.filter { $0.id > after }
        }
    }

    public func subscribe(_ id: SessionID) async throws {
        shard(id).state.withLock { $0.subscriptions[id, default: 0] += 1 }
    }

    public func unsubscribe(_ id: SessionID) async {
        shard(id).state.withLock { state in
            guard let count = state.subscriptions[id] else { return }
            state.subscriptions[id] = count > 1 ? count - 1 : nil
        }
    }

    public var health: BrokerHealth { .ok }

    /// Sessions held in memory, expired or not (for tests that prove nothing is left behind).
    public var storedSessionCount: Int { shards.reduce(0) { $0 + $1.state.withLock { $0.sessions.count } } }

    /// IDs of ended sessions still refused to `openSession`.
    public var tombstoneCount: Int { shards.reduce(0) { $0 + $1.state.withLock { $0.tombstones.count } } }

    /// Sessions with at least one subscription.
    public var subscribedSessionCount: Int { shards.reduce(0) { $0 + $1.state.withLock { $0.subscriptions.count } } }

    /// Removes every expired session now; `run()` calls this every `sweepInterval`.
    public func removeExpiredSessions() {
        let now = time.now()
        var removed = 0
        // Shard by shard and in batches, so that even a flood of expiries never holds a lock for long.
        for shard in shards {
            while true {
                let (batchRemoved, more) = shard.state.withLock { state -> (Int, Bool) in
                    var removed = 0
                    var budget = 4096
                    while budget > 0, let id = state.expiries.popExpired(now: now) {
                        budget -= 1
                        // A session reopened after it expired has a newer entry (and its own place in the queue).
                        guard let entry = state.sessions[id], entry.record.expiresAt <= now else { continue }
                        state.sessions[id] = nil
                        removed += 1
                        // The data goes now; the ID stays refused for one more TTL.
                        let until = Self.tombstoneEnd(of: entry.record)
                        if until > now {
                            state.tombstones[id] = until
                            state.tombstoneExpiries.insert(id, expiresAt: until)
                        }
                    }
                    while budget > 0, let id = state.tombstoneExpiries.popExpired(now: now) {
                        budget -= 1
                        if let until = state.tombstones[id], until <= now { state.tombstones[id] = nil }
                    }
                    return (removed, budget == 0)
                }
                removed += batchRemoved
                if !more { break }
            }
        }
        if removed > 0 { logger.trace("removed expired sessions", metadata: ["count": "\(removed)"]) }
    }
}

/// Session ids by expiry time, soonest first (a binary min-heap): the sweep pops what has expired and never looks at
/// the rest.
struct ExpiryQueue {
    private var heap: [(expiresAt: Int64, id: SessionID)] = []

    var count: Int { heap.count }

    mutating func insert(_ id: SessionID, expiresAt: Int64) {
        heap.append((expiresAt, id))
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].expiresAt < heap[parent].expiresAt else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    /// The id with the earliest expiry if that expiry is at or before `now`, removed from the queue.
    mutating func popExpired(now: Int64) -> SessionID? {
        guard let first = heap.first, first.expiresAt <= now else { return nil }
        heap.swapAt(0, heap.count - 1)
        heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < heap.count, heap[left].expiresAt < heap[smallest].expiresAt { smallest = left }
            if right < heap.count, heap[right].expiresAt < heap[smallest].expiresAt { smallest = right }
            guard smallest != parent else { break }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
        return first.id
    }
}

import Logging
import ServiceLifecycle
import Synchronization

/// The broker for a single node: sessions, logs and subscriptions in this process's memory.
///
/// State sits behind one lock and no call awaits while holding it. Expired sessions are invisible at once (every read
/// checks the expiry) and their memory is reclaimed by one sweep in `run()` every `sweepInterval`, not by a timer
/// per session.
public final class InMemoryBroker: Broker {
    private struct Entry {
        var record: SessionRecord
        var log: [StoredEvent] = []
    }

    private struct State {
        var sessions: [SessionID: Entry] = [:]
        var subscriptions: [SessionID: Int] = [:]
    }

    private let state = Mutex(State())
    private let sink: any SessionEventSink
    private let time: TimeSource
    private let sweepInterval: Duration
    private let logger: Logger

    /// - Parameters:
    ///   - sink: receives the events of subscribed sessions.
    ///   - sweepInterval: how often expired sessions are removed from memory.
    public init(sink: any SessionEventSink, time: TimeSource = .system, sweepInterval: Duration = .seconds(1), logger: Logger) {
        self.sink = sink
        self.time = time
        self.sweepInterval = sweepInterval
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

    public func openSession(_ id: SessionID, ttl: Duration, readerKey: String?) async throws -> SessionRecord {
        let now = time.now()
        return state.withLock { state in
            if let entry = state.sessions[id], entry.record.expiresAt > now {
                return entry.record
            }
            let record = SessionRecord(id: id, createdAt: now, expiresAt: now + ttl.milliseconds, readerKey: readerKey)
            state.sessions[id] = Entry(record: record)
            return record
        }
    }

    public func session(_ id: SessionID) async throws -> SessionRecord? {
        let now = time.now()
        return state.withLock { state in
            guard let entry = state.sessions[id], entry.record.expiresAt > now else { return nil }
            return entry.record
        }
    }

    public func publish(_ event: SessionEvent, to id: SessionID) async throws -> PublishOutcome {
        let now = time.now()
        let (outcome, subscribed) = state.withLock { state -> (PublishOutcome, Bool) in
            guard var entry = state.sessions[id], entry.record.expiresAt > now else { return (.sessionNotFound, false) }
            if entry.record.status == .completed { return (.alreadyCompleted(entry.record), false) }
            guard event.resultingStatus > entry.record.status else { return (.unchanged(entry.record), false) }
            entry.record.status = event.resultingStatus
            if case .complete(let submission) = event { entry.record.submission = submission }
            entry.record.lastEventID += 1
            let stored = StoredEvent(id: entry.record.lastEventID, event: event, publishedAt: TimeSource.wallMicroseconds())
            entry.log.append(stored)
            state.sessions[id] = entry
            return (.published(stored, entry.record), state.subscriptions[id, default: 0] > 0)
        }
        if subscribed, case .published(let stored, _) = outcome {
            sink.deliver(stored, to: id)
        }
        return outcome
    }

    public func events(of id: SessionID, after: EventID) async throws -> [StoredEvent] {
        let now = time.now()
        return state.withLock { state in
            guard let entry = state.sessions[id], entry.record.expiresAt > now else { return [] }
            return entry.log.filter { $0.id > after }
        }
    }

    public func subscribe(_ id: SessionID) async throws {
        state.withLock { $0.subscriptions[id, default: 0] += 1 }
    }

    public func unsubscribe(_ id: SessionID) async {
        state.withLock { state in
            guard let count = state.subscriptions[id] else { return }
            state.subscriptions[id] = count > 1 ? count - 1 : nil
        }
    }

    public var health: BrokerHealth { .ok }

    /// Sessions held in memory, expired or not (for tests that prove nothing is left behind).
    public var storedSessionCount: Int { state.withLock { $0.sessions.count } }

    /// Sessions with at least one subscription.
    public var subscribedSessionCount: Int { state.withLock { $0.subscriptions.count } }

    /// Removes every expired session now; `run()` calls this every `sweepInterval`.
    public func removeExpiredSessions() {
        let now = time.now()
        let removed = state.withLock { state in
            let before = state.sessions.count
            state.sessions = state.sessions.filter { $0.value.record.expiresAt > now }
            return before - state.sessions.count
        }
        if removed > 0 { logger.trace("removed expired sessions", metadata: ["count": "\(removed)"]) }
    }
}

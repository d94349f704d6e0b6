import Broker
import HTTP
import NIOCore
import ServiceLifecycle

/// A broker that times every call and counts failures (`tandem_broker_seconds`, `tandem_broker_errors_total`, and
/// refusals to store by kind, `tandem_broker_refusals_total`), then passes it on. The node's service group runs the
/// wrapped broker itself; this wrapper only serves requests.
struct InstrumentedBroker: Broker {
    let base: any Broker
    let metrics: TandemMetrics

    func run() async throws {
        try await base.run()
    }

    @inline(__always)
    private func measure<T: Sendable>(_ operation: BrokerOperation, _ body: () async throws -> T) async throws -> T {
        let started = ContinuousClock.now
        do {
            let result = try await body()
            metrics.brokerCall(operation, nanoseconds: TimeAmount(ContinuousClock.now - started).nanoseconds, failed: false)
            return result
        } catch {
            metrics.brokerCall(operation, nanoseconds: TimeAmount(ContinuousClock.now - started).nanoseconds, failed: true)
            if let refusal = (error as? BrokerError)?.refusal { metrics.brokerRefused(kind: refusal) }
            throw error
        }
    }

    func openSession(_ id: SessionID, ttl: Duration, readerKey: String?, heldByStream: Bool) async throws -> SessionRecord? {
        try await measure(.openSession) { try await base.openSession(id, ttl: ttl, readerKey: readerKey, heldByStream: heldByStream) }
    }

    func holdPresence(of ids: [SessionID], side: PresenceSide) async throws -> [SessionID] {
        try await measure(.holdPresence) { try await base.holdPresence(of: ids, side: side) }
    }

    func releasePresence(of id: SessionID, side: PresenceSide) async throws {
        try await measure(.releasePresence) { try await base.releasePresence(of: id, side: side) }
    }

    func reviewPresence(of id: SessionID, side: PresenceSide) async throws -> PublishOutcome {
        let outcome = try await measure(.reviewPresence) { try await base.reviewPresence(of: id, side: side) }
        if case .published(let stored, _) = outcome { metrics.published(stored.event) }
        return outcome
    }

    func reviewPresence(of ids: [SessionID], side: PresenceSide) async throws -> [StoredEvent] {
        let published = try await measure(.reviewPresenceRound) { try await base.reviewPresence(of: ids, side: side) }
        for stored in published { metrics.published(stored.event) }
        return published
    }

    func session(_ id: SessionID) async throws -> SessionRecord? {
        try await measure(.session) { try await base.session(id) }
    }

    func publish(_ event: SessionEvent, to id: SessionID, from phone: PhoneClaim?, idempotencyKey: String?) async throws -> PublishOutcome {
        let outcome = try await measure(.publish) { try await base.publish(event, to: id, from: phone, idempotencyKey: idempotencyKey) }
        if case .published = outcome { metrics.published(event) }
        return outcome
    }

    func events(of id: SessionID, after: EventID) async throws -> [StoredEvent] {
        try await measure(.events) { try await base.events(of: id, after: after) }
    }

    func subscribe(_ id: SessionID) async throws {
        try await measure(.subscribe) { try await base.subscribe(id) }
    }

    func unsubscribe(_ id: SessionID) async {
        let started = ContinuousClock.now
        await base.unsubscribe(id)
        metrics.brokerCall(.unsubscribe, nanoseconds: TimeAmount(ContinuousClock.now - started).nanoseconds, failed: false)
    }

    /// Not timed: the broker round trips the operators' page reports are the sessions' own.
    func exchangeReport(_ report: NodeReport, ttl: Duration, limit: Int, accept: (NodeReport) -> Bool) async throws -> [NodeReport] {
        try await base.exchangeReport(report, ttl: ttl, limit: limit, accept: accept)
    }

    var health: BrokerHealth {
        get async { await base.health }
    }
}

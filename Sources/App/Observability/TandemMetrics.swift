import Broker
import CoreMetrics
import Prometheus
import Synchronization

/// This node's metrics, kept in its own Prometheus registry (no global bootstrap, so several nodes can live in one
/// test process) and served at `GET /metrics` in the Prometheus text format. Dimensions are route templates, event
/// types, operations and status codes, never session IDs, so the number of series stays bounded.
final class TandemMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory
    /// What the operators' page reads (`/ops`), kept beside the Prometheus metrics because the same calls feed it; nil
    /// when the page is off (no `ops.token`), so a node without it keeps no tally and takes no lock for it per event.
    let ops: OpsCounters?

    // Handles are made once: looking a metric up in the registry by name and labels on every event would cost more
    // than the event's own bookkeeping. The label sets are small and known, except refusal statuses (cached).
    private let openStreams: CoreMetrics.Gauge
    private let liveSessions: CoreMetrics.Gauge
    private let sessionsOpened: CoreMetrics.Counter
    /// By ``eventTypeIndex(_:)``: an event is counted without hashing its name.
    private let publishedByType: [CoreMetrics.Counter]
    private let deliveredByType: [CoreMetrics.Counter]
    private let deliveryLatency: CoreMetrics.Timer
    private let slowReadersCut: CoreMetrics.Counter
    private let brokerMessagesRejected: CoreMetrics.Counter
    /// By ``BrokerOperation/rawValue``.
    private let brokerLatency: [CoreMetrics.Timer]
    private let brokerErrors: [CoreMetrics.Counter]
    private let refusals = Mutex<[UInt: CoreMetrics.Counter]>([:])
    private let brokerRefusals = Mutex<[String: CoreMetrics.Counter]>([:])

    static let eventTypes = ["connected", "input-started", "complete", "cancelled", "phone-left", "phone-returned"]

    /// The position of `event`'s name in ``eventTypes``.
    static func eventTypeIndex(_ event: SessionEvent) -> Int {
        switch event {
        case .connected: 0
        case .inputStarted: 1
        case .complete: 2
        case .cancelled: 3
        case .phoneLeft: 4
        case .phoneReturned: 5
        }
    }

    init(opsPage: Bool = true) {
        ops = opsPage ? OpsCounters() : nil
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Latencies here are sub-millisecond when all is well; the default buckets start at 5 ms.
        factory.defaultDurationHistogramBuckets = [
            .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
            .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
        ]
        self.factory = factory
        openStreams = CoreMetrics.Gauge(label: "tandem_open_streams", factory: factory)
        liveSessions = CoreMetrics.Gauge(label: "tandem_live_sessions", factory: factory)
        sessionsOpened = CoreMetrics.Counter(label: "tandem_sessions_opened_total", factory: factory)
        publishedByType = Self.eventTypes.map {
            CoreMetrics.Counter(label: "tandem_events_published_total", dimensions: [("type", $0)], factory: factory)
        }
        deliveredByType = Self.eventTypes.map {
            CoreMetrics.Counter(label: "tandem_events_delivered_total", dimensions: [("type", $0)], factory: factory)
        }
        deliveryLatency = CoreMetrics.Timer(label: "tandem_event_delivery_seconds", factory: factory)
        slowReadersCut = CoreMetrics.Counter(label: "tandem_streams_cut_total", dimensions: [("reason", "slow_reader")], factory: factory)
        brokerMessagesRejected = CoreMetrics.Counter(label: "tandem_broker_messages_rejected_total", factory: factory)
        brokerLatency = BrokerOperation.allCases.map {
            CoreMetrics.Timer(label: "tandem_broker_seconds", dimensions: [("operation", $0.label)], factory: factory)
        }
        brokerErrors = BrokerOperation.allCases.map {
            CoreMetrics.Counter(label: "tandem_broker_errors_total", dimensions: [("operation", $0.label)], factory: factory)
        }
    }

    /// Streams and sessions this node holds right now.
    func streamsChanged(openStreams: Int, sessions: Int) {
        self.openStreams.record(openStreams)
        liveSessions.record(sessions)
    }

    func sessionOpened() {
        sessionsOpened.increment()
    }

    func published(_ event: SessionEvent) {
        publishedByType[Self.eventTypeIndex(event)].increment()
        ops?.eventPublished()
    }

    /// An event written to a stream; live ones also record how long they took from the publish.
    func delivered(_ event: StoredEvent, live: Bool) {
        deliveredByType[Self.eventTypeIndex(event.event)].increment()
        guard live, event.publishedAt > 0 else { return }
        // Reporting overflow: publishedAt comes from another node (or whatever wrote Redis), so no arithmetic on it traps.
        let (latency, overflow) = TimeSource.wallMicroseconds().subtractingReportingOverflow(event.publishedAt)
        if !overflow, latency >= 0 { deliveryLatency.recordMicroseconds(latency) }
    }

    /// A stream ended because its reader fell behind.
    func slowReaderCut() {
        slowReadersCut.increment()
    }

    /// A message on a session's channel that was not a Tandem event, dropped.
    func brokerMessageRejected() {
        brokerMessagesRejected.increment()
    }

    func brokerCall(_ operation: BrokerOperation, nanoseconds: Int64, failed: Bool) {
        brokerLatency[operation.rawValue].recordNanoseconds(nanoseconds)
        ops?.brokerCall(nanoseconds: nanoseconds)
        if failed { brokerErrors[operation.rawValue].increment() }
    }

    /// The broker's store refused to store, by kind (`oom`, `readonly`, `loading`, ...: a fixed set of Redis error
    /// codes, so the series stay bounded).
    func brokerRefused(kind: String) {
        let counter = brokerRefusals.withLock { counters in
            if let counter = counters[kind] { return counter }
            let made = CoreMetrics.Counter(label: "tandem_broker_refusals_total", dimensions: [("kind", kind)], factory: factory)
            counters[kind] = made
            return made
        }
        counter.increment()
    }

    /// A request answered with an error status, by status code (400, 403, 404, 409, 413, 429, 503, ...).
    func refused(status: UInt) {
        let counter = refusals.withLock { refusals in
            if let counter = refusals[status] { return counter }
            let made = CoreMetrics.Counter(label: "tandem_requests_refused_total", dimensions: [("status", String(status))], factory: factory)
            refusals[status] = made
            return made
        }
        counter.increment()
    }

    /// The Prometheus text exposition of every metric.
    func render() -> [UInt8] {
        registry.emitToBuffer()
    }
}

/// What the broker is asked, as `tandem_broker_seconds` and `tandem_broker_errors_total` label it.
enum BrokerOperation: Int, CaseIterable, Sendable {
    case openSession, session, publish, holdPresence, releasePresence, reviewPresence, reviewPresenceRound, events, subscribe, unsubscribe

    var label: String {
        switch self {
        case .openSession: "open_session"
        case .session: "session"
        case .publish: "publish"
        case .holdPresence: "hold_presence"
        case .releasePresence: "release_presence"
        case .reviewPresence: "review_presence"
        case .reviewPresenceRound: "review_presence_round"
        case .events: "events"
        case .subscribe: "subscribe"
        case .unsubscribe: "unsubscribe"
        }
    }
}

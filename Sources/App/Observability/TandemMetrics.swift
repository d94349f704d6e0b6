import Broker
import CoreMetrics
import Prometheus

/// This node's metrics, kept in its own Prometheus registry (no global bootstrap, so several nodes can live in one
/// test process) and served at `GET /metrics` in the Prometheus text format. Dimensions are route templates, event
/// types, operations and status codes, never session IDs, so the number of series stays bounded.
final class TandemMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory

    init() {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Latencies here are sub-millisecond when all is well; the default buckets start at 5 ms.
        factory.defaultDurationHistogramBuckets = [
            .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
            .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
        ]
        self.factory = factory
    }

    /// Streams and sessions this node holds right now.
    func streamsChanged(openStreams: Int, sessions: Int) {
        Gauge(label: "tandem_open_streams", factory: factory).record(openStreams)
        Gauge(label: "tandem_live_sessions", factory: factory).record(sessions)
    }

    func sessionOpened() {
        Counter(label: "tandem_sessions_opened_total", factory: factory).increment()
    }

    func published(_ event: SessionEvent) {
        Counter(label: "tandem_events_published_total", dimensions: [("type", event.name)], factory: factory).increment()
    }

    /// An event written to a stream; live ones also record how long they took from the publish.
    func delivered(_ event: StoredEvent, live: Bool) {
        Counter(label: "tandem_events_delivered_total", dimensions: [("type", event.event.name)], factory: factory).increment()
        guard live, event.publishedAt > 0 else { return }
        let latency = TimeSource.wallMicroseconds() - event.publishedAt
        if latency >= 0 {
            Timer(label: "tandem_event_delivery_seconds", factory: factory).recordMicroseconds(latency)
        }
    }

    func streamCut(reason: String) {
        Counter(label: "tandem_streams_cut_total", dimensions: [("reason", reason)], factory: factory).increment()
    }

    func brokerCall(_ operation: String, nanoseconds: Int64, failed: Bool) {
        Timer(label: "tandem_broker_seconds", dimensions: [("operation", operation)], factory: factory).recordNanoseconds(nanoseconds)
        if failed {
            Counter(label: "tandem_broker_errors_total", dimensions: [("operation", operation)], factory: factory).increment()
        }
    }

    /// A request answered with an error status, by status code (400, 403, 404, 409, 413, 429, 503, ...).
    func refused(status: UInt) {
        Counter(label: "tandem_requests_refused_total", dimensions: [("status", String(status))], factory: factory).increment()
    }

    /// The Prometheus text exposition of every metric.
    func render() -> [UInt8] {
        registry.emitToBuffer()
    }
}

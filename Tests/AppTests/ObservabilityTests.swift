import Broker
import Foundation
import TestSupport
import Testing

@testable import App

/// `/metrics` counts what happened, `/readyz` says whether to send traffic, and logs never hold what was submitted.
@Suite(.timeLimit(.minutes(1)))
struct ObservabilityTests {
    /// The value of the sample named `name` whose labels include `labels`, from Prometheus text.
    static func sample(_ text: String, _ name: String, _ labels: [String: String] = [:]) -> Double? {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " ") else { continue }
            let series = line[..<space]
            let seriesName = series.split(separator: "{", maxSplits: 1).first.map(String.init) ?? ""
            guard seriesName == name else { continue }
            if labels.allSatisfy({ series.contains("\($0.key)=\"\($0.value)\"") }) {
                return Double(line[line.index(after: space)...])
            }
        }
        return nil
    }

    @Test func metricsCountAFlow() async throws {
        try await withTandem { _, client in
            let id = SeedFlowTests.newSessionID()
            let stream = try await client.openEventStream("/api/events?session=\(id)")
            _ = try await stream.events(atLeast: 2)
            _ = try await client.request("GET", "/api/validate-session?session=\(id)")
            _ = try await client.post("/api/input-started", json: #"{"sessionId":"\#(id)"}"#)
            _ = try await client.post("/api/submit", json: #"{"sessionId":"\#(id)","name":"A","phone":"12"}"#)
            _ = try await client.request("GET", "/api/validate-session?session=unknown_session")
            _ = try await stream.events(atLeast: 5)

            let scrape = try await client.request("GET", "/metrics")
            #expect(scrape.status == 200)
            #expect(scrape.header("content-type")?.hasPrefix("text/plain; version=0.0.4") == true)
            let text = scrape.bodyText
            #expect(Self.sample(text, "http_requests_total", ["route": "/api/submit", "method": "POST", "status": "200"]) == 1)
            #expect(Self.sample(text, "http_requests_total", ["route": "/api/validate-session", "status": "404"]) == 1)
            for type in ["connected", "input-started", "complete"] {
                #expect(Self.sample(text, "tandem_events_published_total", ["type": type]) == 1)
                #expect(Self.sample(text, "tandem_events_delivered_total", ["type": type]) == 1)
            }
            #expect(Self.sample(text, "tandem_event_delivery_seconds_count") == 3)
            #expect(Self.sample(text, "tandem_open_streams") == 1)
            #expect(Self.sample(text, "tandem_sessions_opened_total") == 1)
            #expect(Self.sample(text, "tandem_requests_refused_total", ["status": "404"]) == 1)
            #expect(Self.sample(text, "tandem_broker_seconds_count", ["operation": "publish"]) == 4)  // the unknown session too
            #expect(!text.contains(id), "session IDs are never metric labels")
            await stream.close()
        }
    }

    /// Events and broker calls are counted by position, not by name: each lands in its own series, every broker
    /// operation has one (review_presence was timed but had none), and an error counts where its call does.
    @Test func eachEventAndBrokerOperationHasItsOwnSeries() {
        let metrics = TandemMetrics(opsPage: false)
        let events: [SessionEvent] = [
            .connected(), .inputStarted, .complete(Submission(name: "A", phone: "1")), .cancelled(.pcLeft), .phoneLeft, .phoneReturned,
        ]
        for (count, event) in events.enumerated() {
            #expect(TandemMetrics.eventTypes[TandemMetrics.eventTypeIndex(event)] == event.name)
            for _ in 0...count {
                metrics.published(event)
                metrics.delivered(StoredEvent(id: 1, event: event), live: false)
            }
        }
        for (count, operation) in BrokerOperation.allCases.enumerated() {
            for _ in 0...count { metrics.brokerCall(operation, nanoseconds: 1000, failed: false) }
            metrics.brokerCall(operation, nanoseconds: 1000, failed: true)
        }
        let text = String(decoding: metrics.render(), as: UTF8.self)
        for (count, event) in events.enumerated() {
            #expect(Self.sample(text, "tandem_events_published_total", ["type": event.name]) == Double(count + 1))
            #expect(Self.sample(text, "tandem_events_delivered_total", ["type": event.name]) == Double(count + 1))
        }
        #expect(Set(BrokerOperation.allCases.map(\.label)).count == BrokerOperation.allCases.count)
        for (count, operation) in BrokerOperation.allCases.enumerated() {
            #expect(Self.sample(text, "tandem_broker_seconds_count", ["operation": operation.label]) == Double(count + 2), "\(operation)")
            #expect(Self.sample(text, "tandem_broker_errors_total", ["operation": operation.label]) == 1, "\(operation)")
        }
    }

    @Test func readinessFollowsTheBroker() async throws {
        try await withTandem { _, client in
            let ready = try await client.request("GET", "/readyz")
            #expect(ready.status == 200)
            #expect(try json(ready)["ready"]?.bool == true)
        }
        // A Redis that is not there: alive, but not ready.
        try await withTandem({
            $0.broker = .redis
            $0.redisURL = "redis://127.0.0.1:1/0"
        }) { _, client in
            #expect(try await client.request("GET", "/healthz").status == 503)
            let notReady = try await client.request("GET", "/readyz")
            #expect(notReady.status == 503)
            #expect(try json(notReady)["ready"]?.bool == false)
            let refused = try await client.post("/api/input-started", json: #"{"sessionId":"sess_x"}"#)
            #expect(refused.status == 503)
            #expect(try json(refused)["code"]?.string == "service_unavailable")
            // A stream is not refused (EventSource would give up for good) but asked to come back later.
            let stream = try await client.openEventStream("/api/events?session=sess_x", headers: [("Last-Event-ID", "2")])
            #expect(stream.head.status == 200)
            let (events, ended) = try await stream.all(timeout: .seconds(3)) { _ in false }
            #expect(ended)
            #expect(events.contains { $0.retry == 2000 })
            #expect(events.contains { $0.comment == "broker unavailable" })
            // The phone's channel too, even before its session could be looked up (a node restarting without Redis
            // yet): found by a Chromium test whose phone reconnected in that window and was refused for good.
            let phone = try await client.openEventStream(
                "/api/phone/events?session=sess_x", headers: [("Last-Event-ID", "2"), ("Cookie", "tandem_phone_sess_x=\(String(repeating: "a", count: 32))")])
            #expect(phone.head.status == 200)
            let (phoneEvents, phoneEnded) = try await phone.all(timeout: .seconds(3)) { _ in false }
            #expect(phoneEnded && phoneEvents.contains { $0.comment == "broker unavailable" })
        }
    }
}

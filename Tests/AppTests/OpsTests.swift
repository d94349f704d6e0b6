import Broker
import Foundation
import JSON
import TestSupport
import Testing

@testable import App

/// The operators' page: off without a token, refused without the right one, counts that move, and nothing in it that
/// names a user or a session.
@Suite(.timeLimit(.minutes(1)))
struct OpsTests {
    static let token = "ops-test-token-0123456789"
    static let bearer = [("Authorization", "Bearer " + token)]

    static func withOps<T: Sendable>(_ body: @Sendable (TandemApplication, TestClient) async throws -> T) async throws -> T {
        try await withTandem({ $0.opsToken = token; $0.opsNodeName = "node-a" }, body)
    }

    @Test func offWithoutATokenEverythingIsNotFound() async throws {
        try await withTandem { _, client in
            for path in ["/ops", "/ops/", "/ops/index.html", "/ops/ops.js", "/%6Fps/ops.js", "/api/ops/snapshot", "/api/ops/events"] {
                let response = try await client.request("GET", path, headers: Self.bearer)
                #expect(response.status == 404, "\(path)")
                #expect(try json(response)["code"]?.string == "not_found", "\(path)")
            }
        }
    }

    @Test func withATokenThePageIsServedWithThePagesPolicy() async throws {
        try await Self.withOps { _, client in
            let page = try await client.request("GET", "/ops")
            #expect(page.status == 200)
            #expect(page.header("content-type") == "text/html; charset=utf-8")
            #expect(page.header("content-security-policy")?.contains("script-src 'self'") == true)
            #expect(try await client.request("GET", "/ops/ops.js").status == 200)
            // Without the script the form must not leave with the token (`GET /ops?token=...` in URLs and logs):
            // the field has no name, the form posts, the button waits for ops.js.
            let html = page.bodyText
            let field = try #require(html.range(of: #"<input id="token"[^>]*>"#, options: .regularExpression).map { String(html[$0]) })
            #expect(!field.contains("name="))
            #expect(field.contains(#"autocomplete="off""#))
            #expect(html.contains(#"<form id="login" class="form ops-login" method="post">"#))
            let button = try #require(html.range(of: #"<button id="sign-in"[^>]*>"#, options: .regularExpression).map { String(html[$0]) })
            #expect(button.contains("disabled"))
        }
    }

    @Test func aMissingOrWrongTokenIs401ThenTooManyFailuresAre429EvenForTheRightToken() async throws {
        try await Self.withOps { _, client in
            let cases: [[(String, String)]] = [
                [], [("Authorization", "Bearer wrong-token-0123456789")], [("Authorization", "Basic " + Self.token)],
                [("Authorization", "Bearer " + Self.token + "x")], [("Authorization", "Bearer")],
            ]
            for headers in cases {
                let response = try await client.request("GET", "/api/ops/snapshot", headers: headers)
                #expect(response.status == 401, "\(headers)")
                #expect(try json(response)["code"]?.string == "ops_token_required")
                #expect(response.header("www-authenticate") == #"Bearer realm="tandem-ops""#)
            }
            let english = try await client.request("GET", "/api/ops/events", headers: [("Accept-Language", "en")])
            #expect(english.status == 401)
            #expect(try json(english)["message"]?.string == "The operators' token is missing or wrong.")
            #expect(try await client.request("GET", "/api/ops/snapshot", headers: Self.bearer).status == 200)
            // Ten failures a minute (one comes back every 6 s, so a slow machine may need a few more tries to get there).
            var failures = 7
            while try await client.request("GET", "/api/ops/snapshot").status == 401, failures < 30 { failures += 1 }
            // Past the budget, refused before the token is compared: guessing is no faster than the budget.
            let refused = try await client.request("GET", "/api/ops/snapshot", headers: Self.bearer)
            #expect(refused.status == 429)
            #expect(refused.header("retry-after") != nil)
        }
    }

    @Test func countsMoveWithAFlowAndNameNoUser() async throws {
        try await Self.withOps { application, client in
            let id = SeedFlowTests.newSessionID()
            let stream = try await client.openEventStream("/api/events?session=\(id)")
            _ = try await stream.events(atLeast: 1)
            var seen: [String] = []
            let waiting = try await Self.snapshot(client, collecting: &seen) { $0["pairings"]?["waiting"]?.number == 1 }
            let node = try #require(waiting["nodes"]?.array?.first)
            #expect(node["name"]?.string == "node-a")
            #expect(node["pcStreams"]?.number == 1)
            #expect(node["sessions"]?.number == 1)
            #expect(waiting["oldestWaitingSeconds"]?.array?.count == 1)
            #expect(waiting["broker"]?.string == "memory")

            let phone = client.anotherDevice()
            #expect(try await phone.request("GET", "/api/validate-session?session=\(id)").status == 200)
            _ = try await Self.snapshot(client, collecting: &seen) { $0["pairings"]?["connected"]?.number == 1 }
            #expect(try await phone.post("/api/input-started", json: #"{"sessionId":"\#(id)"}"#).status == 200)
            _ = try await Self.snapshot(client, collecting: &seen) { $0["pairings"]?["inputting"]?.number == 1 }
            let name = "山田オプス"
            let number = "090-7777-3141"
            let submitted = try await phone.post("/api/submit", json: #"{"sessionId":"\#(id)","name":"\#(name)","phone":"\#(number)"}"#)
            #expect(submitted.status == 200)
            let done = try await Self.snapshot(client, collecting: &seen) {
                $0["pairings"]?["completed"]?.number == 1 && ($0["nodes"]?.array?.first?["eventsPerSecond"]?.number ?? 0) > 0
            }
            #expect(done["pairings"]?["waiting"]?.number == 0)
            #expect(done["oldestWaitingSeconds"]?.array?.isEmpty == true)
            #expect(done["nodes"]?.array?.first?["brokerP99Milliseconds"]?.number != nil)

            let events = try await client.openEventStream("/api/ops/events", headers: Self.bearer)
            #expect(events.head.status == 200)
            #expect(events.head.header("content-type") == "text/event-stream")
            let (received, _) = try await events.events(atLeast: 2, timeout: .seconds(5))
            #expect(received.allSatisfy { $0.event == "snapshot" })
            seen += received.map(\.data)
            await events.close()
            await stream.close()
            _ = application

            for payload in seen {
                for secret in [id, name, number] { #expect(!payload.contains(secret), "\(secret) in \(payload)") }
                // A part of the number, in any string of the payload (not in its own numbers: a timestamp may hold
                // the same four digits).
                let strings = JSONValue(parsing: Array(payload.utf8)).map(Self.strings) ?? [payload]
                #expect(!strings.contains { $0.contains("7777") }, "a part of the number in \(payload)")
            }
        }
    }

    /// Every key and string value in `value`, at any depth.
    static func strings(in value: JSONValue) -> [String] {
        switch value {
        case .string(let text): [text]
        case .array(let items): items.flatMap(strings)
        case .object(let fields): fields.flatMap { [$0.key] + strings(in: $0.value) }
        default: []
        }
    }

    /// Polls the snapshot until `done` holds (the reporter refreshes it every second); every payload is kept.
    static func snapshot(
        _ client: TestClient, collecting seen: inout [String], until done: ([String: JSONAny]) -> Bool
    ) async throws -> [String: JSONAny] {
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            let response = try await client.request("GET", "/api/ops/snapshot", headers: bearer)
            #expect(response.status == 200)
            seen.append(response.bodyText)
            let body = try json(response)
            if done(body) { return body }
            guard ContinuousClock.now < deadline else {
                Issue.record("the snapshot never got there: \(response.bodyText)")
                return body
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    @Test func theTokenIsASecretOfAtLeast16Bytes() throws {
        #expect(throws: ConfigurationError.self) { try TandemConfiguration.load(environment: ["OPS_TOKEN": "short"]) }
        do {
            _ = try TandemConfiguration.load(environment: ["OPS_TOKEN": "short-secret"])
        } catch {
            #expect(!"\(error)".contains("short-secret"), "the error shows the token: \(error)")
        }
        let configuration = try TandemConfiguration.load(environment: ["OPS_TOKEN": Self.token])
        #expect(configuration.opsToken == Self.token)
        #expect(configuration.effectiveValues["ops.token"] == "********")
        #expect(TandemConfiguration().effectiveValues["ops.token"] == "")
    }

    /// The comparison holds no early exit on length: a prefix, an extension, an empty value are merely unequal.
    @Test func tokensAreComparedWhateverTheirLength() {
        #expect(constantTimeEquals(Self.token, Self.token))
        #expect(constantTimeEquals("", ""))
        for other in ["", "o", String(Self.token.dropLast()), Self.token + "x", Self.token.uppercased(), String(repeating: "a", count: 10_000)] {
            #expect(!constantTimeEquals(other, Self.token))
            #expect(!constantTimeEquals(Self.token, other))
        }
    }

    /// Other nodes' reports come from Redis, where anything may have been planted: absurd values are refused, times
    /// outside the session TTL dropped, sums saturate.
    @Test func plantedReportsAreValidatedBeforeTheyCount() throws {
        let now: Int64 = 1_000_000_000
        func report(_ fields: String, node: String = "node-x") -> NodeReport {
            let body = #"{"name":"ignored","version":"1.0","uptimeSeconds":5,"pcStreams":1,"phoneStreams":1,"sessions":2,"eventsPerSecond":1.5,"pairings":{"waiting":1,"connected":0,"inputting":0,"completed":0,"cancelled":0}"#
            return NodeReport(node: node, reportedAt: now, body: Array((body + fields + "}").utf8))
        }
        func validated(_ report: NodeReport) -> OpsNodeReport? {
            OpsNodeReport.validated(report, now: now, sessionTTLMilliseconds: 600_000, skew: 5000)
        }
        let good = try #require(validated(report(#","brokerP99Milliseconds":0.25,"oldestWaitingSince":[\#(now - 700_000),\#(now - 1000),\#(now + 2000),\#(now + 60_000)]"#)))
        #expect(good.name == "node-x")
        #expect(good.oldestWaitingSince == [now - 1000, now], "outside [now - TTL, now + skew] dropped, ahead clamped to now")
        let refused: [String] = [
            #"{"name":"n","version":"1","uptimeSeconds":-5,"pcStreams":1,"phoneStreams":1,"sessions":2,"eventsPerSecond":1,"pairings":{"waiting":1,"connected":0,"inputting":0,"completed":0,"cancelled":0}}"#,
            #"{"name":"n","version":"1","uptimeSeconds":5,"pcStreams":-1,"phoneStreams":1,"sessions":2,"eventsPerSecond":1,"pairings":{"waiting":1,"connected":0,"inputting":0,"completed":0,"cancelled":0}}"#,
            #"{"name":"n","version":"1","uptimeSeconds":5,"pcStreams":1,"phoneStreams":1,"sessions":2000000000,"eventsPerSecond":1,"pairings":{"waiting":1,"connected":0,"inputting":0,"completed":0,"cancelled":0}}"#,
            #"{"name":"n","version":"1","uptimeSeconds":5,"pcStreams":1,"phoneStreams":1,"sessions":2,"eventsPerSecond":1,"pairings":{"waiting":9223372036854775807,"connected":0,"inputting":0,"completed":0,"cancelled":0}}"#,
            #"{"name":"n","version":"1","uptimeSeconds":5,"pcStreams":1,"phoneStreams":1,"sessions":2,"eventsPerSecond":1e300,"pairings":{"waiting":1,"connected":0,"inputting":0,"completed":0,"cancelled":0}}"#,
            #"{"name":"n","version":"1","uptimeSeconds":5,"pcStreams":1,"phoneStreams":1,"sessions":2,"eventsPerSecond":-1,"pairings":{"waiting":1,"connected":0,"inputting":0,"completed":0,"cancelled":0}}"#,
            #"{"name":"n","version":"1","uptimeSeconds":5,"pcStreams":1,"phoneStreams":1,"sessions":2,"eventsPerSecond":1,"brokerP99Milliseconds":1e9,"pairings":{"waiting":1,"connected":0,"inputting":0,"completed":0,"cancelled":0}}"#,
            #"{"name":"n","version":"1","uptimeSeconds":5,"pcStreams":1,"phoneStreams":1,"sessions":2,"eventsPerSecond":1,"pairings":{"waiting":-3,"connected":0,"inputting":0,"completed":0,"cancelled":0}}"#,
            "not json",
        ]
        for body in refused {
            #expect(validated(NodeReport(node: "n", reportedAt: now, body: Array(body.utf8))) == nil, "accepted: \(body)")
        }
        #expect(validated(report("", node: "node\u{202E}x")) == nil)
        #expect(validated(report("", node: "node\u{7}x")) == nil)
        let version = try #require(validated(NodeReport(node: "n", reportedAt: now, body: Array(
            #"{"name":"n","version":"1.\u202e0\u0007","uptimeSeconds":5,"pcStreams":1,"phoneStreams":1,"sessions":2,"eventsPerSecond":1,"pairings":{"waiting":1,"connected":0,"inputting":0,"completed":0,"cancelled":0}}"#.utf8))))
        #expect(version.version == "1.0")

        var huge = OpsPairings()
        huge.completed = .max
        #expect((huge + huge).completed == .max)
    }

    @Test func theTallyFollowsPairingsAndForgetsThemAtExpiry() throws {
        var tally = PairingTally(capacity: 2)
        let a = try #require(SessionID("sess_aaaaaaaaaaaa"))
        let b = try #require(SessionID("sess_bbbbbbbbbbbb"))
        let c = try #require(SessionID("sess_cccccccccccc"))
        tally.attached(a, status: .waiting, createdAt: 1000, expiresAt: 10_000)
        tally.attached(b, status: .waiting, createdAt: 2000, expiresAt: 20_000)
        tally.attached(c, status: .waiting, createdAt: 500, expiresAt: 20_000)  // past the capacity: not counted
        #expect(tally.summary(now: 3000) == .init(byStatus: [.waiting: 2], oldestWaitingCreatedAt: [1000, 2000]))
        tally.advanced(a, to: .completed)
        tally.advanced(a, to: .connected)  // never backwards
        tally.left(a)  // over: stays until its expiry
        tally.left(b)  // not over: its PC may be on another node now
        #expect(tally.summary(now: 3000) == .init(byStatus: [.completed: 1], oldestWaitingCreatedAt: []))
        #expect(tally.summary(now: 10_000) == .init())
    }

    @Test func theBrokerP99IsTheBucketOfThe99thPercentile() {
        let counters = OpsCounters()
        let before = counters.current
        #expect(OpsCounters.brokerP99Milliseconds(from: before, to: before) == nil)
        for _ in 0..<99 { counters.brokerCall(nanoseconds: 80_000) }
        counters.brokerCall(nanoseconds: 3_000_000_000)
        #expect(OpsCounters.brokerP99Milliseconds(from: before, to: counters.current) == 0.1)
        counters.brokerCall(nanoseconds: 3_000_000_000)
        #expect(OpsCounters.brokerP99Milliseconds(from: before, to: counters.current) == 1000)
    }
}

import Broker
import TestSupport
import Testing

@testable import App

/// Issue 15: the phone never "succeeds" into a session nobody watches. The PC's presence (its stream, on any node,
/// and a grace after it left), the PC's own cancel, and what `validate-session` says about each.
@Suite(.timeLimit(.minutes(1)))
struct PairingTests {
    /// The article's error case 1, as the user found it broken: the PC's stream goes (a reload, a closed tab); past
    /// the grace the phone is told the session is invalid, in the article's words, and its submission is refused.
    @Test func aPhoneIsToldWhenThePCHasBeenGonePastTheGrace() async throws {
        try await withTandem({ $0.pairingGraceSeconds = 1 }) { application, client in
            let id = SeedFlowTests.newSessionID()
            let stream = try await client.openEventStream("/api/events?session=\(id)")
            #expect(try await client.request("GET", "/api/validate-session?session=\(id)").status == 200)
            await stream.close()
            // Told soon after the grace (issue 15 asks within a second, which the Chromium suite checks; here up to
            // fourteen, as the whole suite runs in parallel on two cores beside the other suites, and a full local
            // run under load once went past five): asked every 100 ms from the grace on, not once at a fixed moment.
            let closed = ContinuousClock.now
            try await Task.sleep(for: .milliseconds(1000))
            var validated = try await client.request("GET", "/api/validate-session?session=\(id)", headers: [("Accept-Language", "ja")])
            while validated.status == 200, ContinuousClock.now - closed < .seconds(15) {
                try await Task.sleep(for: .milliseconds(100))
                validated = try await client.request("GET", "/api/validate-session?session=\(id)", headers: [("Accept-Language", "ja")])
            }
            #expect(validated.status == 404, "streams still held: \(application.registry.streamCount)")
            let body = try json(validated)
            #expect(body["valid"]?.bool == false)
            #expect(body["code"]?.string == "session_cancelled")
            #expect(body["message"]?.string == "このセッションは無効です。QRコード画面が更新された可能性があります。")
            let submitted = try await client.post("/api/submit", json: #"{"sessionId":"\#(id)","name":"A","phone":"01"}"#)
            #expect(submitted.status == 404)
            #expect(try json(submitted)["code"]?.string == "session_cancelled")
        }
    }

    /// A PC that stays, or comes back within the grace, keeps its session: renewals run while its stream is open.
    @Test func aPCThatStaysOrComesBackWithinTheGraceKeepsItsSession() async throws {
        try await withTandem({ $0.pairingGraceSeconds = 1 }) { _, client in
            let id = SeedFlowTests.newSessionID()
            let first = try await client.openEventStream("/api/events?session=\(id)")
            let cookie = try #require(first.cookie)
            try await Task.sleep(for: .milliseconds(2500))  // well past the grace, with the stream open
            #expect(try await client.request("GET", "/api/validate-session?session=\(id)").status == 200)
            await first.close()
            try await Task.sleep(for: .milliseconds(300))  // a reconnect well within the grace
            let second = try await client.openEventStream("/api/events?session=\(id)", headers: [("Last-Event-ID", "1"), ("Cookie", cookie)])
            try await Task.sleep(for: .milliseconds(1500))
            #expect(try await client.post("/api/input-started", json: #"{"sessionId":"\#(id)"}"#).status == 200)
            let (events, _) = try await second.all { $0.contains { $0.event == "input-started" } }
            #expect(!events.contains { $0.event == "cancelled" })
            await second.close()
        }
    }

    /// The PC ends its session (a new session, its page closing): only the PC can, the phone gets 404, and the PC's
    /// stream hears `cancelled` with the reason.
    @Test func thePCCancelsItsSessionWithItsCookie() async throws {
        try await withTandem { _, client in
            let created = try await client.post("/api/sessions", json: "")
            let id = try #require(try json(created)["sessionId"]?.string)
            let cookie = try #require(created.header("set-cookie")?.split(separator: ";").first.map(String.init))
            let stream = try await client.openEventStream("/api/events?session=\(id)", headers: [("Cookie", cookie)])
            let token = try #require(try json(created)["token"]?.string)
            #expect(try await client.request("GET", "/api/validate-session?session=\(id)&t=\(token)").status == 200)

            let stranger = try await client.post("/api/cancel", json: #"{"sessionId":"\#(id)"}"#)
            #expect(stranger.status == 403)
            #expect(try json(stranger)["code"]?.string == "reader_key_required")
            #expect(try await client.request("GET", "/api/validate-session?session=\(id)").status == 200)

            let cancelled = try await client.request("POST", "/api/cancel?session=\(id)", headers: [("Cookie", cookie)], body: "")
            #expect(cancelled.status == 200)
            #expect(try await client.request("POST", "/api/cancel?session=\(id)", headers: [("Cookie", cookie)], body: "").status == 200)
            let (events, _) = try await stream.all { $0.contains { $0.event == "cancelled" } }
            let event = try #require(events.first { $0.event == "cancelled" })
            #expect(event.data == #"{"reason":"pc-cancelled"}"# && event.id == "2")
            let validated = try await client.request("GET", "/api/validate-session?session=\(id)")
            #expect(validated.status == 404)
            #expect(try json(validated)["code"]?.string == "session_cancelled")
            #expect(try await client.post("/api/input-started", json: #"{"sessionId":"\#(id)"}"#).status == 404)
            await stream.close()
        }
    }

    @Test func cancelRefusesWhatItShould() async throws {
        try await withTandem { _, client in
            #expect(try await client.post("/api/cancel", json: "{}").status == 400)
            #expect(try await client.post("/api/cancel", json: #"{"sessionId":"bad id"}"#).status == 400)
            #expect(try await client.request("POST", "/api/cancel?session=sess_unknown", body: "").status == 404)
            #expect(try await client.request("GET", "/api/cancel?session=sess_unknown").status == 405)
            // A session given in the query but not percent-decodable is malformed, not missing, whatever the body.
            let undecodable = try await client.request("POST", "/api/cancel?session=%zz", body: "")
            #expect(undecodable.status == 400)
            #expect(try json(undecodable)["code"]?.string == "session_id_malformed")
            for path in ["/api/validate-session?session=%zz", "/api/events?session=%E3%81", "/api/phone/events?session=%zz"] {
                let answered = try await client.request("GET", path)
                #expect(answered.status == 400, "\(path)")
                #expect(try json(answered)["code"]?.string == "session_id_malformed", "\(path)")
            }
            // A completed session stays completed.
            let id = SeedFlowTests.newSessionID()
            let stream = try await client.openEventStream("/api/events?session=\(id)")
            let cookie = try #require(stream.cookie)
            #expect(try await client.post("/api/submit", json: #"{"sessionId":"\#(id)","name":"A","phone":"01"}"#).status == 200)
            let refused = try await client.request("POST", "/api/cancel?session=\(id)", headers: [("Cookie", cookie)], body: "")
            #expect(refused.status == 409)
            #expect(try json(refused)["code"]?.string == "already_submitted")
            await stream.close()
            // `navigator.sendBeacon(url, data)` sends text/plain: with the session in the query, that body is not read.
            let other = SeedFlowTests.newSessionID()
            let otherStream = try await client.openEventStream("/api/events?session=\(other)")
            let otherCookie = try #require(otherStream.cookie)
            let beacon = try await client.request(
                "POST", "/api/cancel?session=\(other)", headers: [("Cookie", otherCookie), ("Content-Type", "text/plain;charset=UTF-8")], body: "x")
            #expect(beacon.status == 200)
            #expect(try json(try await client.request("GET", "/api/validate-session?session=\(other)"))["code"]?.string == "session_cancelled")
            // A JSON body is still read, and still checked.
            let badJSON = try await client.request(
                "POST", "/api/cancel?session=\(other)", headers: [("Cookie", otherCookie), ("Content-Type", "application/json")], body: "{")
            #expect(badJSON.status == 400)
            await otherStream.close()
        }
    }

    /// A completed session no longer validates: a second phone (or a photo of the QR code) learns before it types.
    @Test func aCompletedSessionAnswers409ToValidation() async throws {
        try await withTandem { _, client in
            let id = SeedFlowTests.newSessionID()
            let stream = try await client.openEventStream("/api/events?session=\(id)")
            #expect(try await client.post("/api/submit", json: #"{"sessionId":"\#(id)","name":"A","phone":"01"}"#).status == 200)
            let second = try await client.request("GET", "/api/validate-session?session=\(id)")
            #expect(second.status == 409)
            #expect(try json(second)["valid"]?.bool == false)
            #expect(try json(second)["code"]?.string == "already_submitted")
            await stream.close()
        }
    }

    /// The countdown's reference: `serverTime` in the stream's session info and in the creation's answer, so a PC
    /// counts down by the server's clock after any reconnect.
    @Test func sessionInfoCarriesTheServersTime() async throws {
        let time = ManualTime()
        try await withTandem({ $0.sessionTTLSeconds = 600 }, time: time.source) { _, client in
            let created = try json(try await client.post("/api/sessions", json: ""))
            #expect(created["serverTime"]?.number == 1_700_000_000_000)
            #expect(created["expiryTime"]?.number == 1_700_000_600_000)
            let id = SeedFlowTests.newSessionID()
            let first = try await client.openEventStream("/api/events?session=\(id)")
            let cookie = try #require(first.cookie)
            await first.close()
            time.advance(by: .seconds(3))
            let resumed = try await client.openEventStream("/api/events?session=\(id)", headers: [("Last-Event-ID", "0"), ("Cookie", cookie)])
            let (events, _) = try await resumed.all { $0.contains { $0.event == "message" } }
            let info = try JSONAny.object(from: try #require(events.first { $0.event == "message" }).data)
            #expect(info["serverTime"]?.number == 1_700_000_003_000)
            #expect(info["expiryTime"]?.number == 1_700_000_600_000)
            await resumed.close()
        }
    }
}

/// Issue 15 item 6: the phone's calls take an `Idempotency-Key`; a retry gets the original answer, the same key with a
/// different body 422.
@Suite(.timeLimit(.minutes(1)))
struct IdempotencyTests {
    @Test func aRetryWithTheSameKeyGetsTheOriginalAnswerAndADifferentBody422() async throws {
        try await withTandem { _, client in
            let id = SeedFlowTests.newSessionID()
            let stream = try await client.openEventStream("/api/events?session=\(id)")
            let started = [("Idempotency-Key", "in-1")]
            #expect(try await client.post("/api/input-started", json: #"{"sessionId":"\#(id)"}"#, headers: started).status == 200)
            let body = #"{"sessionId":"\#(id)","name":"山田","phone":"090"}"#
            let key = [("Idempotency-Key", "sub-1")]
            #expect(try await client.post("/api/submit", json: body, headers: key).status == 200)
            #expect(try await client.post("/api/submit", json: body, headers: key).status == 200)
            let reused = try await client.post("/api/submit", json: #"{"sessionId":"\#(id)","name":"山田","phone":"091"}"#, headers: key)
            #expect(reused.status == 422)
            #expect(try json(reused)["code"]?.string == "idempotency_key_reused")
            let other = try await client.post("/api/submit", json: #"{"sessionId":"\#(id)","name":"山田","phone":"091"}"#, headers: [("Idempotency-Key", "sub-2")])
            #expect(other.status == 409)
            // The input-started that was answered before the submission, retried after it: its original 200.
            #expect(try await client.post("/api/input-started", json: #"{"sessionId":"\#(id)"}"#, headers: started).status == 200)
            #expect(try await client.post("/api/input-started", json: #"{"sessionId":"\#(id)"}"#, headers: [("Idempotency-Key", "in-2")]).status == 409)
            let (events, _) = try await stream.all { $0.contains { $0.event == "complete" } }
            #expect(events.filter { $0.event == "complete" }.count == 1)
            await stream.close()
        }
    }

    @Test(arguments: ["", String(repeating: "k", count: 65), "with space", "ключ"])
    func aMalformedKeyIsRefusedAndChangesNothing(_ key: String) async throws {
        try await withTandem { _, client in
            let id = SeedFlowTests.newSessionID()
            let stream = try await client.openEventStream("/api/events?session=\(id)")
            let refused = try await client.post("/api/submit", json: #"{"sessionId":"\#(id)","name":"A","phone":"01"}"#, headers: [("Idempotency-Key", key)])
            #expect(refused.status == 400)
            #expect(try json(refused)["code"]?.string == "idempotency_key_invalid")
            #expect(try await client.request("GET", "/api/validate-session?session=\(id)").status == 200)
            await stream.close()
        }
    }
}

import Broker
import TestSupport
import Testing

@testable import App

/// State-changing calls from a page of another site (CSRF) are refused with 403 `cross_site_request` and change
/// nothing; the pages' own same-origin calls, configured CORS origins and clients without browser headers work.
@Suite(.timeLimit(.minutes(1)))
struct CrossSiteTests {
    static let foreign: [[(String, String)]] = [
        [("Origin", "https://evil.example")],
        [("Origin", "https://evil.example"), ("Sec-Fetch-Site", "cross-site")],
        [("Sec-Fetch-Site", "cross-site")],
        [("Origin", "null")],
        [("Origin", "http://test.evil.example")],
        [("Origin", "http://test"), ("Sec-Fetch-Site", "cross-site")],
    ]

    @Test func crossSitePostsAreRefusedAndChangeNothing() async throws {
        try await withTandem { application, client in
            let id = SeedFlowTests.newSessionID()
            let stream = try await client.openEventStream("/api/events?session=\(id)")
            for headers in Self.foreign {
                for (path, body) in [
                    ("/api/input-started", #"{"sessionId":"\#(id)"}"#),
                    ("/api/submit", #"{"sessionId":"\#(id)","name":"Mallory","phone":"0312345678"}"#),
                    ("/api/sessions", ""),
                ] {
                    let response = try await client.post(path, json: body, headers: headers + [("Accept-Language", "en")])
                    #expect(response.status == 403, "\(path) \(headers)")
                    let answer = try json(response)
                    #expect(answer["code"]?.string == "cross_site_request")
                    #expect(answer["message"]?.string == "Requests from other sites are not accepted.")
                    #expect(response.header("access-control-allow-origin") == nil)
                }
            }
            let japanese = try await client.post("/api/input-started", json: #"{"sessionId":"\#(id)"}"#, headers: [("Origin", "https://evil.example")])
            #expect(try json(japanese)["message"]?.string == "他のサイトからのリクエストは受け付けていません")
            // Nothing reached the session.
            #expect(try await application.broker.session(try #require(SessionID(id)))?.submission == nil)
            let (events, _) = try await stream.events(atLeast: 2)
            #expect(events.filter { !$0.event.isEmpty }.map(\.event) == ["message"])
            await stream.close()
        }
    }

    @Test func sameOriginCallsLikeThePagesOwnWork() async throws {
        try await withTandem { _, client in
            // TestClient sends `Host: test`; a browser on this page sends its origin and `same-origin`.
            let created = try await client.post("/api/sessions", json: "", headers: [("Origin", "http://test"), ("Sec-Fetch-Site", "same-origin")])
            #expect(created.status == 201)
            let id = try #require(try json(created)["sessionId"]?.string)
            let token = try #require(try json(created)["token"]?.string)
            #expect(try await client.request("GET", "/api/validate-session?session=\(id)&t=\(token)").status == 200)
            for headers in [
                [("Origin", "http://test"), ("Sec-Fetch-Site", "same-origin")],
                [("Origin", "https://TEST:443")],  // https, the default port and case do not matter
                [("Sec-Fetch-Site", "same-origin")],
                [("Sec-Fetch-Site", "none")],
                [],  // curl and other clients without browser headers
            ] {
                let response = try await client.post("/api/input-started", json: #"{"sessionId":"\#(id)"}"#, headers: headers)
                #expect(response.status == 200, "\(headers)")
            }
            let submitted = try await client.post(
                "/api/submit", json: #"{"sessionId":"\#(id)","name":"山田","phone":"0312345678"}"#,
                headers: [("Origin", "http://test"), ("Sec-Fetch-Site", "same-origin")])
            #expect(submitted.status == 200)
            // Reads are not state-changing POSTs: a cross-site GET is answered as before.
            let validate = try await client.request("GET", "/healthz", headers: [("Origin", "https://evil.example"), ("Sec-Fetch-Site", "cross-site")])
            #expect(validate.status == 200)
        }
    }

    @Test func thePublicBaseURLAndConfiguredCORSOriginsMayPost() async throws {
        try await withTandem({
            $0.publicBaseURL = "https://tandem.example.com"
            $0.corsOrigins = "https://kiosk.example"
        }) { _, client in
            let id = SeedFlowTests.newSessionID()
            _ = try await client.request("GET", "/api/validate-session?session=\(id)")
            let stream = try await client.openEventStream("/api/events?session=\(id)")
            let viaProxy = try await client.post(
                "/api/input-started", json: #"{"sessionId":"\#(id)"}"#, headers: [("Origin", "https://tandem.example.com"), ("Sec-Fetch-Site", "same-origin")])
            #expect(viaProxy.status == 200)
            let kiosk = try await client.post(
                "/api/input-started", json: #"{"sessionId":"\#(id)"}"#, headers: [("Origin", "https://kiosk.example"), ("Sec-Fetch-Site", "cross-site")])
            #expect(kiosk.status == 200)
            #expect(kiosk.header("access-control-allow-origin") == "https://kiosk.example")
            let other = try await client.post("/api/input-started", json: #"{"sessionId":"\#(id)"}"#, headers: [("Origin", "https://evil.example")])
            #expect(other.status == 403)
            await stream.close()
        }
    }

    @Test func originsAreComparedBySchemeHostAndPort() {
        #expect(SiteCheck.origin(ofURL: "HTTP://Example.COM:80") == "http://example.com")
        #expect(SiteCheck.origin(ofURL: "https://example.com:443/path?q") == "https://example.com")
        #expect(SiteCheck.origin(ofURL: "http://example.com:8080") == "http://example.com:8080")
        #expect(SiteCheck.origin(ofURL: "null") == nil)
        #expect(SiteCheck.origin(ofURL: "http://") == nil)
        #expect(SiteCheck.isOwnOrigin("http://192.168.1.20:8080", host: "192.168.1.20:8080", publicOrigin: nil))
        #expect(!SiteCheck.isOwnOrigin("http://192.168.1.20:8081", host: "192.168.1.20:8080", publicOrigin: nil))
        #expect(SiteCheck.isOwnOrigin("http://[::1]:8080", host: "[::1]:8080", publicOrigin: nil))
        #expect(!SiteCheck.isOwnOrigin("http://a.example", host: nil, publicOrigin: nil))
    }
}

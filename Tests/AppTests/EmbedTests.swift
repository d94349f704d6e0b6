import TestSupport
import Testing

@testable import App

/// Issue 19: a page of another origin, listed in `cors.allowedOrigins`, embeds the PC side with
/// `Public/js/tandem-client.js`. Its browser never sends Tandem's SameSite=Strict reader cookie, so it keeps the
/// `readerKey` that `POST /api/sessions` returned and sends it as `?key=` to the stream, the QR rotation and the cancel;
/// the module itself is imported cross-origin, which needs `Access-Control-Allow-Origin` on the static file.
@Suite(.timeLimit(.minutes(1)))
struct EmbedTests {
    static let kiosk = "http://kiosk.example:8000"
    static let crossSite: [(String, String)] = [("Origin", kiosk), ("Sec-Fetch-Site", "cross-site")]

    @Test func anAllowedOriginPairsWithTheReaderKeyAndNoCookie() async throws {
        try await withTandem({ $0.corsOrigins = Self.kiosk }) { _, client in
            let created = try await client.request("POST", "/api/sessions", headers: Self.crossSite, body: "")
            #expect(created.status == 201)
            #expect(created.header("access-control-allow-origin") == Self.kiosk)
            let body = try json(created)
            let id = try #require(body["sessionId"]?.string)
            let key = try #require(body["readerKey"]?.string)

            // The rotation and the stream, with the key and no cookie; a wrong key is refused as no key is.
            let pairing = try await client.request("GET", "/api/pairing?session=\(id)&key=\(key)", headers: Self.crossSite)
            #expect(pairing.status == 200)
            #expect(pairing.header("access-control-allow-origin") == Self.kiosk)
            #expect(try json(pairing)["token"]?.string?.isEmpty == false)
            let wrong = try await client.request("GET", "/api/pairing?session=\(id)&key=\(String(repeating: "0", count: 32))", headers: Self.crossSite)
            #expect(wrong.status == 403)
            #expect(try json(wrong)["code"]?.string == "reader_key_required")
            let stream = try await client.openEventStream("/api/events?session=\(id)&key=\(key)", headers: Self.crossSite)

            // The cancel: no key is 403, the key (a query, so a keepalive request needs no preflight) cancels.
            let refused = try await client.request("POST", "/api/cancel?session=\(id)", headers: Self.crossSite, body: "")
            #expect(refused.status == 403)
            #expect(try json(refused)["code"]?.string == "reader_key_required")
            let cancelled = try await client.request("POST", "/api/cancel?session=\(id)&key=\(key)", headers: Self.crossSite, body: "")
            #expect(cancelled.status == 200)
            #expect(cancelled.header("access-control-allow-origin") == Self.kiosk)
            let (events, _) = try await stream.all { $0.contains { $0.event == "cancelled" } }
            #expect(events.contains { $0.event == "cancelled" && $0.data == #"{"reason":"pc-cancelled"}"# })
            await stream.close()
        }
    }

    /// The module is an ES module: a cross-origin `import` is a CORS request, answered only for listed origins.
    @Test func theClientModuleIsServedWithCORSToAllowedOriginsOnly() async throws {
        try await withTandem({ $0.corsOrigins = Self.kiosk }) { _, client in
            let allowed = try await client.request("GET", "/js/tandem-client.js", headers: [("Origin", Self.kiosk)])
            #expect(allowed.status == 200)
            #expect(allowed.header("content-type")?.hasPrefix("text/javascript") == true)
            #expect(allowed.header("access-control-allow-origin") == Self.kiosk)
            let other = try await client.request("GET", "/js/tandem-client.js", headers: [("Origin", "https://evil.example")])
            #expect(other.status == 200)
            #expect(other.header("access-control-allow-origin") == nil)
            let refused = try await client.request("POST", "/api/sessions", headers: [("Origin", "https://evil.example"), ("Sec-Fetch-Site", "cross-site")], body: "")
            #expect(refused.status == 403)
            #expect(try json(refused)["code"]?.string == "cross_site_request")
        }
    }
}

import Foundation
import HTTP
import TestSupport
import Testing

@testable import App

/// Bad input and bad clients get a clear 4xx or a closed connection, cost bounded resources, and never stop the
/// server from serving others.
@Suite(.timeLimit(.minutes(1)))
struct HostileInputTests {
    @Test func everyResponseCarriesSecurityHeadersAndNoCORSByDefault() async throws {
        try await withTandem { _, client in
            for response in [
                try await client.request("GET", "/healthz", headers: [("Origin", "https://evil.example")]),
                try await client.request("GET", "/api/validate-session?session=nope"),
                try await client.request("GET", "/nothing"),
                try await client.post("/api/submit", json: "{"),
            ] {
                #expect(response.header("x-content-type-options") == "nosniff")
                #expect(response.header("referrer-policy") == "no-referrer")
                #expect(response.header("x-frame-options") == "DENY")
                #expect(response.header("content-security-policy")?.contains("frame-ancestors 'none'") == true)
                #expect(response.header("access-control-allow-origin") == nil)
            }
            #expect(try await client.request("OPTIONS", "/api/submit", headers: [("Origin", "https://evil.example")]).status == 405)
        }
    }

    @Test func configuredOriginsGetCORS() async throws {
        try await withTandem({ $0.corsOrigins = "https://kiosk.example" }) { _, client in
            let preflight = try await client.request(
                "OPTIONS", "/api/submit", headers: [("Origin", "https://kiosk.example"), ("Access-Control-Request-Method", "POST")])
            #expect(preflight.status == 204)
            #expect(preflight.header("access-control-allow-origin") == "https://kiosk.example")
            let other = try await client.request("GET", "/healthz", headers: [("Origin", "https://evil.example")])
            #expect(other.header("access-control-allow-origin") == nil)
        }
    }

    @Test func sessionCreationIsRateLimitedPerClientAddress() async throws {
        try await withTandem({
            $0.sessionsPerMinute = 3
            $0.trustedProxies = "127.0.0.1"
        }) { _, client in
            let alice = [("X-Forwarded-For", "203.0.113.7")]
            for _ in 0..<3 { #expect(try await client.request("POST", "/api/sessions", headers: alice).status == 201) }
            let refused = try await client.request("POST", "/api/sessions", headers: alice)
            #expect(refused.status == 429)
            #expect(try json(refused)["code"]?.string == "rate_limited")
            #expect(Int(refused.header("retry-after") ?? "") ?? 0 >= 1)
            // Another client behind the same trusted proxy has its own budget.
            #expect(try await client.request("POST", "/api/sessions", headers: [("X-Forwarded-For", "198.51.100.1, 203.0.113.9")]).status == 201)
        }
    }

    @Test func forwardedForFromAnUntrustedPeerIsIgnored() async throws {
        try await withTandem({ $0.requestsPerMinute = 2 }) { _, client in
            for index in 0..<2 {
                let response = try await client.request("GET", "/api/validate-session?session=x\(index)", headers: [("X-Forwarded-For", "10.0.0.\(index)")])
                #expect(response.status == 404)
            }
            let limited = try await client.request("GET", "/api/validate-session?session=y", headers: [("X-Forwarded-For", "10.9.9.9")])
            #expect(limited.status == 429)
            #expect(try json(limited)["valid"]?.bool == false)
        }
    }

    @Test func headOnTheEventStreamHasNoEffects() async throws {
        try await withTandem { _, client in
            let head = try await client.request("HEAD", "/api/events?session=sess_head_only")
            #expect(head.status == 200)
            #expect(head.header("content-type") == "text/event-stream")
            #expect(head.header("set-cookie") == nil)
            // No session was opened by it.
            #expect(try await client.request("GET", "/api/validate-session?session=sess_head_only").status == 404)
        }
    }

    @Test func aBodyThatTricklesInGets408() async throws {
        try await withTandem({ $0.requestTimeoutSeconds = 1 }) { _, client in
            let connection = try await TestConnection.connect(port: client.port)
            try await connection.send("POST /api/submit HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{")
            let started = ContinuousClock.now
            let response = try await connection.readResponse(timeout: .seconds(5))
            #expect(response.status == 408)
            #expect(response.header("x-frame-options") == "DENY")
            #expect(ContinuousClock.now - started < .seconds(3))
            #expect(await connection.isClosed(within: .seconds(2)))
            #expect(try await client.request("GET", "/healthz").status == 200)
        }
    }

    @Test func aHeaderSentAByteAtATimeIsCutOffByTheIdleTimeout() async throws {
        try await withTandem({ $0.idleTimeoutSeconds = 1 }) { _, client in
            let connection = try await TestConnection.connect(port: client.port)
            let started = ContinuousClock.now
            var closed = false
            for byte in "GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaa".utf8 {
                try? await connection.send(bytes: [byte])
                if await connection.isClosed(within: .milliseconds(200)) {
                    closed = true
                    break
                }
            }
            #expect(closed)
            #expect(ContinuousClock.now - started < .seconds(4))
            #expect(try await client.request("GET", "/healthz").status == 200)
        }
    }

    @Test func aConnectionFloodFromOneAddressIsCappedAndOthersAreStillServed() async throws {
        try await withTandem({ $0.maxConnectionsPerAddress = 20 }) { application, client in
            var held: [TestConnection] = []
            for _ in 0..<20 { held.append(try await TestConnection.connect(port: client.port)) }
            try await eventually { application.server.openConnections == 20 }
            var refused = 0
            for _ in 0..<30 {
                let extra = try await TestConnection.connect(port: client.port)
                if await extra.isClosed(within: .seconds(1)) { refused += 1 }
                await extra.close()
            }
            #expect(refused == 30)
            #expect(application.server.openConnections == 20)
            for connection in held { await connection.close() }
            try await eventually { application.server.openConnections == 0 }
            #expect(try await client.request("GET", "/healthz").status == 200)
        }
    }

    @Test func absurdRequestLinesAndHeadersAreRefused() async throws {
        try await withTandem { _, client in
            let longQuery = try await client.request("GET", "/api/validate-session?session=" + String(repeating: "a", count: 100_000))
            #expect([414, 431, 400].contains(longQuery.status))
            let manyHeaders = try await client.request("GET", "/healthz", headers: (0..<200).map { ("X-H\($0)", "v") })
            #expect(manyHeaders.status == 431)
            // Answers the HTTP layer writes itself carry the same security headers and error shape.
            #expect(manyHeaders.header("x-content-type-options") == "nosniff")
            #expect(manyHeaders.header("content-security-policy") != nil)
            #expect(try json(manyHeaders)["success"]?.bool == false)
            let badUTF8 = try await client.request(
                "POST", "/api/submit", headers: [("Content-Type", "application/json")],
                body: String(decoding: [0x7B, 0x22, 0x6E, 0x22, 0x3A, 0x22, 0xC3, 0x28, 0x22, 0x7D], as: UTF8.self))
            #expect(badUTF8.status == 400)
            #expect(try await client.request("GET", "/healthz").status == 200)
        }
    }

    /// The refusals the HTTP layer makes before routing are worded like every other answer: the stable code, the
    /// message in the request's language when its head was read (a body over the limit), in the node's default
    /// language when nothing could be read, the security headers, and the connection closed.
    @Test(arguments: [
        ("GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400, "malformed_request", "リクエストの形式が正しくありません（HTTP/1.1 として読み取れません）"),
        ("GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505, "http_version_not_supported", "HTTP/1.0 と HTTP/1.1 のみ対応しています"),
        ("POST /api/submit HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "transfer_coding_not_implemented", "転送コーディングは chunked のみ対応しています"),
    ])
    func unreadableRequestsAreAnsweredInTheNodesLanguage(request: String, status: Int, code: String, message: String) async throws {
        try await withTandem { _, client in
            let connection = try await TestConnection.connect(port: client.port)
            try await connection.send(request)
            let response = try await connection.readResponse(timeout: .seconds(5))
            #expect(response.status == status)
            #expect(response.header("x-frame-options") == "DENY")
            let body = try json(response)
            #expect(body["code"]?.string == code)
            #expect(body["message"]?.string == message)
            #expect(body["success"]?.bool == false)
            #expect(await connection.isClosed(within: .seconds(2)))
        }
        try await withTandem({ $0.defaultLanguage = .english }) { _, client in
            let connection = try await TestConnection.connect(port: client.port)
            try await connection.send(request)
            let body = try json(try await connection.readResponse(timeout: .seconds(5)))
            #expect(body["code"]?.string == code)
            #expect(body["message"]?.string == HTTPRefusal.allCases.first { $0.code == code }?.defaultMessage)
        }
    }

    @Test func aBodyOverTheLimitIsRefusedInTheRequestsLanguage() async throws {
        try await withTandem({ $0.maxBodyBytes = 1024 }) { _, client in
            for (language, message) in [("en", "The request body is too large."), ("ja", "リクエストが大きすぎます")] {
                let response = try await client.request(
                    "POST", "/api/submit", headers: [("Content-Type", "application/json"), ("Accept-Language", language)],
                    body: "{\"name\":\"" + String(repeating: "x", count: 4096) + "\"}")
                #expect(response.status == 413)
                #expect(try json(response)["code"]?.string == "body_too_large")
                #expect(try json(response)["message"]?.string == message)
                #expect(response.header("content-security-policy") != nil)
            }
        }
    }

    /// A generator of malformed HTTP and JSON, run for a bounded time: every answer is a 4xx or a closed
    /// connection, and a well-formed request between them is always served.
    @Test func fuzzedRequestsNeverCrashOrStallTheServer() async throws {
        try await withTandem({ $0.requestsPerMinute = 0; $0.sessionsPerMinute = 0 }) { _, client in
            var generator = SeededGenerator(seed: 0x7A4D_E11E)
            let valid = [
                "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
                "POST /api/submit HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 45\r\n\r\n{\"sessionId\":\"sess_x\",\"name\":\"a\",\"phone\":\"1\"}",
                "GET /api/validate-session?session=sess_x HTTP/1.1\r\nHost: t\r\n\r\n",
            ]
            // Until 60 mutated requests went out, or 12 s passed: a request left without an answer waits 300 ms,
            // so on a busy machine fewer fit in the time.
            let deadline = ContinuousClock.now + .seconds(12)
            var sent = 0
            var statuses: [Int: Int] = [:]
            while ContinuousClock.now < deadline, sent < 60 {
                var bytes = Array(valid[Int.random(in: 0..<valid.count, using: &generator)].utf8)
                for _ in 0..<Int.random(in: 1...6, using: &generator) {
                    Self.mutate(&bytes, using: &generator)
                }
                let connection = try await TestConnection.connect(port: client.port)
                try? await connection.send(bytes: bytes)
                if let response = try? await connection.readResponse(timeout: .milliseconds(300)) {
                    statuses[response.status, default: 0] += 1
                    #expect(response.status < 500, "a mutated request got \(response.status)")
                }
                await connection.close()
                sent += 1
                if sent.isMultiple(of: 25) {
                    #expect(try await client.request("GET", "/healthz").status == 200)
                }
            }
            #expect(sent >= 30, "only \(sent) mutated requests went out in 12 s")
            #expect(try await client.request("GET", "/healthz").status == 200)
        }
    }

    @Test func fuzzedJSONBodiesGetFourHundreds() async throws {
        try await withTandem({ $0.requestsPerMinute = 0 }) { _, client in
            var generator = SeededGenerator(seed: 42)
            let seeds = [#"{"sessionId":"sess_x","name":"山田","phone":"0312"}"#, #"{"sessionId":"sess_x"}"#, "[]", "null", "\"x\"", "1e999"]
            for _ in 0..<300 {
                var bytes = Array(seeds[Int.random(in: 0..<seeds.count, using: &generator)].utf8)
                for _ in 0..<Int.random(in: 0...4, using: &generator) { Self.mutate(&bytes, using: &generator) }
                let body = String(decoding: bytes, as: UTF8.self)
                let path = Bool.random(using: &generator) ? "/api/submit" : "/api/input-started"
                let response = try await client.post(path, json: body)
                #expect((400..<500).contains(response.status), "\(body) got \(response.status)")
                #expect(try json(response)["code"]?.string != nil)
            }
        }
    }

    private static func mutate(_ bytes: inout [UInt8], using generator: inout SeededGenerator) {
        let interesting: [UInt8] = [0, 0x0A, 0x0D, 0x20, 0x3A, 0x22, 0x7B, 0x7D, 0x25, 0xFF, 0xC3, 0x80]
        guard !bytes.isEmpty else {
            bytes.append(interesting.randomElement(using: &generator) ?? 0)
            return
        }
        let index = Int.random(in: 0..<bytes.count, using: &generator)
        switch Int.random(in: 0..<5, using: &generator) {
        case 0: bytes[index] = UInt8.random(in: 0...255, using: &generator)
        case 1: bytes.insert(interesting.randomElement(using: &generator) ?? 0, at: index)
        case 2: bytes.remove(at: index)
        case 3: bytes.insert(contentsOf: Array(repeating: bytes[index], count: Int.random(in: 1...300, using: &generator)), at: index)
        default: bytes.removeSubrange(index..<min(bytes.count, index + Int.random(in: 1...20, using: &generator)))
        }
    }
}

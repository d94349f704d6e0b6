import HTTP
import NIOCore
import NIOHTTP1
import PropertyBased
import Testing

@testable import App

/// The header values this round reads, for any text at all: never a trap, and accepted exactly when they should be.
@Suite struct RequestValuePropertyTests {
    static let anyText = Gen.oneOf(
        Gen.character(in: "\u{20}"..."\u{7E}").string(of: 0...80),
        Gen.character(in: "\u{0}"..."\u{FF}").string(of: 0...80),
        Gen.character(in: "\u{3000}"..."\u{30FF}").string(of: 0...10)
    )

    @Test func anIdempotencyKeyIsOneTo64VisibleASCIICharacters() async {
        await propertyCheck(count: 1000, input: Self.anyText) { text in
            let request = Request(method: .POST, uri: "/api/submit", headers: ["Idempotency-Key": text])
            let expected = (1...64).contains(text.utf8.count) && text.utf8.allSatisfy { (0x21...0x7E).contains($0) }
            let accepted = (try? API.idempotencyKey(of: request)) != nil
            #expect(accepted == expected, "\(text.debugDescription)")
        }
        #expect((try? API.idempotencyKey(of: Request(method: .POST, uri: "/"))) == .some(nil), "absent: no key, no error")
    }

    /// `X-Forwarded-Proto` counts only from a trusted proxy, and only its last hop saying exactly https.
    @Test func onlyATrustedProxysLastHopSayingHTTPSMakesTheCookieSecure() async throws {
        var trusting = TandemConfiguration()
        trusting.trustedProxies = "127.0.0.1"
        let peer = try SocketAddress(ipAddress: "127.0.0.1", port: 4000)
        let stranger = try SocketAddress(ipAddress: "10.1.2.3", port: 4000)
        await propertyCheck(count: 1000, input: Self.anyText) { text in
            let trusted = Request(method: .GET, uri: "/", headers: ["X-Forwarded-Proto": text], remoteAddress: peer)
            let untrusted = Request(method: .GET, uri: "/", headers: ["X-Forwarded-Proto": text], remoteAddress: stranger)
            let lastHop = text.split(separator: ",", omittingEmptySubsequences: false).last.map { $0.trimmingSpaces().lowercased() }
            #expect(API.isSecure(trusted, configuration: trusting) == (lastHop == "https"), "\(text.debugDescription)")
            #expect(!API.isSecure(untrusted, configuration: trusting))
        }
        for (value, secure) in [("https", true), ("http, https", true), ("https, http", false), ("https,", false), (" HTTPS ", true)] {
            let request = Request(method: .GET, uri: "/", headers: ["X-Forwarded-Proto": value], remoteAddress: peer)
            #expect(API.isSecure(request, configuration: trusting) == secure, "\(value)")
        }
    }
}

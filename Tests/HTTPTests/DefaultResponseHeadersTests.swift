@testable import HTTP
import NIOCore
import NIOHTTP1
import PropertyBased
import Testing

/// The headers the HTTP layer adds to every response head (the app's security headers).
@Suite struct DefaultResponseHeadersTests {
    private let defaults = try! DefaultResponseHeaders([
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", "default-src 'none'"),
        ("Referrer-Policy", "no-referrer"),
    ])

    private func head(_ headers: HTTPHeaders, defaults: DefaultResponseHeaders) throws -> String {
        var buffer = ByteBuffer()
        try HTTP1ResponseHead.write(
            status: .ok, headers: headers, defaults: defaults, framing: .contentLength(0), keepAlive: true,
            requestMinorVersion: 1, into: &buffer)
        return String(buffer: buffer)
    }

    @Test func aResponseWithoutThemGetsEveryOneInOrder() throws {
        let text = try head(["Content-Type": "text/plain"], defaults: defaults)
        #expect(
            text == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Frame-Options: DENY\r\n"
                + "Content-Security-Policy: default-src 'none'\r\nReferrer-Policy: no-referrer\r\nContent-Length: 0\r\n\r\n")
    }

    @Test func aResponsesOwnHeaderReplacesTheDefaultOfTheSameNameInAnyCase() throws {
        let text = try head(["content-security-policy": "default-src 'self'"], defaults: defaults)
        #expect(text.contains("content-security-policy: default-src 'self'\r\n"))
        #expect(!text.contains("default-src 'none'"))
        #expect(text.contains("X-Frame-Options: DENY\r\n"))
        #expect(text.contains("Referrer-Policy: no-referrer\r\n"))
    }

    @Test func noneAddsNothing() throws {
        #expect(try head([:], defaults: .none) == "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    }

    @Test func invalidHeadersAreRefusedWhenConfigured() {
        #expect(throws: DefaultResponseHeaders.Invalid.self) { try DefaultResponseHeaders([("Bad Name", "x")]) }
        #expect(throws: DefaultResponseHeaders.Invalid.self) { try DefaultResponseHeaders([("X-A", "a\r\nSet-Cookie: b")]) }
        #expect(throws: DefaultResponseHeaders.Invalid.self) { try DefaultResponseHeaders([("", "x")]) }
        // The server writes its own framing headers; a default one would be a second.
        for name in ["Content-Length", "transfer-encoding", "CONNECTION"] {
            #expect(throws: DefaultResponseHeaders.Invalid.self) { try DefaultResponseHeaders([(name, "1")]) }
        }
        let many = (0...64).map { (name: "X-H\($0)", value: "v") }
        #expect(throws: DefaultResponseHeaders.Invalid.self) { try DefaultResponseHeaders(many) }
    }

    @Test func aNameGivenTwiceIsWrittenOnce() throws {
        let twice = try DefaultResponseHeaders([("X-A", "1"), ("x-a", "2")])
        #expect(try head([:], defaults: twice) == "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n")
    }

    /// Whatever names a response sets, each default header appears exactly when the response has no header of its name.
    @Test func eachDefaultAppearsExactlyWhenNotOverridden() async {
        let names = ["x-frame-options", "X-FRAME-OPTIONS", "Content-Security-Policy", "referrer-policy", "X-Other", "Content-Type"]
        await propertyCheck(count: 300, input: Gen.int(in: 0...63)) { mask in
            var headers = HTTPHeaders()
            for (index, name) in names.enumerated() where mask & (1 << index) != 0 { headers.add(name: name, value: "mine") }
            let text = try! head(headers, defaults: defaults).lowercased()
            for (name, value) in [("x-frame-options", "deny"), ("content-security-policy", "default-src 'none'"), ("referrer-policy", "no-referrer")] {
                let overridden = headers.contains(name: name)
                #expect(text.contains("\(name): \(value)\r\n") == !overridden)
                let lines = text.split(separator: "\r\n").filter { $0.hasPrefix("\(name): ") }
                #expect(lines.count == (overridden ? headers[name].count : 1))
            }
        }
    }
}

@testable import HTTP
import NIOCore
import NIOHTTP1
import Testing

/// One request as the parser delivered it: its head, its `.body` parts concatenated, and whether `.end` came.
private struct Parsed: Equatable {
    var method: HTTPMethod
    var uri: String
    var version: HTTPVersion
    var headers: HTTPHeaders
    var isKeepAlive: Bool
    var expectsContinue: Bool
    var contentLength: Int?
    var body = ""
    var ended = false

    init(_ head: HTTP1RequestHead) {
        method = head.method
        uri = head.uri
        version = head.version
        headers = head.headers
        isKeepAlive = head.isKeepAlive
        expectsContinue = head.expectsContinue
        contentLength = head.contentLength
    }
}

private struct Outcome: Equatable {
    var requests: [Parsed]
    var isBetweenRequests: Bool
    var unreadBytes: Int
}

/// Feeds `pieces` one after another into one accumulating buffer, calling `next` until nil after each.
private func parse(pieces: [[UInt8]], maximumHeadBytes: Int = 8192, maximumHeaderCount: Int = 100) throws(HTTP1ParseError) -> Outcome {
    var parser = HTTP1RequestParser(maximumHeadBytes: maximumHeadBytes, maximumHeaderCount: maximumHeaderCount)
    var buffer = ByteBuffer()
    var requests: [Parsed] = []
    for piece in pieces {
        buffer.writeBytes(piece)
        while let part = try parser.next(from: &buffer) {
            if case .head(let head) = part {
                requests.append(Parsed(head))
                continue
            }
            guard !requests.isEmpty else {
                Issue.record("\(part) before any head")
                continue
            }
            switch part {
            case .head: break
            case .body(let body): requests[requests.count - 1].body += String(buffer: body)
            case .end: requests[requests.count - 1].ended = true
            }
        }
    }
    return Outcome(requests: requests, isBetweenRequests: parser.isBetweenRequests, unreadBytes: buffer.readableBytes)
}

private func parse(_ text: String, maximumHeadBytes: Int = 8192, maximumHeaderCount: Int = 100) throws(HTTP1ParseError) -> Outcome {
    try parse(pieces: [Array(text.utf8)], maximumHeadBytes: maximumHeadBytes, maximumHeaderCount: maximumHeaderCount)
}

private func parseByteByByte(_ text: String, maximumHeadBytes: Int = 8192) throws(HTTP1ParseError) -> Outcome {
    try parse(pieces: text.utf8.map { [$0] }, maximumHeadBytes: maximumHeadBytes)
}

/// A request with `line` as its request line and `fields` as its header lines, and no body.
/// A request head; an HTTP/1.1 one gets the `Host` it must have unless `fields` name one.
private func request(_ line: String = "GET / HTTP/1.1", _ fields: [String] = []) -> String {
    let needsHost = line.hasSuffix("HTTP/1.1") && !fields.contains { $0.lowercased().hasPrefix("host:") }
    return ([line] + (needsHost ? ["Host: a"] : []) + fields).map { $0 + "\r\n" }.joined() + "\r\n"
}

@Suite struct HTTP1RequestParserTests {
    static let post = "POST /submit HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\nhello world"
    static let chunked = "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        + "5;name=value\r\nhello\r\n6 ; ext\r\n world\r\n0\r\nX-Checksum: abc\r\nX-Other: d\r\n\r\n"

    @Test func simpleGet() throws {
        let outcome = try parse("GET /path?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n")
        #expect(outcome.requests.count == 1)
        let get = try #require(outcome.requests.first)
        #expect(get.method == .GET)
        #expect(get.uri == "/path?q=1")
        #expect(get.version == .http1_1)
        #expect(get.headers["host"] == ["example.com"])
        #expect(get.headers["Accept"] == ["*/*"])
        #expect(get.isKeepAlive)
        #expect(!get.expectsContinue)
        #expect(get.contentLength == 0)
        #expect(get.body == "")
        #expect(outcome.isBetweenRequests)
        #expect(outcome.unreadBytes == 0)
    }

    @Test func postWithContentLength() throws {
        let outcome = try parse(Self.post)
        let post = try #require(outcome.requests.first)
        #expect(outcome.requests.count == 1)
        #expect(post.method == .POST)
        #expect(post.uri == "/submit")
        #expect(post.contentLength == 11)
        #expect(post.body == "hello world")
        #expect(outcome.isBetweenRequests)
        #expect(outcome.unreadBytes == 0)

        let partial = try parse(String(Self.post.dropLast(3)))
        #expect(partial.requests.first?.body == "hello wo")
        #expect(!partial.isBetweenRequests)
    }

    @Test func postArrivingByteByByte() throws {
        let whole = try parse(Self.post)
        let pieces = try parseByteByByte(Self.post)
        #expect(pieces == whole)
        #expect(pieces.requests.first?.body == "hello world")
    }

    @Test func twoPipelinedRequests() throws {
        let outcome = try parse("GET /a HTTP/1.1\r\nHost: a\r\n\r\n" + Self.post)
        #expect(outcome.requests.map(\.uri) == ["/a", "/submit"])
        #expect(outcome.requests.map(\.method) == [.GET, .POST])
        #expect(outcome.requests.map(\.body) == ["", "hello world"])
        #expect(outcome.isBetweenRequests)
        #expect(outcome.unreadBytes == 0)
    }

    @Test func headSplitAtEveryPosition() throws {
        let bytes = Array(request("DELETE /items/7 HTTP/1.1", ["Host: a", "X-Long-Header: some value", "Connection: close"]).utf8)
        let whole = try parse(pieces: [bytes])
        #expect(whole.requests.first?.uri == "/items/7")
        #expect(whole.requests.first?.isKeepAlive == false)
        for split in 0...bytes.count {
            #expect(try parse(pieces: [Array(bytes[..<split]), Array(bytes[split...])]) == whole, "split at \(split)")
        }
    }

    @Test func chunkedBodyWithExtensionsAndTrailers() throws {
        let outcome = try parse(Self.chunked + "GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(outcome.requests.count == 2)
        let upload = try #require(outcome.requests.first)
        #expect(upload.contentLength == nil)
        #expect(upload.body == "hello world")
        #expect(upload.ended)
        #expect(outcome.requests.last?.uri == "/next")
        #expect(outcome.isBetweenRequests)
        #expect(outcome.unreadBytes == 0)
    }

    @Test func chunkedBodyArrivingByteByByte() throws {
        let whole = try parse(Self.chunked)
        #expect(try parseByteByByte(Self.chunked) == whole)
        #expect(whole.requests.first?.body == "hello world")
    }

    @Test func zeroLengthChunkedBody() throws {
        let outcome = try parse(request("POST / HTTP/1.1", ["Transfer-Encoding: CHUNKED"]) + "0\r\n\r\n")
        let empty = try #require(outcome.requests.first)
        #expect(empty.contentLength == nil)
        #expect(empty.body == "")
        #expect(empty.ended)
        #expect(outcome.isBetweenRequests)
        #expect(outcome.unreadBytes == 0)
    }

    /// `.end` closes every request, however its body is framed (or when it has none), as `.end` does for a chunked one.
    @Test(arguments: [request(), Self.post, Self.chunked])
    func everyRequestEndsWithEnd(_ text: String) throws {
        let outcome = try parse(text)
        #expect(outcome.requests.count == 1)
        #expect(outcome.requests.first?.ended == true)
    }

    @Test(arguments: [
        ("HTTP/1.1", nil, true), ("HTTP/1.1", "close", false), ("HTTP/1.1", "Close", false),
        ("HTTP/1.0", nil, false), ("HTTP/1.0", "keep-alive", true), ("HTTP/1.0", "Keep-Alive", true),
        ("HTTP/1.1", "Keep-Alive, Upgrade", true), ("HTTP/1.1", "Upgrade, close", false),
        ("HTTP/1.0", "Upgrade,Keep-Alive", true), ("HTTP/1.0", "keep-alive, close", false),
    ] as [(String, String?, Bool)])
    func keepAlive(version: String, connection: String?, expected: Bool) throws {
        let outcome = try parse(request("GET / \(version)", ["Host: a"] + (connection.map { ["Connection: \($0)"] } ?? [])))
        #expect(outcome.requests.first?.isKeepAlive == expected)
    }

    @Test(arguments: [
        ("HTTP/1.1", "100-continue", true), ("HTTP/1.1", "100-Continue", true), ("HTTP/1.1", "100-CONTINUE", true),
        ("HTTP/1.0", "100-continue", false), ("HTTP/1.1", "200-ok", false),
    ])
    func expectContinue(version: String, expect: String, expected: Bool) throws {
        let outcome = try parse(request("PUT / \(version)", ["Expect: \(expect)", "Content-Length: 0"]))
        #expect(outcome.requests.first?.expectsContinue == expected)
    }

    @Test func leadingEmptyLinesAreSkipped() throws {
        let text = "\r\n\r\n" + request("GET /after HTTP/1.1")
        let whole = try parse(text)
        #expect(whole.requests.map(\.uri) == ["/after"])
        #expect(try parseByteByByte(text) == whole)
    }

    @Test(arguments: [
        "GET /", "GET", "GET / ", " / HTTP/1.1", "/ HTTP/1.1", "GET  / HTTP/1.1", "GET / HTTP/1.1 ", "GET /a b HTTP/1.1",
        "GET /a\tb HTTP/1.1", "GET /a\u{01} HTTP/1.1", "GET /a\u{7F} HTTP/1.1", "GET /café HTTP/1.1", "GET / http/1.1",
        "GET / HTTP/1", "GET / HTTP/1.10", "GET / HTTP/A.1", "GE\u{7F}T / HTTP/1.1",
    ])
    func malformedRequestLine(_ line: String) {
        #expect(throws: HTTP1ParseError.malformed) { try parse(request(line)) }
    }

    @Test(arguments: ["HTTP/2.0", "HTTP/0.9", "HTTP/3.1"])
    func unsupportedVersion(_ version: String) {
        #expect(throws: HTTP1ParseError.unsupportedVersion) { try parse(request("GET / \(version)")) }
    }

    /// A later minor version is served as HTTP/1.1 (RFC 9110 §2.5).
    @Test func laterMinorVersionIsServedAsHTTP11() throws {
        let outcome = try parse("GET / HTTP/1.2\r\nHost: a\r\n\r\n")
        #expect(outcome.requests.first?.version == .http1_1)
    }

    /// HTTP/1.1 requires exactly one Host (RFC 9112 §3.2); HTTP/1.0 may omit it.
    @Test func hostIsRequiredOnceInHTTP11() throws {
        #expect(throws: HTTP1ParseError.malformed) { try parse("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n") }
        #expect(throws: HTTP1ParseError.malformed) { try parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") }
        #expect(try parse("GET / HTTP/1.0\r\n\r\n").requests.count == 1)
        #expect(try parse("GET / HTTP/1.1\r\nhOsT: a\r\n\r\n").requests.count == 1)
    }

    @Test(arguments: [
        "Host : a", "Host\t: a", ": a", "No-Colon", " Folded: x", "X-A: b\r\n continued", "X-A: b\r\n\tcontinued",
        "X-A: a\u{0}b", "X-A: a\rb", "X-A: a\nb", "X-A: a\r", "X-A: a\u{7F}",
    ])
    func malformedHeaderLine(_ field: String) {
        #expect(throws: HTTP1ParseError.malformed) { try parse(request("GET / HTTP/1.1", ["Host: a", field])) }
    }

    @Test(arguments: [
        ["Content-Length: abc"], ["Content-Length: -5"], ["Content-Length: +5"], ["Content-Length: 5 5"],
        ["Content-Length: 0x5"], ["Content-Length:"], ["Content-Length: 5, 6"], ["Content-Length: 1234567890123456789"],
        ["Content-Length: 5", "Content-Length: 6"],
    ])
    func invalidContentLength(_ fields: [String]) {
        #expect(throws: HTTP1ParseError.malformed) { try parse(request("POST / HTTP/1.1", fields) + "hello") }
    }

    @Test(arguments: [["Content-Length: 5", "Content-Length: 5"], ["Content-Length: 5, 5"], ["content-length:  5 "]])
    func agreeingContentLengths(_ fields: [String]) throws {
        let outcome = try parse(request("POST / HTTP/1.1", fields) + "hello")
        #expect(outcome.requests.first?.contentLength == 5)
        #expect(outcome.requests.first?.body == "hello")
    }

    @Test(arguments: [
        (["Transfer-Encoding: gzip, chunked"], "HTTP/1.1", HTTP1ParseError.unsupportedTransferCoding),
        (["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"], "HTTP/1.1", .unsupportedTransferCoding),
        (["Transfer-Encoding: chunked, gzip"], "HTTP/1.1", .malformed),
        (["Transfer-Encoding: gzip"], "HTTP/1.1", .malformed),
        (["Transfer-Encoding: chunked, chunked"], "HTTP/1.1", .malformed),
        (["Transfer-Encoding: chunked", "Content-Length: 5"], "HTTP/1.1", .malformed),
        (["Content-Length: 5", "Transfer-Encoding: chunked"], "HTTP/1.1", .malformed),
        (["Content-Length: 5", "Transfer-Encoding: "], "HTTP/1.1", .malformed),
        (["Transfer-Encoding: "], "HTTP/1.1", .malformed),
        (["Transfer-Encoding: chunked"], "HTTP/1.0", .malformed),
    ])
    func refusedTransferEncoding(fields: [String], version: String, error: HTTP1ParseError) {
        #expect(throws: error) { try parse(request("POST / \(version)", fields)) }
    }

    @Test(arguments: ["xyz", "", " 5", "5\n", "-1", "1234567890abcdef", "5;ext\u{01}"])
    func badChunkSize(_ line: String) {
        let text = request("POST / HTTP/1.1", ["Transfer-Encoding: chunked"]) + line + "\r\nhello\r\n0\r\n\r\n"
        #expect(throws: HTTP1ParseError.malformed) { try parse(text) }
    }

    @Test(arguments: ["5\r\nhelloXX0\r\n\r\n", "5\r\nhello\n0\r\n\r\n", "5\r\nhello!\r\n0\r\n\r\n"])
    func chunkDataNotFollowedByCRLF(_ body: String) {
        #expect(throws: HTTP1ParseError.malformed) {
            try parse(request("POST / HTTP/1.1", ["Transfer-Encoding: chunked"]) + body)
        }
    }

    /// Without its blank line, a head is refused once the buffer exceeds the limit plus a partial blank line (3 bytes).
    @Test func incompleteHeadLargerThanLimit() throws {
        let start = "GET / HTTP/1.0\r\nX: " + String(repeating: "a", count: 67 - 19)
        #expect(start.utf8.count == 67)
        let waiting = try parse(start, maximumHeadBytes: 64)
        #expect(waiting.requests.isEmpty)
        #expect(waiting.unreadBytes == 67)
        #expect(throws: HTTP1ParseError.headTooLarge) { try parse(start + "a", maximumHeadBytes: 64) }
        #expect(throws: HTTP1ParseError.headTooLarge) { try parse(String(repeating: "a", count: 10_000), maximumHeadBytes: 64) }
    }

    @Test func completeHeadLargerThanLimit() throws {
        let head = "GET / HTTP/1.0\r\nX: " + String(repeating: "a", count: 64 - 19)
        #expect(try parse(head + "\r\n\r\n", maximumHeadBytes: 64).requests.count == 1)
        #expect(throws: HTTP1ParseError.headTooLarge) { try parse(head + "a\r\n\r\n", maximumHeadBytes: 64) }
    }

    /// A head the limit allows when it arrives at once is allowed when it arrives in pieces.
    @Test func headOfExactlyTheLimitArrivingByteByByte() throws {
        let head = "GET / HTTP/1.0\r\nX: " + String(repeating: "a", count: 64 - 19)
        let outcome = try parseByteByByte(head + "\r\n\r\n", maximumHeadBytes: 64)
        #expect(outcome.requests.first?.headers["X"] == [String(repeating: "a", count: 45)])
    }

    @Test func tooManyHeaders() throws {
        let three = ["Host: a", "B: 2", "C: 3"]
        #expect(try parse(request("GET / HTTP/1.1", three), maximumHeaderCount: 3).requests.first?.headers.count == 3)
        #expect(throws: HTTP1ParseError.headTooLarge) {
            try parse(request("GET / HTTP/1.1", three + ["D: 4"]), maximumHeaderCount: 3)
        }
    }

    @Test func trailersLargerThanLimit() throws {
        let head = request("POST / HTTP/1.1", ["Transfer-Encoding: chunked"]) + "5\r\nhello\r\n0\r\n"
        let line = "X-T: " + String(repeating: "t", count: 25)
        #expect(try parse(head + line + "\r\n" + line + "\r\n\r\n", maximumHeadBytes: 64).requests.first?.ended == true)
        #expect(throws: HTTP1ParseError.headTooLarge) {
            try parse(head + line + "\r\n" + line + "\r\n" + line + "\r\n\r\n", maximumHeadBytes: 64)
        }
        #expect(throws: HTTP1ParseError.headTooLarge) {
            try parse(head + String(repeating: "t", count: 65), maximumHeadBytes: 64)
        }
    }
}

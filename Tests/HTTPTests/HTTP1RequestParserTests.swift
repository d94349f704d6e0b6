@testable import HTTP
import NIOCore
import NIOHTTP1
import PropertyBased
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
    var asksUpgrade: Bool
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
        asksUpgrade = head.asksUpgrade
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

    /// Lines ended by a bare LF are refused as soon as the LF arrives, not waited on until the idle timeout.
    @Test(arguments: [
        "GET /healthz HTTP/1.1\nHost: x\n\n", "GET / HTTP/1.1\r\nHost: x\n\r\n", "GET / HTTP/1.1\r\nHost: x\r\n\n",
        "\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ])
    func bareLineFeedsAreRefusedAtOnce(_ text: String) {
        #expect(throws: HTTP1ParseError.malformed) { try parse(text) }
        #expect(throws: HTTP1ParseError.malformed) { try parseByteByByte(text) }
        // Before the head is complete: the refusal does not wait for a blank line.
        let firstLF = text.utf8.firstIndex(of: 0x0A)!
        let upToIt = String(decoding: text.utf8[...firstLF], as: UTF8.self)
        if !upToIt.hasSuffix("\r\n") { #expect(throws: HTTP1ParseError.malformed) { try parse(upToIt) } }
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

/// Every split of `text` into two pieces parses as `text` does whole (or fails with the same error).
private func expectSameAtEverySplit(_ text: String, maximumHeadBytes: Int = 8192, sourceLocation: SourceLocation = #_sourceLocation) {
    let bytes = Array(text.utf8)
    let whole = Result { () throws(HTTP1ParseError) in try parse(pieces: [bytes], maximumHeadBytes: maximumHeadBytes) }
    for split in 0...bytes.count {
        let pieces = Result { () throws(HTTP1ParseError) in
            try parse(pieces: [Array(bytes[..<split]), Array(bytes[split...])], maximumHeadBytes: maximumHeadBytes)
        }
        #expect(pieces == whole, "split at \(split)", sourceLocation: sourceLocation)
    }
}

private func expectMalformedAtEverySplit(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(throws: HTTP1ParseError.malformed, sourceLocation: sourceLocation) { try parse(text) }
    expectSameAtEverySplit(text, sourceLocation: sourceLocation)
}

private let chunkedHead = request("POST / HTTP/1.1", ["Transfer-Encoding: chunked"])

/// Issue 14, item 8: the leniencies the parser no longer has.
extension HTTP1RequestParserTests {
    // MARK: Trailers

    /// Trailer lines are held to the rules of header lines: a request after the last chunk, or anything else that is
    /// no field line, is refused instead of being swallowed as trailers.
    @Test(arguments: [
        "GET / HTTP/1.1\r\nHost: x\r\n", "No-Colon\r\n", "X-A: a\u{0}b\r\n", " Folded: x\r\n", "X-A: b\r\n continued\r\n",
        "X-A: b\r\n\tcontinued\r\n", "Bad Name: x\r\n", ": x\r\n", "X-A : x\r\n", "X-A: a\u{7F}\r\n", "X-A: a\rb\r\n",
        "X-A: a\nb\r\n", "X-A: a\u{1B}\r\n",
    ])
    func malformedTrailerLine(_ lines: String) {
        expectMalformedAtEverySplit(chunkedHead + "5\r\nhello\r\n0\r\n" + lines + "\r\n")
    }

    @Test func validTrailersAtEverySplit() throws {
        let trailers = "X-Checksum: abc\r\nx-empty:\r\nX-Tab:\tv a\u{80}\t\r\n\r\n"
        let text = chunkedHead + "5\r\nhello\r\n0\r\n" + trailers + request("GET /next HTTP/1.1")
        let outcome = try parse(text)
        #expect(outcome.requests.map(\.body) == ["hello", ""])
        #expect(outcome.requests.map(\.ended) == [true, true])
        expectSameAtEverySplit(text)
    }

    /// Trailer fields count against the header count limit as header fields do (431).
    @Test func tooManyTrailers() throws {
        let body = "5\r\nhello\r\n0\r\n" + (0..<3).map { "T\($0): v\r\n" }.joined() + "\r\n"
        #expect(try parse(chunkedHead + body, maximumHeaderCount: 3).requests.first?.ended == true)
        let more = "5\r\nhello\r\n0\r\n" + (0..<4).map { "T\($0): v\r\n" }.joined() + "\r\n"
        #expect(throws: HTTP1ParseError.headTooLarge) { try parse(chunkedHead + more, maximumHeaderCount: 3) }
    }

    // MARK: Chunk sizes

    @Test(arguments: [
        "11 zz", "5 zz", "5 ", "5\t", "5;", "5; ", "5;=x", "5;a=", "5;a= ", "5;a=b c", "5;a b", "5;a=\"x\" y", "5;a=\"unterminated",
        "5;a=\"\u{01}\"", "5;a=\"x\\\u{01}\"", "5 5", "5;a;", "5,a", "0x5", "5;a=b;", "5;a=b=c", "5;a\u{7F}", "5 ;", "5;a=\"x\"\"",
        String(repeating: "f", count: 16), String(repeating: "f", count: 40), "1" + String(repeating: "0", count: 15),
    ])
    func chunkSizeWithJunkOrTooManyDigits(_ line: String) {
        expectMalformedAtEverySplit(chunkedHead + line + "\r\nhello\r\n0\r\n\r\n")
    }

    /// Chunk extensions in the grammar of RFC 9112 §7.1.1, with whitespace around `;` and `=`, are allowed and ignored;
    /// leading zeros do not count against the digit limit.
    @Test(arguments: [
        "5;a", "5 ; a", "5 ; a = b", "5\t;\ta\t=\t\"x\"", "5;a=\"q\\\"uoted; x=y\"", "5;a=\"\";b;c=d", "0005;a=b;c", "5;a=\"\u{80}\"",
        String(repeating: "0", count: 40) + "5", "00000000000000000000005",
    ])
    func chunkSizeWithExtensions(_ line: String) throws {
        let text = chunkedHead + line + "\r\nhello\r\n0;last=1\r\n\r\n"
        #expect(try parse(text).requests.first?.body == "hello")
        expectSameAtEverySplit(text)
    }

    // MARK: Content-Length

    @Test func contentLengthWithLeadingZeros() throws {
        let outcome = try parse(request("POST / HTTP/1.1", ["Content-Length: " + String(repeating: "0", count: 30) + "5"]) + "hello")
        #expect(outcome.requests.first?.contentLength == 5)
        #expect(outcome.requests.first?.body == "hello")
        #expect(try parse(request("POST / HTTP/1.1", ["Content-Length: 000"])).requests.first?.contentLength == 0)
        #expect(throws: HTTP1ParseError.malformed) {
            try parse(request("POST / HTTP/1.1", ["Content-Length: " + String(repeating: "9", count: 40)]))
        }
    }

    // MARK: Upgrade

    /// An `Upgrade` is never granted, and what follows such a request may be another protocol: the parser gives the
    /// request (body included) and then nothing more, however the bytes arrive.
    @Test(arguments: [
        request("GET /chat HTTP/1.1", ["Upgrade: websocket", "Connection: Upgrade"]),
        request("POST /up HTTP/1.1", ["Upgrade: h2c", "Content-Length: 5"]) + "hello",
        request("POST /up HTTP/1.1", ["Transfer-Encoding: chunked", "Upgrade: x"]) + "5\r\nhello\r\n0\r\n\r\n",
        request("GET / HTTP/1.0", ["Upgrade: websocket", "Connection: keep-alive"]),
    ])
    func nothingIsParsedAfterARequestWithUpgrade(_ upgrade: String) throws {
        let after = request("GET /smuggled HTTP/1.1")
        let outcome = try parse(upgrade + after)
        #expect(outcome.requests.count == 1)
        let first = try #require(outcome.requests.first)
        #expect(first.asksUpgrade)
        #expect(!first.isKeepAlive)
        #expect(first.ended)
        #expect(!outcome.isBetweenRequests)
        #expect(outcome.unreadBytes == after.utf8.count)
        expectSameAtEverySplit(upgrade + after)
    }

    @Test func withoutUpgradeTheNextRequestIsParsed() throws {
        let outcome = try parse(request("GET / HTTP/1.1", ["Connection: Upgrade"]) + request("GET /next HTTP/1.1"))
        #expect(outcome.requests.map(\.uri) == ["/", "/next"])
        #expect(outcome.requests.map(\.asksUpgrade) == [false, false])
    }

    // MARK: Request targets

    /// Absolute form (RFC 9112 §3.2.2): path and query from the target, and its authority in place of `Host`.
    @Test(arguments: [
        ("GET http://example.com:8080/path?q=1 HTTP/1.1", ["Host: other"], "/path?q=1", "example.com:8080"),
        ("GET HTTP://Example.com/ HTTP/1.1", ["Host: example.com"], "/", "Example.com"),
        ("GET https://h HTTP/1.1", ["Host: h"], "/", "h"),
        ("GET hTtPs://h?x=1 HTTP/1.1", ["Host: h"], "/?x=1", "h"),
        ("POST http://[::1]:80/a/b HTTP/1.1", ["hOsT: x", "Content-Length: 0"], "/a/b", "[::1]:80"),
        ("GET http://h.example:/ HTTP/1.1", ["Host: x"], "/", "h.example:"),
        ("GET http://a%2Db.example/x HTTP/1.1", ["Host: x"], "/x", "a%2Db.example"),
        ("GET http://h/p HTTP/1.0", [], "/p", "h"),
        ("GET http://h/p HTTP/1.0", ["Host: x"], "/p", "h"),
    ] as [(String, [String], String, String)])
    func absoluteFormTarget(line: String, fields: [String], uri: String, host: String) throws {
        let text = request(line, fields)
        let outcome = try parse(text)
        let parsed = try #require(outcome.requests.first)
        #expect(parsed.uri == uri)
        #expect(parsed.headers["host"] == [host])
        #expect(parsed.headers.count == max(fields.count, 1))
        expectSameAtEverySplit(text)
    }

    @Test(arguments: [
        "GET ftp://h/ HTTP/1.1", "GET httpx://h/ HTTP/1.1", "GET http:/h/ HTTP/1.1", "GET http:h/ HTTP/1.1", "GET http:// HTTP/1.1",
        "GET http:///path HTTP/1.1", "GET http://user@h/ HTTP/1.1", "GET http://u:p@h/ HTTP/1.1", "GET http://h:8x/ HTTP/1.1",
        "GET http://h:80:80/ HTTP/1.1", "GET http://[::1/ HTTP/1.1", "GET http://[]/ HTTP/1.1", "GET http://h%zz/ HTTP/1.1",
        "GET http://h#f/ HTTP/1.1", "GET mailto:a@b HTTP/1.1", "GET * HTTP/1.1", "POST * HTTP/1.1", "GET example.com:80 HTTP/1.1",
        "GET h/ HTTP/1.1", "GET ?q HTTP/1.1", "CONNECT / HTTP/1.1", "CONNECT h HTTP/1.1", "CONNECT h: HTTP/1.1",
        "CONNECT http://h:80/ HTTP/1.1",
    ])
    func targetInNoFormIsRefused(_ line: String) {
        expectMalformedAtEverySplit(request(line, ["Host: h"]))
    }

    /// An absolute-form target does not excuse an HTTP/1.1 request from sending exactly one `Host` (RFC 9112 §3.2).
    @Test func absoluteFormStillNeedsOneHostInHTTP11() {
        #expect(throws: HTTP1ParseError.malformed) { try parse("GET http://h/ HTTP/1.1\r\n\r\n") }
        #expect(throws: HTTP1ParseError.malformed) { try parse("GET http://h/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") }
    }

    /// Asterisk form for OPTIONS and authority form for CONNECT are passed on as before.
    @Test func asteriskAndAuthorityForms() throws {
        #expect(try parse(request("OPTIONS * HTTP/1.1")).requests.first?.uri == "*")
        #expect(try parse(request("CONNECT example.com:443 HTTP/1.1")).requests.first?.uri == "example.com:443")
        #expect(try parse(request("CONNECT [::1]:443 HTTP/1.1")).requests.first?.uri == "[::1]:443")
    }

    // MARK: Properties

    /// Any run of digits as Content-Length, leading zeros and hundreds of digits included: the value, or 400.
    @Test func contentLengthOfAnyDigitsIsAValueOrMalformed() async {
        await propertyCheck(input: Gen.int(in: 0...60), Gen.number.string(of: 1...60)) { zeros, digits in
            let value = String(repeating: "0", count: zeros) + digits
            let significant = value.drop(while: { $0 == "0" })
            let result = Result { () throws(HTTP1ParseError) in try parse(request("POST / HTTP/1.1", ["Content-Length: \(value)"])) }
            if significant.count <= 18 {
                #expect((try? result.get())?.requests.first?.contentLength == Int(significant.isEmpty ? "0" : significant))
            } else {
                #expect(throws: HTTP1ParseError.malformed) { try result.get() }
            }
        }
    }

    /// Any hex string as a chunk size: the size (as many body bytes are read), or 400.
    @Test func chunkSizeOfAnyHexDigitsIsASizeOrMalformed() async {
        let hex = Array("0123456789abcdefABCDEF")
        await propertyCheck(input: Gen.int(in: 0...40), Gen.int(in: 0...21).map { hex[$0] }.string(of: 1...40)) { zeros, digits in
            let value = String(repeating: "0", count: zeros) + digits
            let significant = value.drop(while: { $0 == "0" })
            let size = significant.count <= 15 ? Int(significant.isEmpty ? "0" : String(significant), radix: 16) : nil
            // Up to 64 bytes of data: a larger chunk takes them all and waits for the rest.
            let data = String(repeating: "x", count: min(size ?? 64, 64))
            let result = Result { () throws(HTTP1ParseError) in try parse(chunkedHead + value + "\r\n" + data) }
            guard let size else {
                #expect(throws: HTTP1ParseError.malformed) { try result.get() }
                return
            }
            #expect((try? result.get())?.requests.first?.body.utf8.count == min(size, 64))
        }
    }

    /// Any bytes as a header or trailer value: accepted, with the value as sent (without surrounding whitespace),
    /// exactly when every byte is allowed in a field value; otherwise 400.
    @Test func fieldValueOfAnyBytesIsAcceptedOrMalformed() async {
        await propertyCheck(input: Gen.uint8(in: 0...255).array(of: 0...40)) { bytes in
            let valid = bytes.allSatisfy { $0 >= 0x20 ? $0 != 0x7F : $0 == 0x09 }
            var trimmed = bytes[...]
            while let first = trimmed.first, first == 0x20 || first == 0x09 { trimmed = trimmed.dropFirst() }
            while let last = trimmed.last, last == 0x20 || last == 0x09 { trimmed = trimmed.dropLast() }
            let header = Array("GET / HTTP/1.1\r\nHost: a\r\nX-V: ".utf8) + bytes + Array("\r\n\r\n".utf8)
            let trailer = Array((chunkedHead + "0\r\nX-V: ").utf8) + bytes + Array("\r\n\r\n".utf8)
            for text in [header, trailer] {
                let result = Result { () throws(HTTP1ParseError) in try parse(pieces: [text]) }
                if valid {
                    let parsed = (try? result.get())?.requests.first
                    #expect(parsed?.ended == true)
                    if text == header { #expect(parsed?.headers["x-v"] == [String(decoding: trimmed, as: UTF8.self)]) }
                } else if !bytes.contains(0x0D) || !bytes.contains(0x0A) {
                    // Without a CRLF inside, the value cannot pass for more lines: one bad byte is a 400.
                    #expect(throws: HTTP1ParseError.malformed) { try result.get() }
                } else if case .failure(let error) = result {
                    #expect(error == .malformed)
                }
            }
        }
    }

    /// Values near the common ones the parser shares (``HTTP1RequestParser/commonValues``): each, or one with a byte
    /// changed, added or taken away, or in another case, is read as exactly the bytes sent.
    @Test func valuesNearTheSharedCommonOnesAreReadAsSent() async {
        let common = HTTP1RequestParser.commonValues.map { Array($0.utf8) }
        await propertyCheck(input: Gen.int(in: 0..<common.count), Gen.int(in: 0...3), Gen.int(in: 0...40), Gen.uint8(in: 0x21...0x7E)) {
            pick, change, position, byte in
            var value = common[pick]
            let at = min(position, value.count - 1)
            switch change {
            case 1: value[at] = byte
            case 2: value.insert(byte, at: at)
            case 3: value.remove(at: at)
            default: break
            }
            let text = Array("POST / HTTP/1.1\r\nHost: a\r\nContent-Type: ".utf8) + value + Array("\r\nContent-Length: 0\r\n\r\n".utf8)
            let parsed = try? parse(pieces: [text]).requests.first
            #expect(parsed?.headers["content-type"] == [String(decoding: value, as: UTF8.self)])
        }
        for value in HTTP1RequestParser.commonValues + HTTP1RequestParser.commonValues.map({ $0.uppercased() }) {
            let parsed = try? parse("POST / HTTP/1.1\r\nHost: a\r\nAccept: \(value)\r\n\r\n").requests.first
            #expect(parsed?.headers["accept"] == [value])
        }
    }
}

@testable import HTTP
import NIOCore
import NIOEmbedded
import NIOHTTP1
import TestSupport
import Testing

/// `HTTP1RequestParser` against SwiftNIO's own decoder (`HTTPRequestDecoder`, which is llhttp): one corpus of
/// requests plus seeded mutations of it (Content-Length and Transfer-Encoding conflicts, chunk extensions, trailers,
/// folded lines, bare LF, NUL, absolute-form targets, requests pipelined after a body). Either parser may refuse what
/// the other accepts (ours is the stricter by design); but where both accept a byte stream, they must split it into
/// the same requests with the same bodies, or a proxy in front and Tandem behind could disagree on where a request
/// ends (request smuggling).
@Suite struct ParserDifferentialTests {
    /// One request as a parser split it off the stream.
    struct Split: Equatable, CustomStringConvertible {
        var method: String
        var target: String
        var body: [UInt8]

        var description: String { "\(method) \(target) body \(String(decoding: body, as: UTF8.self).debugDescription)" }
    }

    /// The complete requests our parser reads from `bytes` (those before its first refusal), and whether it refused.
    static func ours(_ bytes: [UInt8]) -> (requests: [Split], refused: Bool) {
        var parser = HTTP1RequestParser(maximumHeadBytes: 64 * 1024)
        var buffer = ByteBuffer(bytes: bytes)
        var requests: [Split] = []
        var current: Split?
        do {
            while !parser.isFinished, let part = try parser.next(from: &buffer) {
                switch part {
                case .head(let head): current = Split(method: head.method.rawValue, target: head.uri, body: [])
                case .body(let body): current?.body += Array(body.readableBytesView)
                case .end:
                    if let done = current { requests.append(done) }
                    current = nil
                }
            }
        } catch {
            return (requests, true)
        }
        return (requests, false)
    }

    /// The complete requests llhttp reads from `bytes`, and whether it refused them. An absolute-form target is
    /// reduced to its path and query, as ours does (RFC 9112 §3.2.2).
    static func llhttp(_ bytes: [UInt8]) -> (requests: [Split], refused: Bool) {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        var refused = false
        do {
            try channel.writeInbound(ByteBuffer(bytes: bytes))
        } catch {
            refused = true
        }
        var requests: [Split] = []
        var current: Split?
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
            switch part {
            case .head(let head): current = Split(method: head.method.rawValue, target: originForm(head.uri), body: [])
            case .body(let body): current?.body += Array(body.readableBytesView)
            case .end:
                if let done = current { requests.append(done) }
                current = nil
            }
        }
        return (requests, refused)
    }

    static func originForm(_ target: String) -> String {
        let characters = Array(target)
        guard let colon = (0..<max(0, characters.count - 2)).first(where: { characters[$0] == ":" && characters[$0 + 1] == "/" && characters[$0 + 2] == "/" }),
            !target.hasPrefix("/")
        else { return target }
        let rest = String(characters[(colon + 3)...])
        guard let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) else { return "/" }
        let path = String(rest[slash...])
        return path.hasPrefix("?") ? "/" + path : path
    }

    /// Where both parsers accepted the stream, the requests they split must agree. Only the requests before either's
    /// first refusal are compared when one refused later in the stream: up to there both accepted.
    static func disagreement(_ bytes: [UInt8]) -> String? {
        let a = ours(bytes)
        let b = llhttp(bytes)
        if a.refused || b.refused {
            // A refusal closes the connection: the requests before it are what each served. Where one refused, what
            // both served must still be the same prefix.
            let shared = min(a.requests.count, b.requests.count)
            if a.requests.prefix(shared) != b.requests.prefix(shared) {
                return "ours \(a.requests) (refused: \(a.refused)), llhttp \(b.requests) (refused: \(b.refused))"
            }
            return nil
        }
        return a.requests == b.requests ? nil : "ours \(a.requests), llhttp \(b.requests)"
    }

    static let corpus: [String] = [
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /api/validate-session?session=abc HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST /api/submit HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n3;a;b=\"c\"\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "GET http://example.com/path?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\nGET /two HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nokGET /x HTTP/1.1\r\nHost: a\r\n\r\n",
        "PUT /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\nPOST /q HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nz",
        "DELETE /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n\r\n\r\n",
    ]

    /// Pieces a mutation inserts: the bytes where parsers have disagreed before.
    static let tokens: [String] = [
        " ", "\t", "\r", "\n", "\r\n", "\0", ":", ";", ",", "0", "5", "a", "f", "-", "+", "x", "\"",
        "Content-Length: 5\r\n", "Content-Length: 0\r\n", "Transfer-Encoding: chunked\r\n", "Transfer-Encoding: identity\r\n",
        "\r\n\r\n", "0\r\n\r\n", "5 junk\r\n", "chunked", ";ext", "HTTP/1.1", "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    ]

    static func below(_ random: inout SeededGenerator, _ bound: Int) -> Int { Int(random.next() % UInt64(bound)) }

    /// One random edit of a corpus entry (two, one time in four): a token inserted, a byte deleted, or a byte replaced by a token.
    static func mutated(_ seed: UInt64) -> [UInt8] {
        var random = SeededGenerator(seed: seed)
        var bytes = Array(corpus[below(&random, corpus.count)].utf8)
        for _ in 0..<(below(&random, 4) == 0 ? 2 : 1) {
            let at = below(&random, bytes.count + 1)
            let token = Array(tokens[below(&random, tokens.count)].utf8)
            switch below(&random, 3) {
            case 0: bytes.insert(contentsOf: token, at: at)
            case 1: if at < bytes.count { bytes.remove(at: at) }
            default: if at < bytes.count { bytes.replaceSubrange(at...at, with: token) }
            }
        }
        return bytes
    }

    /// The comparison is not vacuous: both parsers read the plain corpus, requests and bodies, the same way, and a
    /// good share of the mutations (about a third) still give both at least one request to compare; most of the rest
    /// are refused by both, as they should be.
    @Test func bothParsersReallyReadTheCorpus() {
        let ours = Self.ours(Array(Self.corpus[2].utf8))
        let theirs = Self.llhttp(Array(Self.corpus[2].utf8))
        #expect(ours.requests == [Split(method: "POST", target: "/api/submit", body: Array("hello".utf8)), Split(method: "GET", target: "/next", body: [])])
        #expect(theirs.requests == ours.requests && !ours.refused && !theirs.refused)
        let chunked = Self.llhttp(Array(Self.corpus[4].utf8))
        #expect(chunked.requests.map(\.body) == [Array("helloabc".utf8)])
        var compared = 0
        var bothRefused = 0
        for seed in UInt64(1)...2_000 {
            let bytes = Self.mutated(seed)
            let (a, b) = (Self.ours(bytes), Self.llhttp(bytes))
            if !a.requests.isEmpty && !b.requests.isEmpty { compared += 1 }
            if a.refused && b.refused { bothRefused += 1 }
        }
        #expect(compared > 500, "only \(compared) of 2,000 mutations gave both parsers a request (both refused \(bothRefused))")
    }

    @Test(arguments: corpus)
    func theCorpusIsSplitAlike(_ text: String) {
        let bytes = Array(text.utf8)
        #expect(Self.disagreement(bytes) == nil, "\(text.debugDescription): \(Self.disagreement(bytes) ?? "")")
    }

    /// 20,000 seeded mutations, the same in every run (a failure names its seed and its bytes).
    @Test func mutationsAreSplitAlikeWhereBothAccept() {
        var disagreements: [String] = []
        for seed in UInt64(1)...20_000 {
            let bytes = Self.mutated(seed)
            if let why = Self.disagreement(bytes) {
                disagreements.append("seed \(seed) \(String(decoding: bytes, as: UTF8.self).debugDescription): \(why)")
            }
        }
        #expect(disagreements.isEmpty, "\(disagreements.count) disagreements, the first: \(disagreements.prefix(5).joined(separator: "\n"))")
    }
}

#if canImport(Glibc)
import Glibc
#endif
import HTTP
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import TestSupport
import Testing

/// `HTTPConnectionHandler` over real sockets: pipelining, refusals in their turn, timeouts, HTTP/1.0, HEAD, event
/// streams, draining and clients that misbehave. Every read has a short deadline, so a response that never comes
/// fails its test quickly instead of hanging it.
@Suite(.timeLimit(.minutes(1)))
struct HTTPConnectionTests {
    // MARK: Pipelining

    @Test func pipelinedPostsWithBodiesAreAnsweredInOrder() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            defer { Task { await connection.close() } }
            try await connection.send(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nfirst"
                    + "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nsecond"
                    + "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nthi\r\n2\r\nrd\r\n0\r\n\r\n"
                    + "GET /hello?name=fourth HTTP/1.1\r\nHost: t\r\n\r\n"
                    + "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nfifth")
            for expected in ["first", "second", "third", "hello fourth", "fifth"] {
                let response = try await connection.readResponse(timeout: .seconds(2))
                #expect(response.status == 200)
                #expect(response.bodyText == expected)
                #expect(response.header("connection") == nil)
            }
        }
    }

    @Test func moreThanFourPipelinedRequestsInOneWriteAreAllAnsweredInOrder() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            defer { Task { await connection.close() } }
            // A slow one near the front, so the rest wait behind it.
            var requests = "GET /hello?name=0 HTTP/1.1\r\nHost: t\r\n\r\nGET /slow?ms=100 HTTP/1.1\r\nHost: t\r\n\r\n"
            for index in 2..<12 { requests += "GET /hello?name=\(index) HTTP/1.1\r\nHost: t\r\n\r\n" }
            try await connection.send(requests)
            for index in 0..<12 {
                let response = try await connection.readResponse(timeout: .seconds(2))
                #expect(response.status == 200)
                #expect(response.bodyText == (index == 1 ? "slow" : "hello \(index)"))
            }
            // Still open and served.
            try await connection.send("GET /hello?name=after HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try await connection.readResponse(timeout: .seconds(2)).bodyText == "hello after")
        }
    }

    @Test func aRequestPipelinedAfterConnectionCloseIsNotAnswered() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send(
                "GET /slow?ms=50 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /hello?name=late HTTP/1.1\r\nHost: t\r\n\r\n")
            let response = try await connection.readResponse(timeout: .seconds(2))
            #expect(response.bodyText == "slow")
            #expect(response.header("connection") == "close")
            let rest = try await connection.readUntilClosed(timeout: .seconds(2))
            #expect(rest.isEmpty, "answered after Connection: close: \(String(decoding: rest, as: UTF8.self))")
        }
    }

    @Test func aClientThatResetsWithRequestsQueuedLeavesNothingBehind() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send(
                "GET /slow?ms=200 HTTP/1.1\r\nHost: t\r\n\r\n"
                    + "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc"
                    + "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            try await Task.sleep(for: .milliseconds(50))
            await connection.reset()
            #expect(await eventually { served.server.openConnections == 0 })
            #expect(try await served.client.request("GET", "/hello?name=x", timeout: .seconds(2)).bodyText == "hello x")
        }
    }

    // MARK: Expect: 100-continue

    @Test func expectContinueBehindAnotherRequestIsAnsweredOnlyInItsTurn() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            defer { Task { await connection.close() } }
            try await connection.send(
                "GET /slow?ms=150 HTTP/1.1\r\nHost: t\r\n\r\n"
                    + "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            // `readResponse` skips interim responses: had the 100 come first, it would be gone and the wait for it
            // below would time out.
            let first = try await connection.readResponse(timeout: .seconds(2))
            #expect(first.status == 200 && first.bodyText == "slow")
            let interim = try await connection.readStreamingHead(timeout: .seconds(2))
            #expect(interim.status == 100)
            try await connection.send("hello")
            let second = try await connection.readResponse(timeout: .seconds(2))
            #expect(second.status == 200 && second.bodyText == "hello")
        }
    }

    @Test func expectContinueWithABodyOverTheLimitGets413AndNo100() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
            let bytes = try await connection.readUntilClosed(timeout: .seconds(2))
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 413 "), "\(text)")
            #expect(!text.contains("100 Continue"))
            #expect(text.lowercased().contains("connection: close"))
        }
    }

    // MARK: Request timeout

    @Test func aBodyThatStopsArrivingGets408() async throws {
        try await Served.run({ $0.requestTimeout = .milliseconds(300) }) { served in
            let connection = try await served.connect()
            try await connection.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            let response = try await connection.readResponse(timeout: .seconds(2))
            #expect(response.status == 408)
            #expect(response.header("connection") == "close")
            #expect(await connection.isClosed(within: .seconds(2)))
        }
    }

    /// The request whose body stalls was queued behind another when its head arrived; once its turn comes, its
    /// body must still be bounded by the request timeout (or the connection by the idle timeout).
    @Test func aBodyThatStopsArrivingBehindAnotherRequestGets408() async throws {
        try await Served.run({ $0.requestTimeout = .milliseconds(300) }) { served in
            let connection = try await served.connect()
            defer { Task { await connection.close() } }
            try await connection.send(
                "GET /hello?name=a HTTP/1.1\r\nHost: t\r\n\r\nPOST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            #expect(try await connection.readResponse(timeout: .seconds(2)).bodyText == "hello a")
            let response = try await connection.readResponse(timeout: .seconds(2))
            #expect(response.status == 408)
            #expect(await connection.isClosed(within: .seconds(2)))
        }
    }

    @Test func expectContinueBehindAnotherRequestWhoseBodyNeverComesGets408() async throws {
        try await Served.run({ $0.requestTimeout = .milliseconds(300) }) { served in
            let connection = try await served.connect()
            defer { Task { await connection.close() } }
            try await connection.send(
                "GET /hello?name=a HTTP/1.1\r\nHost: t\r\n\r\n"
                    + "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            #expect(try await connection.readResponse(timeout: .seconds(2)).bodyText == "hello a")
            #expect(try await connection.readStreamingHead(timeout: .seconds(2)).status == 100)
            let response = try await connection.readResponse(timeout: .seconds(2))
            #expect(response.status == 408)
        }
    }

    // MARK: Refusals

    @Test func contentLengthWithTransferEncodingIsRefusedAndNothingAfterItIsAnswered() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            // The smuggling shape: a proxy going by Content-Length sees one request, one going by chunked two.
            try await connection.send(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + "0\r\n\r\nGET /hello?name=smuggled HTTP/1.1\r\nHost: t\r\n\r\n")
            let response = try await connection.readResponse(timeout: .seconds(2))
            #expect(response.status == 400)
            #expect(response.header("connection") == "close")
            let rest = try await connection.readUntilClosed(timeout: .seconds(2))
            #expect(rest.isEmpty, "\(String(decoding: rest, as: UTF8.self))")
        }
    }

    @Test func transferCodingsOtherThanChunkedAreRefused() async throws {
        try await Served.run { served in
            let gzip = try await served.connect()
            try await gzip.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
            let notImplemented = try await gzip.readResponse(timeout: .seconds(2))
            #expect(notImplemented.status == 501)
            #expect(notImplemented.header("connection") == "close")
            #expect(await gzip.isClosed(within: .seconds(2)))

            // Chunked not last: the length cannot be known (RFC 9112 §6.3).
            let notLast = try await served.connect()
            try await notLast.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n")
            #expect(try await notLast.readResponse(timeout: .seconds(2)).status == 400)
            #expect(await notLast.isClosed(within: .seconds(2)))

            // Transfer-Encoding from an HTTP/1.0 client (RFC 9112 §6.1: framing is faulty).
            let old = try await served.connect()
            try await old.send("POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            #expect(try await old.readResponse(timeout: .seconds(2)).status == 400)
            #expect(await old.isClosed(within: .seconds(2)))
        }
    }

    @Test func anHTTP2RequestLineGets505() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send("GET /hello HTTP/2.0\r\nHost: t\r\n\r\n")
            let response = try await connection.readResponse(timeout: .seconds(2))
            #expect(response.status == 505)
            #expect(response.header("connection") == "close")
            #expect(await connection.isClosed(within: .seconds(2)))
        }
    }

    @Test func aHeadTrickledPastTheLimitGets431() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send("GET /hello HTTP/1.1\r\nHost: t\r\n")
            // No blank line ever: 5,000 bytes of one header, in pieces.
            try await connection.send("X-Pad: ")
            var refused: RawResponse?
            for _ in 0..<10 {
                try? await connection.send(String(repeating: "a", count: 500))
                if let response = try? await connection.readResponse(timeout: .milliseconds(50)) {
                    refused = response
                    break
                }
            }
            if refused == nil { refused = try await connection.readResponse(timeout: .seconds(2)) }
            #expect(refused?.status == 431)
            #expect(await connection.isClosed(within: .seconds(2)))
        }
    }

    /// A malformed request pipelined behind a good one: the good one is answered, then the 400, then the close.
    @Test func aMalformedRequestBehindAnotherGets400InItsTurn() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send("GET /hello?name=a HTTP/1.1\r\nHost: t\r\n\r\nNOT HTTP AT ALL\r\n\r\n")
            let first = try await connection.readResponse(timeout: .seconds(2))
            #expect(first.bodyText == "hello a")
            // The connection goes on to carry the 400, so this answer does not announce its end.
            #expect(first.header("connection") == nil)
            let second = try await connection.readResponse(timeout: .seconds(2))
            #expect(second.status == 400)
            #expect(second.header("connection") == "close")
            #expect(await connection.isClosed(within: .seconds(2)))
        }
    }

    @Test func twoGoodRequestsThenAMalformedOneGetTwoAnswersThen400() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send(
                "GET /hello?name=a HTTP/1.1\r\nHost: t\r\n\r\nGET /hello?name=b HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/9.9\r\n\r\n")
            #expect(try await connection.readResponse(timeout: .seconds(2)).bodyText == "hello a")
            let second = try await connection.readResponse(timeout: .seconds(2))
            #expect(second.bodyText == "hello b")
            #expect(second.header("connection") == nil)
            #expect(try await connection.readResponse(timeout: .seconds(2)).status == 505)
            #expect(await connection.isClosed(within: .seconds(2)))
        }
    }

    @Test func anOversizedBodyBehindAnotherRequestGets413InItsTurn() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send("GET /hello?name=a HTTP/1.1\r\nHost: t\r\n\r\nPOST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")
            let first = try await connection.readResponse(timeout: .seconds(2))
            #expect(first.bodyText == "hello a")
            #expect(first.header("connection") == nil)
            let refused = try await connection.readResponse(timeout: .seconds(2))
            #expect(refused.status == 413)
            #expect(refused.header("connection") == "close")
            #expect(await connection.isClosed(within: .seconds(2)))
        }
    }

    // MARK: Parser leniencies (issue 14, item 8)

    /// A request after the last chunk is no trailer: the request is refused, and the one hidden in it never answered.
    @Test func aRequestHiddenInTrailersGets400AndIsNotAnswered() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send(
                "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
                    + "GET /hello?name=smuggled HTTP/1.1\r\nHost: t\r\n\r\n")
            let response = try await connection.readResponse(timeout: .seconds(2))
            #expect(response.status == 400)
            #expect(response.header("connection") == "close")
            let rest = try await connection.readUntilClosed(timeout: .seconds(2))
            #expect(rest.isEmpty, "\(String(decoding: rest, as: UTF8.self))")
        }
    }

    @Test func aChunkSizeFollowedByJunkGets400() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3 zz\r\nabc\r\n0\r\n\r\n")
            let response = try await connection.readResponse(timeout: .seconds(2))
            #expect(response.status == 400)
            #expect(response.header("connection") == "close")
            #expect(await connection.isClosed(within: .seconds(2)))
        }
    }

    /// Sizes too large to be bodies are refused, never trapped on: a chunk size that fits an Int once its body passes
    /// the limit (413), one with more hex digits and a Content-Length with more digits than an Int holds at once (400).
    @Test(arguments: [
        ("Transfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\n" + String(repeating: "x", count: 2000), 413),
        ("Transfer-Encoding: chunked\r\n\r\n" + String(repeating: "f", count: 40) + "\r\nxx", 400),
        ("Content-Length: " + String(repeating: "9", count: 40) + "\r\n\r\nxx", 400),
        ("Content-Length: " + String(repeating: "0", count: 40) + "2\r\n\r\nxx", 200),
    ])
    func hugeSizesAreRefusedCleanly(framing: String, status: Int) async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            defer { Task { await connection.close() } }
            try await connection.send("POST /echo HTTP/1.1\r\nHost: t\r\n" + framing)
            #expect(try await connection.readResponse(timeout: .seconds(2)).status == status)
        }
    }

    /// An upgrade is never granted: the request is answered as if it had no `Upgrade`, with `Connection: close`, and
    /// whatever follows it (the other protocol, or a request) is never answered.
    @Test func aRequestWithUpgradeIsAnsweredAndNothingAfterIt() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send(
                "GET /hello?name=a HTTP/1.1\r\nHost: t\r\n\r\n"
                    + "GET /hello?name=up HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                    + "GET /hello?name=smuggled HTTP/1.1\r\nHost: t\r\n\r\n")
            let first = try await connection.readResponse(timeout: .seconds(2))
            #expect(first.bodyText == "hello a")
            #expect(first.header("connection") == nil)
            let upgrade = try await connection.readResponse(timeout: .seconds(2))
            #expect(upgrade.status == 200)
            #expect(upgrade.bodyText == "hello up")
            #expect(upgrade.header("connection") == "close")
            #expect(upgrade.header("upgrade") == nil)
            let rest = try await connection.readUntilClosed(timeout: .seconds(2))
            #expect(rest.isEmpty, "answered after an Upgrade: \(String(decoding: rest, as: UTF8.self))")
        }
    }

    /// What a client sends after asking for an upgrade, while its answer is prepared, is read and dropped: the answer
    /// still arrives whole, then the connection closes.
    @Test func bytesAfterAnUpgradeAreDroppedWhileItsAnswerIsPrepared() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send("GET /slow?ms=150 HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            for _ in 0..<5 {
                // A WebSocket frame the client sends as if the upgrade had happened.
                try await connection.send(bytes: [0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
                try await Task.sleep(for: .milliseconds(20))
            }
            let response = try await connection.readResponse(timeout: .seconds(2))
            #expect(response.status == 200)
            #expect(response.bodyText == "slow")
            #expect(response.header("connection") == "close")
            #expect(await connection.isClosed(within: .seconds(2)))
        }
    }

    /// An event stream whose head cannot be written is not sent, but its producer still runs, cancelled: what its
    /// responder set up for it (in Tandem, the session's place in its registry, which a node's shutdown waits for) is
    /// released.
    @Test func anEventStreamWhoseHeadCannotBeWrittenStillRunsItsProducerCancelled() async throws {
        let probe = EventProbe()
        try await Served.run(routes: { router in
            router.on(.GET, "/events-bad-head") { _, _ in
                Response(headers: ["Content-Type": "text/event-stream", "X-Broken": "a\r\nInjected: b"], body: .eventStream { channel in
                    await probe.serve(channel)
                })
            }
        }) { served in
            let connection = try await served.connect()
            try await connection.send("GET /events-bad-head HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(await connection.isClosed(within: .seconds(2)))
            #expect(await eventually { probe.snapshot.streams == 1 && probe.snapshot.closes == 1 })
        }
    }

    /// Absolute form (RFC 9112 §3.2.2): routed by the target's path and query, with its authority as `Host`.
    @Test func anAbsoluteFormTargetIsServedWithItsAuthorityAsHost() async throws {
        try await Served.run(routes: { router in
            router.on(.GET, "/host") { request, _ in
                Response(
                    contentType: "text/plain",
                    body: ByteBuffer(string: "\(request.headers["host"].joined(separator: ",")) \(request.path) \(request.queryString)"))
            }
        }) { served in
            let connection = try await served.connect()
            defer { Task { await connection.close() } }
            try await connection.send("GET http://example.com:8080/host?q=1 HTTP/1.1\r\nHost: t\r\n\r\n")
            let response = try await connection.readResponse(timeout: .seconds(2))
            #expect(response.status == 200)
            #expect(response.bodyText == "example.com:8080 /host q=1")
            try await connection.send("GET HTTPS://h/hello?name=abs HTTP/1.1\r\nHost: h\r\n\r\n")
            #expect(try await connection.readResponse(timeout: .seconds(2)).bodyText == "hello abs")

            let ftp = try await served.connect()
            try await ftp.send("GET ftp://example.com/host HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try await ftp.readResponse(timeout: .seconds(2)).status == 400)
            #expect(await ftp.isClosed(within: .seconds(2)))
        }
    }

    // MARK: HTTP/1.0

    @Test func http10WithoutKeepAliveIsClosedAfterItsResponse() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send("GET /hello?name=old HTTP/1.0\r\n\r\n")
            let bytes = try await connection.readUntilClosed(timeout: .seconds(2))
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(text)")
            #expect(text.lowercased().contains("\r\nconnection: close\r\n"))
            #expect(!text.lowercased().contains("transfer-encoding"))
            #expect(text.hasSuffix("\r\n\r\nhello old"))
        }
    }

    @Test func http10WithKeepAliveStaysOpen() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            defer { Task { await connection.close() } }
            for name in ["a", "b"] {
                try await connection.send("GET /hello?name=\(name) HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                let response = try await connection.readResponse(timeout: .seconds(2))
                #expect(response.bodyText == "hello \(name)")
                #expect(response.header("connection")?.lowercased() == "keep-alive")
                #expect(response.header("content-length") == "7")
            }
            // A body from an HTTP/1.0 client with keep-alive, by Content-Length.
            try await connection.send("POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nxyz")
            #expect(try await connection.readResponse(timeout: .seconds(2)).bodyText == "xyz")
            // No Expect handling for HTTP/1.0: no 100.
            try await connection.send("POST /echo HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
            try await Task.sleep(for: .milliseconds(100))
            try await connection.send("ok")
            let bytes = try await connection.readUntilClosed(timeout: .seconds(2))
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 200 "), "\(text)")
            #expect(text.hasSuffix("ok"))
        }
    }

    @Test func http10StreamedBodyIsNotChunkedAndEndsWithTheConnection() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send("GET /stream?count=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            let text = String(decoding: try await connection.readUntilClosed(timeout: .seconds(2)), as: UTF8.self)
            let parts = text.split(separator: "\r\n\r\n", maxSplits: 1, omittingEmptySubsequences: false)
            #expect(parts.count == 2)
            let head = parts.first.map { String($0).lowercased() } ?? ""
            #expect(!head.contains("transfer-encoding"))
            #expect(!head.contains("content-length"))
            #expect(head.contains("connection: close"))
            #expect(parts.last.map(String.init) == "event: tick\nid: 1\ndata: 1\n\nevent: tick\nid: 2\ndata: 2\n\n")
        }
    }

    /// A streamed body whose producer fails midway is cut: no last chunk, which would tell the client that the
    /// truncated body is complete (RFC 9112 §7.1), and the connection closes.
    @Test func aStreamedBodyWhoseProducerFailsIsNotEndedAsIfComplete() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            defer { Task { await connection.close() } }
            try await connection.send("GET /broken-stream HTTP/1.1\r\nHost: t\r\n\r\n")
            let head = try await connection.readStreamingHead(timeout: .seconds(2))
            #expect(head.status == 200 && head.header("transfer-encoding") == "chunked")
            let (text, _) = try await connection.readChunkedText(timeout: .seconds(2)) { $0 == "part" }
            #expect(text == "part")
            let closed = await connection.isClosed(within: .seconds(1))
            #expect(closed, "the connection stays open after a failed body, as if the response were complete")
            let decoded = ChunkedTail.decode(try await connection.readUntilClosed(timeout: .seconds(1)))
            #expect(decoded.text == "part")
            #expect(!decoded.ended, "the last chunk was sent after the producer failed")
        }
    }

    // MARK: HEAD

    @Test func headGetsContentLengthAndNoBody() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            defer { Task { await connection.close() } }
            // Pipelined: a body sent after the HEAD response would be read as the next response's start.
            try await connection.send("HEAD /hello?name=x HTTP/1.1\r\nHost: t\r\n\r\nGET /hello?name=y HTTP/1.1\r\nHost: t\r\n\r\n")
            let head = try await connection.readResponse(timeout: .seconds(2), headRequest: true)
            #expect(head.status == 200)
            #expect(head.header("content-length") == "7")
            #expect(try await connection.readResponse(timeout: .seconds(2)).bodyText == "hello y")

            // A streamed body is not produced for HEAD, and the connection stays usable.
            try await connection.send("HEAD /stream HTTP/1.1\r\nHost: t\r\n\r\nGET /hello?name=z HTTP/1.1\r\nHost: t\r\n\r\n")
            let streamHead = try await connection.readResponse(timeout: .seconds(2), headRequest: true)
            #expect(streamHead.status == 200)
            #expect(streamHead.header("content-type") == "text/event-stream")
            #expect(try await connection.readResponse(timeout: .seconds(2)).bodyText == "hello z")
        }
    }

    @Test func headOnAnEventStreamSendsNoBody() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send("HEAD /events HTTP/1.1\r\nHost: t\r\n\r\n")
            let head = try await connection.readStreamingHead(timeout: .seconds(2))
            #expect(head.status == 200)
            let rest = try await connection.readUntilClosed(timeout: .seconds(2))
            #expect(rest.isEmpty, "body bytes after a HEAD response: \(String(decoding: rest, as: UTF8.self).debugDescription)")
        }
    }

    // MARK: Request bodies

    @Test func aChunkedRequestBodySplitAcrossSeveralWrites() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            defer { Task { await connection.close() } }
            let pieces = [
                "POST /echo HTTP/1.1\r\nHo", "st: t\r\nTransfer-Encoding: chunked\r\n\r", "\n5\r\nhel", "lo\r\n",
                "6;ext=1\r\n worl", "d\r", "\n0\r\n", "X-Trailer: yes\r\n", "\r\n",
            ]
            for piece in pieces {
                try await connection.send(piece)
                try await Task.sleep(for: .milliseconds(20))
            }
            let response = try await connection.readResponse(timeout: .seconds(2))
            #expect(response.status == 200)
            #expect(response.bodyText == "hello world")
            // The connection is still in step.
            try await connection.send("GET /hello?name=next HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try await connection.readResponse(timeout: .seconds(2)).bodyText == "hello next")
        }
    }

    // MARK: Event streams

    @Test func anEventStreamIsChunkedAndEndsWithItsLastChunkAndTheConnection() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send("GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
            let head = try await connection.readStreamingHead(timeout: .seconds(2))
            #expect(head.status == 200)
            #expect(head.header("transfer-encoding") == "chunked")
            #expect(head.header("connection") == "close")
            #expect(head.header("content-length") == nil)
            let (opened, _) = try await connection.readChunkedText(timeout: .seconds(2)) { $0.contains("data: open") }
            #expect(opened == "data: open\n\n")
            #expect(await eventually { served.probe.snapshot.streams == 1 })
            served.probe.writeAll("data: more\n\n")
            served.probe.finishAll()
            let bytes = try await connection.readUntilClosed(timeout: .seconds(2))
            let decoded = ChunkedTail.decode(bytes)
            #expect(decoded.text == "data: open\n\ndata: more\n\n")
            #expect(decoded.ended, "no last chunk before the close")
            #expect(await eventually { served.probe.snapshot.closes == 1 })
            #expect(served.probe.snapshot.drains == 0)
        }
    }

    /// Events framed where they were written: sizes across every hex-digit boundary a chunk's size line has, and
    /// buffers that grew past what was asked, decode to exactly what was written, in order; nothing written is no
    /// chunk (an empty one would end the body).
    @Test func eventsFramedInPlaceDecodeToWhatWasWritten() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send("GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
            _ = try await connection.readStreamingHead(timeout: .seconds(2))
            #expect(await eventually { served.probe.snapshot.streams == 1 })
            var expected = "data: open\n\n"
            for (index, size) in [1, 15, 16, 255, 256, 4095, 4096, 65_536, 70_001].enumerated() {
                let text = String(repeating: Character(UnicodeScalar(UInt8(ascii: "a") + UInt8(index))), count: size)
                #expect(served.probe.writeAllInPlace(text, capacity: index.isMultiple(of: 2) ? size : 8) == [true])
                expected += text
            }
            #expect(served.probe.writeAllInPlace("", capacity: 64) == [true])
            let prepared = EventStreamChannel.PreparedBytes(ByteBuffer(string: ": beat\n\n"))
            #expect(served.probe.writeAll(prepared) == [true])
            #expect(served.probe.writeAll(prepared) == [true])
            #expect(served.probe.writeAll(EventStreamChannel.PreparedBytes(ByteBuffer())) == [true])
            expected += ": beat\n\n: beat\n\n"
            served.probe.finishAll()
            let decoded = ChunkedTail.decode(try await connection.readUntilClosed(timeout: .seconds(5)))
            #expect(decoded.text == expected)
            #expect(decoded.ended, "no last chunk before the close")
        }
    }

    @Test func anEventFramedInPlaceToAnHTTP10ClientIsUnframed() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send("GET /events HTTP/1.0\r\n\r\n")
            _ = try await connection.readStreamingHead(timeout: .seconds(2))
            #expect(await eventually { served.probe.snapshot.streams == 1 })
            served.probe.writeAllInPlace("data: more\n\n", capacity: 4)
            served.probe.writeAll(EventStreamChannel.PreparedBytes(ByteBuffer(string: ": beat\n\n")))
            served.probe.finishAll()
            let rest = String(decoding: try await connection.readUntilClosed(timeout: .seconds(2)), as: UTF8.self)
            #expect(rest == "data: open\n\ndata: more\n\n: beat\n\n")
        }
    }

    @Test func anEventStreamToAnHTTP10ClientIsUnframed() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send("GET /events HTTP/1.0\r\n\r\n")
            let head = try await connection.readStreamingHead(timeout: .seconds(2))
            #expect(head.status == 200)
            #expect(head.header("transfer-encoding") == nil)
            #expect(await eventually { served.probe.snapshot.streams == 1 })
            served.probe.finishAll()
            let rest = String(decoding: try await connection.readUntilClosed(timeout: .seconds(2)), as: UTF8.self)
            #expect(rest == "data: open\n\n")
        }
    }

    @Test func anEventStreamsDelegateHearsOnceThatTheClientLeft() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send("GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
            _ = try await connection.readStreamingHead(timeout: .seconds(2))
            #expect(await eventually { served.probe.snapshot.streams == 1 })
            await connection.reset()
            #expect(await eventually { served.probe.snapshot.closes == 1 })
            #expect(await eventually { served.server.openConnections == 0 })
            // Writes to the gone stream are refused, and finishing it is harmless.
            #expect(served.probe.writeAll("data: late\n\n") == [false])
            served.probe.finishAll()
            try await Task.sleep(for: .milliseconds(100))
            #expect(served.probe.snapshot.closes == 1)
        }
    }

    @Test func anEventStreamBehindAPipelinedRequestAndNothingAfterIt() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            try await connection.send(
                "GET /hello?name=a HTTP/1.1\r\nHost: t\r\n\r\nGET /events HTTP/1.1\r\nHost: t\r\n\r\nGET /hello?name=late HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try await connection.readResponse(timeout: .seconds(2)).bodyText == "hello a")
            let head = try await connection.readStreamingHead(timeout: .seconds(2))
            #expect(head.header("content-type") == "text/event-stream")
            #expect(await eventually { served.probe.snapshot.streams == 1 })
            served.probe.finishAll()
            let decoded = ChunkedTail.decode(try await connection.readUntilClosed(timeout: .seconds(2)))
            #expect(decoded.text == "data: open\n\n")
            #expect(decoded.ended)
            #expect(!decoded.trailing.contains("HTTP/1.1"), "a request after the event stream was answered")
        }
    }

    // MARK: Draining

    @Test func drainClosesIdleConnectionsLetsResponsesFinishAndDrainsEventStreams() async throws {
        try await Served.run { served in
            let idle = try await served.connect()
            try await idle.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            _ = try await idle.readResponse(timeout: .seconds(5))

            let busy = try await served.connect()
            try await busy.send("GET /stream?count=3&pauseMs=150 HTTP/1.1\r\nHost: t\r\n\r\n")
            _ = try await busy.readStreamingHead(timeout: .seconds(2))

            let queued = try await served.connect()
            // Slow enough to be still in flight when the drain comes, however loaded the machine: at 300 ms a loaded
            // full run once answered both requests before the drain, so neither said `Connection: close`.
            try await queued.send("GET /slow?ms=1500 HTTP/1.1\r\nHost: t\r\n\r\nGET /hello?name=second HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(await eventually { served.probe.snapshot.slowStarted == 1 })

            let events = try await served.connect()
            try await events.send("GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
            _ = try await events.readStreamingHead(timeout: .seconds(2))
            #expect(await eventually { served.probe.snapshot.streams == 1 })

            await served.drain()

            #expect(await idle.isClosed(within: .seconds(1)))
            // The streamed response in flight ends whole (its last chunk), then its connection closes.
            let streamed = ChunkedTail.decode(try await busy.readUntilClosed(timeout: .seconds(2)))
            #expect(streamed.ended)
            #expect(EventStreamParser.parse(streamed.text).map(\.data) == ["1", "2", "3"])
            // The slow response is sent, then the connection closes (the pipelined request after it may be answered
            // with `Connection: close`, or not at all; nothing else).
            let slow = try await queued.readResponse(timeout: .seconds(4))
            #expect(slow.bodyText == "slow")
            if slow.header("connection") != "close" {
                let second = try await queued.readResponse(timeout: .seconds(2))
                #expect(second.bodyText == "hello second")
                #expect(second.header("connection") == "close")
            }
            #expect(await queued.isClosed(within: .seconds(2)))
            // The event stream's owner was told, and its stream ended.
            #expect(await eventually { served.probe.snapshot.drains == 1 })
            let decoded = ChunkedTail.decode(try await events.readUntilClosed(timeout: .seconds(2)))
            #expect(decoded.text == "data: open\n\nretry: 10\n\n")
            #expect(decoded.ended)
            #expect(await eventually { served.server.openConnections == 0 })
        }
    }

    @Test func aRequestStillArrivingWhenTheServerDrainsIsAnsweredThenClosed() async throws {
        try await Served.run { served in
            let connection = try await served.connect()
            // The 100 shows the server has the head: the request is in flight when the drain comes.
            try await connection.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nExpect: 100-continue\r\n\r\n")
            #expect(try await connection.readStreamingHead(timeout: .seconds(2)).status == 100)
            await served.drain()
            #expect(!(await connection.isClosed(within: .milliseconds(200))))
            try await connection.send("abcdef")
            let response = try await connection.readResponse(timeout: .seconds(2))
            #expect(response.bodyText == "abcdef")
            #expect(response.header("connection") == "close")
            #expect(await connection.isClosed(within: .seconds(2)))
        }
    }

    // MARK: Idle connections and clients that do not read

    /// A client that asks for a large response and never reads it: the server must let go of the connection (and
    /// the response it holds) at some point, as it does for an idle keep-alive connection.
    @Test(arguments: [false, true])
    func aResponseTheClientNeverReadsDoesNotHoldTheConnectionForever(connectionClose: Bool) async throws {
        try await Served.run({ $0.idleTimeout = .seconds(1) }) { served in
            let socket = try RawSocket(port: served.port, receiveBuffer: 4096)
            defer { socket.close() }
            await socket.send("GET /big?kb=8192 HTTP/1.1\r\nHost: t\r\n\(connectionClose ? "Connection: close\r\n" : "")\r\n")
            #expect(await eventually(within: .seconds(4)) { served.probe.snapshot.bigServed == 1 })
            #expect(await eventually(within: .seconds(4)) { served.server.openConnections == 0 })
        }
    }

    /// A client that pipelines requests and never reads the answers: the server must stop answering (and reading)
    /// once the connection cannot take more, instead of queueing responses in memory without bound.
    @Test func aClientThatPipelinesWithoutReadingDoesNotGrowTheServersMemory() async throws {
        try await Served.run { served in
            let socket = try RawSocket(port: served.port, receiveBuffer: 4096)
            defer { socket.close() }
            let requests = String(repeating: "GET /big?kb=16 HTTP/1.1\r\nHost: t\r\n\r\n", count: 1000)
            await socket.send(requests, timeout: .seconds(2))
            // Let the server do whatever it does, until it stops.
            var last = -1
            var unchanged = 0
            for _ in 0..<40 where unchanged < 3 {
                try await Task.sleep(for: .milliseconds(100))
                let count = served.probe.snapshot.bigServed
                if count == 1000 { break }
                unchanged = count == last ? unchanged + 1 : 0
                last = count
            }
            // Each answer is 16 KiB: the kernel's buffers hold a few MiB of them at most. 1,000 answered means
            // 16 MiB queued in the server for a client that reads nothing.
            let answered = served.probe.snapshot.bigServed
            #expect(answered < 500, "\(answered) responses of 16 KiB queued for a client that reads nothing")
        }
    }

    @Test func anIdleConnectionIsClosedButOneReceivingItsBodyIsNot() async throws {
        // An idle timeout of a second, not less: a connection is idle until its head arrives, and on a busy machine the
        // test's task can wait that long between connecting and sending.
        try await Served.run({ $0.idleTimeout = .seconds(1); $0.requestTimeout = .seconds(10) }) { served in
            let idle = try await served.connect()
            try await idle.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            _ = try await idle.readResponse(timeout: .seconds(2))
            // A body arriving slowly, well past the idle timeout, is governed by the request timeout instead.
            let slow = try await served.connect()
            defer { Task { await slow.close() } }
            try await slow.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\n")
            for byte in "abcd" {
                try await Task.sleep(for: .milliseconds(450))
                try await slow.send(String(byte))
            }
            #expect(await idle.isClosed(within: .seconds(1)))
            #expect(try await slow.readResponse(timeout: .seconds(2)).bodyText == "abcd")
        }
    }
}

// MARK: - Fixture

/// A server with the routes of ``HTTPServerTests`` and a few more, and what a test needs to watch it.
struct Served: Sendable {
    let client: TestClient
    let server: HTTPServer
    let probe: EventProbe
    private let group: ServiceGroup

    var port: Int { client.port }

    func connect() async throws -> TestConnection {
        try await TestConnection.connect(port: port)
    }

    /// Begins the graceful shutdown: the server drains.
    func drain() async {
        await group.triggerGracefulShutdown()
    }

    static let logger = Logger(label: "http-connection-test", factory: { _ in SwiftLogNoOpLogHandler() })

    static func router(probe: EventProbe) -> Router {
        var router = HTTPServerTests.router()
        router.on(.GET, "/slow") { request, _ in
            probe.startedSlow()
            try await Task.sleep(for: .milliseconds(Int(request.query("ms") ?? "100") ?? 100))
            return Response(contentType: "text/plain", body: ByteBuffer(string: "slow"))
        }
        router.on(.GET, "/big") { request, _ in
            let kilobytes = Int(request.query("kb") ?? "1") ?? 1
            probe.servedBig()
            return Response(contentType: "application/octet-stream", body: ByteBuffer(repeating: UInt8(ascii: "b"), count: kilobytes * 1024))
        }
        router.on(.GET, "/broken-stream") { _, _ in
            Response(headers: ["Content-Type": "text/plain"], body: .stream { body in
                try await body.write(ByteBuffer(string: "part"))
                struct ProducerFailed: Error {}
                throw ProducerFailed()
            })
        }
        router.on(.GET, "/events") { _, _ in
            Response(headers: EventStreamWriter.headers, body: .eventStream { channel in
                channel.write(ByteBuffer(string: "data: open\n\n"))
                await probe.serve(channel)
            })
        }
        return router
    }

    /// Runs a server with ``router(probe:)`` (plus `routes`, for a test that needs one of its own) around `body`.
    static func run(
        _ configure: (inout HTTPServer.Configuration) -> Void = { _ in },
        routes: (inout Router) -> Void = { _ in },
        _ body: @Sendable (Served) async throws -> Void
    ) async throws {
        var configuration = HTTPServer.Configuration(host: "127.0.0.1", port: 0, maximumHeaderBytes: 4096, maximumBodyBytes: 1024)
        configure(&configuration)
        let probe = EventProbe()
        var router = router(probe: probe)
        routes(&router)
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let server = HTTPServer(configuration: configuration, responder: router, logger: logger) { address in
            portContinuation.yield(address.port ?? 0)
            portContinuation.finish()
        }
        var groupConfiguration = ServiceGroupConfiguration(services: [server], logger: logger)
        // A connection the server never lets go of fails its test; it must not also hang the shutdown.
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(2)
        let group = ServiceGroup(configuration: groupConfiguration)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            let result: Result<Void, any Error>
            do {
                result = .success(try await body(Served(client: TestClient(port: port), server: server, probe: probe, group: group)))
            } catch {
                result = .failure(error)
            }
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            try result.get()
        }
    }
}

/// Records what the server tells the event streams of ``Served/router(probe:)``, and reaches them.
final class EventProbe: Sendable {
    struct Snapshot: Sendable {
        var streams = 0
        var drains = 0
        var closes = 0
        var bigServed = 0
        var slowStarted = 0
    }

    private let state = Mutex<(snapshot: Snapshot, channels: [EventStreamChannel], finishers: [AsyncStream<Void>.Continuation])>(
        (Snapshot(), [], []))

    var snapshot: Snapshot { state.withLock { $0.snapshot } }

    func startedSlow() {
        state.withLock { $0.snapshot.slowStarted += 1 }
    }

    func servedBig() {
        state.withLock { $0.snapshot.bigServed += 1 }
    }

    /// An event stream's producer: waits until the test finishes it or the server cancels it (the connection closed,
    /// or the server drains: then it writes a retry hint, as Tandem's streams do).
    func serve(_ channel: EventStreamChannel) async {
        let (finished, finisher) = AsyncStream.makeStream(of: Void.self)
        state.withLock {
            $0.snapshot.streams += 1
            $0.channels.append(channel)
            $0.finishers.append(finisher)
        }
        for await _ in finished { break }
        if channel.isDraining {
            state.withLock { $0.snapshot.drains += 1 }
            channel.write(ByteBuffer(string: "retry: 10\n\n"))
        }
        state.withLock { $0.snapshot.closes += 1 }
    }

    @discardableResult
    func writeAll(_ text: String) -> [Bool] {
        state.withLock { $0.channels }.map { $0.write(ByteBuffer(string: text)) }
    }

    /// Writes `text` to every stream through the in-place framing (``EventStreamChannel/write(capacity:_:)``),
    /// asking for `capacity` bytes (less than the text: the buffer grows).
    @discardableResult
    func writeAllInPlace(_ text: String, capacity: Int) -> [Bool] {
        state.withLock { $0.channels }.map { channel in channel.write(capacity: capacity) { $0.writeString(text) } }
    }

    @discardableResult
    func writeAll(_ prepared: EventStreamChannel.PreparedBytes) -> [Bool] {
        state.withLock { $0.channels }.map { $0.write(prepared) }
    }

    /// Ends every stream's producer, so its response ends.
    func finishAll() {
        for finisher in state.withLock({ $0.finishers }) {
            finisher.yield()
            finisher.finish()
        }
    }
}

/// Decodes a chunked body read to the connection's end, keeping what follows its last chunk.
enum ChunkedTail {
    static func decode(_ bytes: [UInt8]) -> (text: String, ended: Bool, trailing: String) {
        var output: [UInt8] = []
        var index = 0
        while let lineEnd = firstCRLF(in: bytes, from: index) {
            guard let size = Int(String(decoding: bytes[index..<lineEnd], as: UTF8.self), radix: 16) else { break }
            let dataStart = lineEnd + 2
            if size == 0 {
                let end = min(bytes.count, dataStart + 2)
                return (String(decoding: output, as: UTF8.self), true, String(decoding: bytes[end...], as: UTF8.self))
            }
            guard bytes.count >= dataStart + size + 2 else { break }
            output += bytes[dataStart..<dataStart + size]
            index = dataStart + size + 2
        }
        return (String(decoding: output, as: UTF8.self), false, String(decoding: bytes[min(index, bytes.count)...], as: UTF8.self))
    }

    private static func firstCRLF(in bytes: [UInt8], from start: Int) -> Int? {
        var index = start
        while index + 1 < bytes.count {
            if bytes[index] == 13, bytes[index + 1] == 10 { return index }
            index += 1
        }
        return nil
    }
}

/// Polls `condition` until it holds or `within` has passed.
func eventually(within timeout: Duration = .seconds(2), _ condition: @Sendable () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + TestPatience.scaled(timeout)
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return condition()
}

/// A plain blocking TCP socket that reads only when told to: a client that stops reading, with a small receive
/// buffer so the server's writes back up quickly.
final class RawSocket: Sendable {
    struct Failed: Error {
        var call: String
    }

    private let descriptor: Int32

    init(port: Int, receiveBuffer: Int32) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw Failed(call: "socket") }
        var size = receiveBuffer
        _ = setsockopt(descriptor, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            Glibc.close(descriptor)
            throw Failed(call: "connect")
        }
    }

    /// Sends as much of `text` as the peer takes within `timeout` (it may stop reading); returns the bytes sent.
    @discardableResult
    func send(_ text: String, timeout: Duration = .seconds(2)) async -> Int {
        let deadline = ContinuousClock.now + timeout
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count, ContinuousClock.now < deadline {
            let sent = bytes[offset...].withUnsafeBytes {
                Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if sent > 0 {
                offset += sent
            } else if sent < 0, errno == EAGAIN || errno == EWOULDBLOCK {
                try? await Task.sleep(for: .milliseconds(10))
            } else {
                break
            }
        }
        return offset
    }

    func close() {
        Glibc.close(descriptor)
    }
}

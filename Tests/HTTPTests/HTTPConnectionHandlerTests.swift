import Foundation
@testable import HTTP
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

/// `HTTPConnectionHandler` in an `EmbeddedChannel`: bytes in, bytes out, and time moved by hand
/// (`EmbeddedEventLoop.advanceTime`), so the timeouts are tested to the millisecond without sleeping. Synchronous
/// tests: the embedded loop is the test's own thread.
struct HTTPConnectionHandlerTests {
    /// Answers `/echo` with the request's body, anything else with `hello <path>`.
    private struct Responder: HTTPResponder {
        func respond(to request: Request, logger: Logger) async -> Response {
            if request.path == "/echo" { return Response(contentType: "text/plain", body: request.body) }
            return Response(contentType: "text/plain", body: ByteBuffer(string: "hello \(request.path)"))
        }
    }

    /// One connection: its channel, its loop, and what the server shares.
    private struct Connection {
        let loop = EmbeddedEventLoop()
        let channel: EmbeddedChannel
        let connections = ConnectionTracker()

        init(idleTimeout: Duration = .seconds(8), requestTimeout: Duration = .seconds(2), maximumBodyBytes: Int = 1024) throws {
            channel = EmbeddedChannel(loop: loop)
            let configuration = HTTPServer.Configuration(
                maximumBodyBytes: maximumBodyBytes, idleTimeout: idleTimeout, requestTimeout: requestTimeout)
            var logger = Logger(label: "test")
            logger.logLevel = .info  // with access log lines, so their path runs too
            let server = HTTPServerContext(
                configuration: configuration, responder: Responder(), logger: logger, connections: connections, requestCounter: RequestCounter())
            let handler = HTTPConnectionHandler(
                server: server, peerAddress: "127.0.0.1", taskExecutor: EventLoopTaskExecutor(loop),
                sweeper: IdleConnectionSweeper(eventLoop: loop, timeout: idleTimeout))
            try channel.pipeline.syncOperations.addHandler(handler)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40_000)).wait()
        }

        func send(_ text: String) throws {
            try channel.writeInbound(ByteBuffer(string: text))
            loop.run()
        }

        /// Everything written to the client since the last call.
        func received() throws -> String {
            var text = ""
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
            return text
        }

        func advance(_ amount: TimeAmount) {
            loop.advanceTime(by: amount)
        }

        var isOpen: Bool { channel.isActive }
    }

    @Test func aRequestIsAnsweredAndTheConnectionStaysOpen() throws {
        let connection = try Connection()
        try connection.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        let answer = try connection.received()
        #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(answer.hasSuffix("\r\n\r\nhello /hello"))
        #expect(!answer.lowercased().contains("connection: close"))
        #expect(connection.isOpen)
    }

    @Test func requestsPipelinedInOneReadAreAnsweredInOrder() throws {
        let connection = try Connection()
        try connection.send(
            "GET /a HTTP/1.1\r\nHost: t\r\n\r\n" + "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nsecond"
                + "GET /c HTTP/1.1\r\nHost: t\r\n\r\n")
        let answer = try connection.received()
        let bodies = answer.components(separatedBy: "HTTP/1.1 200 OK").dropFirst().map { $0.components(separatedBy: "\r\n\r\n").last ?? "" }
        #expect(bodies == ["hello /a", "second", "hello /c"])
        #expect(connection.isOpen)
    }

    @Test func aBodyThatDoesNotArriveInTimeGets408ByTheLoopsClock() throws {
        let connection = try Connection(requestTimeout: .seconds(2))
        try connection.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        connection.advance(.milliseconds(1_999))
        #expect(try connection.received().isEmpty)
        connection.advance(.milliseconds(1))
        let answer = try connection.received()
        #expect(answer.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
        #expect(answer.lowercased().contains("connection: close"))
        // The output is closed first; what the client still sends is dropped, for at most a second.
        try connection.send("defghij")
        #expect(try connection.received().isEmpty)
        connection.advance(.seconds(1))
        #expect(!connection.isOpen)
    }

    /// A head sent a few bytes at a time (slowloris) gets the request deadline from its first byte, not the idle
    /// timeout; a head that completes in time is answered as usual.
    @Test func aHeadThatDoesNotArriveInTimeGets408FromItsFirstByte() throws {
        let connection = try Connection(idleTimeout: .seconds(60), requestTimeout: .seconds(2))
        try connection.send("GET /hello HTTP/1.1\r\nHo")
        connection.advance(.seconds(1))
        try connection.send("st: t\r\nX-A: 1")
        connection.advance(.milliseconds(999))
        #expect(try connection.received().isEmpty)
        connection.advance(.milliseconds(1))
        #expect(try connection.received().hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
    }

    @Test func aHeadCompletedInTimeIsAnsweredAndTheNextHeadHasItsOwnDeadline() throws {
        let connection = try Connection(idleTimeout: .seconds(60), requestTimeout: .seconds(2))
        try connection.send("GET /hello HTTP/1.1\r\n")
        connection.advance(.milliseconds(1_500))
        try connection.send("Host: t\r\n\r\nGET /hel")
        #expect(try connection.received().hasPrefix("HTTP/1.1 200 OK\r\n"))
        connection.advance(.milliseconds(1_999))
        #expect(try connection.received().isEmpty)
        try connection.send("lo HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try connection.received().hasPrefix("HTTP/1.1 200 OK\r\n"))
        connection.advance(.seconds(10))
        #expect(try connection.received().isEmpty, "no 408 once the second request is answered")
        #expect(connection.isOpen)
    }

    @Test func aBodyThatArrivesBeforeTheDeadlineIsAnsweredAndTheTimerIsGone() throws {
        let connection = try Connection(requestTimeout: .seconds(2))
        try connection.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nabc")
        connection.advance(.seconds(1))
        try connection.send("def")
        #expect(try connection.received().hasSuffix("\r\n\r\nabcdef"))
        connection.advance(.seconds(5))
        #expect(try connection.received().isEmpty, "no 408 for a request already answered")
        #expect(connection.isOpen)
    }

    @Test func anIdleConnectionIsClosedByTheSweepButNotBeforeItsTimeout() throws {
        // An 8 s timeout: the sweep runs every 2 s (a quarter of it, at most 1 s: here 1 s).
        let connection = try Connection(idleTimeout: .seconds(8))
        try connection.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        _ = try connection.received()
        connection.advance(.seconds(7))
        #expect(connection.isOpen)
        connection.advance(.milliseconds(2_100))
        #expect(!connection.isOpen)
    }

    @Test func aConnectionWithARequestBeingReadIsNotIdle() throws {
        let connection = try Connection(idleTimeout: .seconds(8), requestTimeout: .seconds(60))
        try connection.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        connection.advance(.seconds(30))
        #expect(connection.isOpen, "the request's own deadline governs it, not the idle sweep")
    }

    @Test func continueIsSentBeforeTheBodyIsAsked() throws {
        let connection = try Connection()
        try connection.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        #expect(try connection.received() == "HTTP/1.1 100 Continue\r\n\r\n")
        try connection.send("body")
        #expect(try connection.received().hasSuffix("\r\n\r\nbody"))
    }

    @Test func aBodyDeclaredOverTheLimitGets413AtOnceAndTheConnectionCloses() throws {
        let connection = try Connection(maximumBodyBytes: 16)
        try connection.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 17\r\n\r\n")
        let answer = try connection.received()
        #expect(answer.hasPrefix("HTTP/1.1 413 Content Too Large\r\n") || answer.hasPrefix("HTTP/1.1 413 Payload Too Large\r\n"))
        #expect(answer.lowercased().contains("connection: close"))
        connection.advance(.seconds(1))
        #expect(!connection.isOpen)
    }

    @Test func anUnparsableRequestGets400AfterTheResponsesBeforeIt() throws {
        let connection = try Connection()
        try connection.send("GET /first HTTP/1.1\r\nHost: t\r\n\r\nNOT HTTP\r\n\r\n")
        let answer = try connection.received()
        let first = try #require(answer.range(of: "hello /first"))
        let refusal = try #require(answer.range(of: "HTTP/1.1 400 Bad Request"))
        #expect(first.upperBound <= refusal.lowerBound)
        connection.advance(.seconds(1))
        #expect(!connection.isOpen)
    }

    @Test func connectionCloseIsHonouredAndWhatFollowsIsNotAnswered() throws {
        let connection = try Connection()
        try connection.send("GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n")
        let answer = try connection.received()
        #expect(answer.contains("hello /a"))
        #expect(!answer.contains("hello /b"))
        #expect(!connection.isOpen)
    }

    @Test func drainingClosesAnIdleConnectionAndAnswersTheLastRequestWithClose() throws {
        let idle = try Connection()
        idle.channel.pipeline.fireUserInboundEventTriggered(HTTPConnectionHandler.DrainEvent())
        #expect(!idle.isOpen)

        let busy = try Connection()
        try busy.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab")
        busy.channel.pipeline.fireUserInboundEventTriggered(HTTPConnectionHandler.DrainEvent())
        #expect(busy.isOpen, "a request in flight is answered first")
        try busy.send("cd")
        let answer = try busy.received()
        #expect(answer.hasSuffix("\r\n\r\nabcd"))
        #expect(answer.lowercased().contains("connection: close"))
        #expect(!busy.isOpen)
    }
}

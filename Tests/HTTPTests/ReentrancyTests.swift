import HTTP
import NIOCore
import NIOHTTP1
import TestSupport
import Testing

/// Responses answered on the spot (`Task.immediate`), inside the read that parsed their request or inside the end
/// of the response before them, while the answers before them are written but not flushed yet.
@Suite(.timeLimit(.minutes(1)))
struct ReentrancyTests {
    /// A route whose response head cannot be written (a header value with CR LF): the connection refuses to send
    /// it and closes.
    static func run(_ body: @Sendable (Int) async throws -> Void) async throws {
        try await Served.run(routes: { router in
            router.on(.GET, "/bad-header") { _, _ in
                Response(headers: ["Content-Type": "text/plain", "X-Bad": "a\r\nInjected: yes"], body: .bytes(ByteBuffer(string: "bad")))
            }
        }) { served in try await body(served.client.port) }
    }

    /// Both requests in one read: the first is answered on the spot and its answer waits for the end of the parse
    /// to be flushed; the second's head cannot be written, and the connection closes. The first answer must still
    /// reach the client (the close must not discard it unflushed).
    @Test func anAnswerBeforeAnUnwritableResponseInTheSameReadIsNotLost() async throws {
        try await Self.run { port in
            let connection = try await TestConnection.connect(port: port)
            try await connection.send("GET /hello?name=a HTTP/1.1\r\nHost: t\r\n\r\nGET /bad-header HTTP/1.1\r\nHost: t\r\n\r\n")
            let text = String(decoding: try await connection.readUntilClosed(timeout: .seconds(2)), as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 200 ") && text.hasSuffix("hello a"), "got: \(text.debugDescription)")
            #expect(!text.contains("Injected"))
        }
    }

    /// The same after a suspended responder: the slow answer's end writes it, then answers the queued request on
    /// the spot before flushing; that one closes the connection.
    @Test func anAnswerBeforeAnUnwritableQueuedResponseIsNotLost() async throws {
        try await Self.run { port in
            let connection = try await TestConnection.connect(port: port)
            try await connection.send("GET /slow?ms=30 HTTP/1.1\r\nHost: t\r\n\r\nGET /bad-header HTTP/1.1\r\nHost: t\r\n\r\n")
            let text = String(decoding: try await connection.readUntilClosed(timeout: .seconds(2)), as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 200 ") && text.hasSuffix("slow"), "got: \(text.debugDescription)")
            #expect(!text.contains("Injected"))
        }
    }
}

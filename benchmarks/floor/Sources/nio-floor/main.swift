// The floor under Tandem's CPU per event on SwiftNIO: a server that answers tandem-bench's fanout in Tandem's wire
// shape (a PC's event stream per session; validate-session, input-started and submit each put one event on it; submit
// ends the stream) with nothing but what SwiftNIO itself costs. No sessions beyond a dictionary, no broker, no task, no
// actor, no JSON, no checks, no metrics. Every response's bytes are made once; a request is matched on its bytes, and
// a session's key is a slice of the bytes received (no allocation per request of its own). What Tandem spends above
// this is Tandem's; what this spends is the part no Tandem change on SwiftNIO can remove (BENCHMARKS.md, "the floor").
//
// Not a server to use: it trusts every byte (it only ever talks to tandem-bench). One event loop, as Tandem's bench
// node and nginx's one worker. Environment: HOST, PORT (as tandem-bench starts Tandem).
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// The open streams by session, used only on the one loop (so no lock).
final class Streams: @unchecked Sendable {
    struct Entry {
        var context: ChannelHandlerContext
        var nextID: Int
    }
    var bySession: [ByteBuffer: Entry] = [:]
}

/// Bytes shaped like Tandem's (the same heads, bodies of the same sizes), made once.
enum Bytes {
    static let securityHeaders =
        "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n"
        + "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'; base-uri 'none'\r\nCross-Origin-Resource-Policy: same-origin\r\n"
    static let streamHead =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
        + "Set-Cookie: tandem_reader_0000000000000000000000=1039f0df447d188538fad70ababe5992; Path=/api; Max-Age=600; HttpOnly; SameSite=Strict\r\n"
        + securityHeaders + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    static let opening =
        "retry: 2000\n\nid: 0\ndata: {\"expiryTime\":1795977668905,\"serverTime\":1795977068905,\"ttlMinutes\":10,\"type\":\"session-info\"}\n\n"
    static let validAnswer: String = {
        let body = "{\"expiryTime\":1795977668905,\"message\":\"セッションは有効です\",\"pairingCode\":\"7123\",\"serverTime\":1795977069405,\"ttlMinutes\":10,\"valid\":true}"
        return "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nCache-Control: no-store\r\n"
            + "Set-Cookie: tandem_phone_0000000000000000000000=fbde85d000089dce5daf0ce5451a89e1; Path=/api; Max-Age=600; HttpOnly; SameSite=Strict\r\n"
            + securityHeaders + "Content-Length: \(body.utf8.count)\r\n\r\n" + body
    }()
    static let okAnswer: String = {
        let body = "{\"message\":\"送信が完了しました\",\"success\":true}"
        return "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n" + securityHeaders
            + "Content-Length: \(body.utf8.count)\r\n\r\n" + body
    }()
    static let inputStartedAnswer: String = {
        let body = "{\"success\":true}"
        return "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n" + securityHeaders
            + "Content-Length: \(body.utf8.count)\r\n\r\n" + body
    }()
    static let notFound = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    static let events = [
        "", "event: connected\nid: 1\ndata: {\"code\":\"7123\"}\n\n", "event: input-started\nid: 2\ndata: {}\n\n",
        "event: complete\nid: 3\ndata: {\"name\":\"bench\",\"phone\":\"0901234\"}\n\n",
    ]
    static let lastChunk = "0\r\n\r\n"
    static func chunk(_ text: String) -> String { String(text.utf8.count, radix: 16) + "\r\n" + text + "\r\n" }
    static let a = ByteBufferAllocator()
    static let streamOpen = a.buffer(string: streamHead + chunk(opening))
    static let eventBuffers: [ByteBuffer] = events.map { a.buffer(string: chunk($0)) }
    static let lastChunkBuffer = a.buffer(string: lastChunk)
    static let valid = a.buffer(string: validAnswer)
    static let ok = a.buffer(string: okAnswer)
    static let inputStarted = a.buffer(string: inputStartedAnswer)
    static let nf = a.buffer(string: notFound)
}

@inline(__always) func starts(_ p: UnsafeRawBufferPointer, _ s: StaticString) -> Bool {
    let n = s.utf8CodeUnitCount
    guard p.count >= n else { return false }
    return memcmp(p.baseAddress!, s.utf8Start, n) == 0
}

final class FloorHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    enum Kind { case stream, validate, inputStarted, submit, other }

    let streams: Streams
    var received: ByteBuffer?
    var streamSession: ByteBuffer?
    var wrote = false

    init(streams: Streams) { self.streams = streams }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if var pending = received {
            pending.writeBuffer(&bytes)
            bytes = pending
        }
        received = nil
        while let end = Self.headEnd(bytes) {
            guard let length = Self.contentLength(bytes, headEnd: end) else {
                context.close(promise: nil)
                return
            }
            guard bytes.readableBytes >= end + length else { break }
            let head = bytes.readSlice(length: end)!
            let body = bytes.readSlice(length: length)!
            handle(head: head, body: body, context: context)
        }
        // Bounded: a head that never ends is not a request of the bench's.
        guard bytes.readableBytes <= 65536 else {
            context.close(promise: nil)
            return
        }
        if bytes.readableBytes > 0 { received = bytes }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if wrote {
            wrote = false
            context.flush()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let session = streamSession, streams.bySession[session]?.context === context { streams.bySession[session] = nil }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }

    /// The index just past the head's empty line, if the head is all here.
    static func headEnd(_ buffer: ByteBuffer) -> Int? {
        buffer.withUnsafeReadableBytes { p -> Int? in
            guard p.count >= 4 else { return nil }
            var i = 0
            while i + 3 < p.count {
                if p[i] == 13, p[i + 1] == 10, p[i + 2] == 13, p[i + 3] == 10 { return i + 4 }
                i += 1
            }
            return nil
        }
    }

    /// The head's `Content-Length` (0 without one); nil for one too long to be a request of the bench's.
    static func contentLength(_ buffer: ByteBuffer, headEnd: Int) -> Int? {
        buffer.withUnsafeReadableBytes { p -> Int? in
            guard p.first == 80 else { return 0 }  // only a POST has a body here
            let name: StaticString = "\ncontent-length:"
            let n = name.utf8CodeUnitCount
            let m = name.utf8Start
            var i = 0
            outer: while i + n < headEnd {
                for j in 0..<n where p[i + j] | (p[i + j] >= 65 && p[i + j] <= 90 ? 32 : 0) != m[j] {
                    i += 1
                    continue outer
                }
                var k = i + n
                var value = 0
                while k < headEnd, p[k] == 32 { k += 1 }
                // At most seven digits: no length can overflow, and anything larger than a request here is refused.
                var digits = 0
                while k < headEnd, p[k] >= 48, p[k] <= 57 {
                    guard digits < 7 else { return nil }
                    value = value * 10 + Int(p[k] - 48)
                    digits += 1
                    k += 1
                }
                return value
            }
            return 0
        }
    }

    /// The session id after `marker` in `bytes`, as a slice of it (no copy).
    static func session(after marker: StaticString, in bytes: ByteBuffer) -> ByteBuffer? {
        let range = bytes.withUnsafeReadableBytes { p -> Range<Int>? in
            let n = marker.utf8CodeUnitCount
            let m = marker.utf8Start
            guard p.count >= n else { return nil }
            var i = 0
            while i + n <= p.count {
                if memcmp(p.baseAddress! + i, m, n) == 0 {
                    var k = i + n
                    while k < p.count, p[k] != 34, p[k] != 32, p[k] != 38, p[k] != 13 { k += 1 }
                    return (i + n)..<k
                }
                i += 1
            }
            return nil
        }
        guard let range else { return nil }
        return bytes.getSlice(at: bytes.readerIndex + range.lowerBound, length: range.count)
    }

    func handle(head: ByteBuffer, body: ByteBuffer, context: ChannelHandlerContext) {
        let kind = head.withUnsafeReadableBytes { p -> Kind in
            if starts(p, "GET /api/events?") { return .stream }
            if starts(p, "GET /api/validate-session?") { return .validate }
            if starts(p, "POST /api/input-started ") { return .inputStarted }
            if starts(p, "POST /api/submit ") { return .submit }
            return .other
        }
        switch kind {
        case .stream:
            guard let session = Self.session(after: "session=", in: head) else { return answer(Bytes.nf, context) }
            streamSession = session
            context.writeAndFlush(wrapOutboundOut(Bytes.streamOpen), promise: nil)
            streams.bySession[session] = .init(context: context, nextID: 1)
            return
        case .other:
            return answer(Bytes.nf, context)
        case .validate, .inputStarted, .submit:
            break
        }
        let session = kind == .validate ? Self.session(after: "session=", in: head) : Self.session(after: "\"sessionId\":\"", in: body)
        guard let session, var entry = streams.bySession[session], entry.nextID < Bytes.events.count else {
            return answer(Bytes.nf, context)
        }
        // The event first, as Tandem writes it before the answer.
        let stream = entry.context
        entry.nextID += 1
        if entry.nextID == Bytes.events.count {
            streams.bySession[session] = nil
            // Two writes, as Tandem's stream writes its last event and then ends.
            stream.writeAndFlush(NIOAny(Bytes.eventBuffers[entry.nextID - 1]), promise: nil)
            stream.writeAndFlush(NIOAny(Bytes.lastChunkBuffer), promise: nil)
            stream.close(promise: nil)
        } else {
            stream.writeAndFlush(NIOAny(Bytes.eventBuffers[entry.nextID - 1]), promise: nil)
            streams.bySession[session] = entry
        }
        answer(kind == .validate ? Bytes.valid : kind == .inputStarted ? Bytes.inputStarted : Bytes.ok, context)
    }

    func answer(_ buffer: ByteBuffer, _ context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(buffer), promise: nil)
        wrote = true
    }
}

let host = getenv("HOST").map { String(cString: $0) } ?? "127.0.0.1"
let port = getenv("PORT").flatMap { Int(String(cString: $0)) } ?? 8080
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let streams = Streams()
let server = try ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 4096)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            let options = channel.syncOptions!
            try options.setOption(.socketOption(.tcp_nodelay), value: 1)
            try options.setOption(.maxMessagesPerRead, value: 16)
            try options.setOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536))
            try channel.pipeline.syncOperations.addHandler(FloorHandler(streams: streams))
        }
    }
    .bind(host: host, port: port)
    .wait()
try server.closeFuture.wait()

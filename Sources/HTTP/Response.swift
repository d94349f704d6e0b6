import NIOCore
import NIOHTTP1

/// What a responder answers: a status, headers and either a complete body or a stream.
public struct Response: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: ResponseBody

    public init(status: HTTPResponseStatus = .ok, headers: HTTPHeaders = [:], body: ResponseBody = .empty) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A complete body with its content type.
    public init(status: HTTPResponseStatus = .ok, contentType: String, body: ByteBuffer, headers: HTTPHeaders = [:]) {
        var headers = headers
        headers.replaceOrAdd(name: "Content-Type", value: contentType)
        self.init(status: status, headers: headers, body: .bytes(body))
    }
}

/// The body of a ``Response``.
public enum ResponseBody: Sendable {
    case bytes(ByteBuffer)
    /// A body written as it is produced (chunked). The closure runs in a task of its own; when it returns the
    /// response ends. It is not run for `HEAD` requests.
    case stream(@Sendable (ResponseBodyWriter) async throws -> Void)
    /// An event stream (chunked), produced by one task pinned to the connection's event loop (a task executor
    /// preference). `produce` starts once the head is written, when the request's own task has already ended, so a
    /// long-lived stream keeps no request chain suspended; the response ends when it returns. The task is cancelled
    /// when the connection closes, and when the server drains (then ``EventStreamChannel/isDraining`` is true and
    /// the producer may write a last `retry:` hint). It also runs, already cancelled, when the connection is gone
    /// before the head could be written or for `HEAD`, so whatever the responder set up for it is released.
    case eventStream(@Sendable (EventStreamChannel) async -> Void)

    public static var empty: ResponseBody { .bytes(ByteBuffer()) }
}

/// Writes the parts of a streamed body. Each `write` is flushed at once and returns when the bytes are on their way
/// to the socket, so a slow reader holds at most the socket's buffers here.
public struct ResponseBodyWriter: Sendable {
    private let channel: any Channel
    /// Whether each part is framed as a chunk (HTTP/1.1), or the body runs until the connection closes (HTTP/1.0).
    private let chunked: Bool

    init(channel: any Channel, chunked: Bool) {
        self.channel = channel
        self.chunked = chunked
    }

    /// An allocator for buffers that are written here.
    public var allocator: ByteBufferAllocator { channel.allocator }

    /// Writes and flushes one part of the body.
    public func write(_ buffer: ByteBuffer) async throws {
        guard buffer.readableBytes > 0 else { return }  // an empty chunk would end a chunked body
        try await channel.writeAndFlush(chunked ? HTTP1ResponseHead.chunk(buffer, allocator: channel.allocator) : buffer).get()
    }
}

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
    /// A body written as it is produced (chunked). The closure runs on the connection's task; when it returns the
    /// response ends. It is not run for `HEAD` requests.
    case stream(@Sendable (ResponseBodyWriter) async throws -> Void)

    public static var empty: ResponseBody { .bytes(ByteBuffer()) }
}

/// Writes the parts of a streamed body. Each `write` is flushed at once; it suspends while the peer is slow to read,
/// so a slow reader holds at most the socket's buffers here.
public struct ResponseBodyWriter: Sendable {
    private let outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>
    private let closeFuture: EventLoopFuture<Void>
    /// An allocator for buffers that are written here.
    public let allocator: ByteBufferAllocator

    init(outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>, channel: any Channel) {
        self.outbound = outbound
        self.closeFuture = channel.closeFuture
        self.allocator = channel.allocator
    }

    /// Writes and flushes one part of the body.
    public func write(_ buffer: ByteBuffer) async throws {
        try await outbound.write(.body(.byteBuffer(buffer)))
    }

    /// Calls `callback` once when the connection closes, for whatever reason (at once if it is already closed).
    /// A producer waiting for something other than a write uses this to notice that the peer went away.
    public func onClose(_ callback: @escaping @Sendable () -> Void) {
        closeFuture.whenComplete { _ in callback() }
    }
}

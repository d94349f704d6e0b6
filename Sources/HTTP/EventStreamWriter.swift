import NIOCore
import NIOHTTP1

/// Writes Server-Sent Events onto a streamed response body; every call is one write, flushed at once.
public struct EventStreamWriter: Sendable {
    private let body: ResponseBodyWriter

    public init(_ body: ResponseBodyWriter) {
        self.body = body
    }

    /// The headers an event stream needs: the media type, no caching, and no buffering in nginx-style proxies.
    public static var headers: HTTPHeaders {
        [
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        ]
    }

    /// Sends events in one write (one flush), in order.
    public func send(_ events: some Sequence<ServerSentEvent>) async throws {
        var buffer = body.allocator.buffer(capacity: 256)
        for event in events { event.write(to: &buffer) }
        guard buffer.readableBytes > 0 else { return }
        try await body.write(buffer)
    }

    public func send(_ event: ServerSentEvent) async throws {
        try await send(CollectionOfOne(event))
    }

    /// Sends a comment line, such as `: heartbeat`.
    public func sendComment(_ text: String) async throws {
        var buffer = body.allocator.buffer(capacity: text.utf8.count + 4)
        ServerSentEvent.writeComment(text, to: &buffer)
        try await body.write(buffer)
    }

    /// Sends a `retry:` hint, the delay in milliseconds before the browser reconnects.
    public func sendRetry(milliseconds: Int) async throws {
        var buffer = body.allocator.buffer(capacity: 16)
        ServerSentEvent.writeRetry(milliseconds: milliseconds, to: &buffer)
        try await body.write(buffer)
    }
}

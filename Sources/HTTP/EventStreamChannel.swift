import NIOCore
import NIOHTTP1
import Synchronization

/// The open connection of an event-stream response, handed to the responder once the response head is written.
/// No task waits on it: the responder keeps the handle and writes whenever it has something to send, from any
/// thread, so a waiting stream costs only its connection.
///
/// Writes are refused (`write` returns false) once the peer stops reading and the channel's outbound buffer
/// passes its high watermark: the stream's owner then ends it, and the client resumes with `Last-Event-ID`, so a
/// slow reader never grows memory here.
public final class EventStreamChannel: Sendable {
    private let channel: any Channel
    private let onFinish: @Sendable () -> Void
    private let drainHandler = Mutex<(@Sendable () -> Void)?>(nil)

    init(channel: any Channel, onFinish: @escaping @Sendable () -> Void) {
        self.channel = channel
        self.onFinish = onFinish
    }

    /// An allocator for the buffers written here.
    public var allocator: ByteBufferAllocator { channel.allocator }

    /// Whether the connection is open.
    public var isOpen: Bool { channel.isActive }

    /// Queues `buffer` on the connection and flushes it. False, and nothing queued, when the connection is closed
    /// or the peer is so far behind that the outbound buffer is full.
    @discardableResult
    public func write(_ buffer: ByteBuffer) -> Bool {
        guard channel.isActive, channel.isWritable else { return false }
        channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(buffer)), promise: nil)
        return true
    }

    /// Ends the response and closes the connection (browsers reconnect to an event stream by themselves). Safe to
    /// call more than once, from any thread.
    public func finish() {
        onFinish()
    }

    /// Calls `callback` once when the connection closes, at once if it already has.
    public func onClose(_ callback: @escaping @Sendable () -> Void) {
        channel.closeFuture.whenComplete { _ in callback() }
    }

    /// Sets what to do when the server drains: typically a last `retry:` hint, then `finish()`. Without one, a
    /// draining server just finishes the stream.
    public func onDrain(_ callback: @escaping @Sendable () -> Void) {
        drainHandler.withLock { $0 = callback }
    }

    func drain() {
        if let handler = drainHandler.withLock({ $0 }) { handler() } else { finish() }
    }
}

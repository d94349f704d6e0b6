import LoopOrder
import NIOCore
import Synchronization

/// The open connection of an event-stream response, handed to its producer task (see
/// ``ResponseBody/eventStream(_:)``).
///
/// Writes are refused (`write` returns false) once the peer stops reading and the channel's outbound buffer
/// passes its high watermark: the producer then ends the stream, and the client resumes with `Last-Event-ID`, so a
/// slow reader never grows memory here. A write does not wait for the socket: the producer, on the connection's
/// loop, writes straight into the channel.
public final class EventStreamChannel: Sendable {
    private let channel: any Channel
    private let handler: NIOLoopBound<HTTPConnectionHandler>
    private let context: NIOLoopBound<ChannelHandlerContext>
    /// Runs tasks on the connection's event loop, for the stream's owner's bookkeeping (see ``EventLoopTaskExecutor``).
    public let taskExecutor: any TaskExecutor
    /// Keeps the writes in the order they were made, from the loop and from other threads.
    private let writes: LoopOrderedSubmitter
    private let draining = Atomic<Bool>(false)
    /// How the body's bytes go on the wire.
    enum Framing {
        /// Each write is one chunk (HTTP/1.1).
        case chunked
        /// The body runs until the connection closes (HTTP/1.0).
        case untilClose
        /// No body is sent (a `HEAD` request): writes are dropped.
        case none
    }

    private let framing: Framing

    init(channel: any Channel, handler: HTTPConnectionHandler, context: ChannelHandlerContext, executor: any TaskExecutor, framing: Framing) {
        self.channel = channel
        self.writes = LoopOrderedSubmitter(eventLoop: channel.eventLoop)
        self.framing = framing
        self.taskExecutor = executor
        self.handler = NIOLoopBound(handler, eventLoop: context.eventLoop)
        self.context = NIOLoopBound(context, eventLoop: context.eventLoop)
    }

    /// Whether the connection is open.
    public var isOpen: Bool { channel.isActive }

    /// Whether the server drains: the producer was cancelled to end the stream soon, and may write a last `retry:`
    /// hint so the browser comes back at once (to another node, behind a balancer).
    public var isDraining: Bool { draining.load(ordering: .acquiring) }

    func markDraining() { draining.store(true, ordering: .releasing) }

    /// An allocator for the buffers written here.
    public var allocator: ByteBufferAllocator { channel.allocator }

    /// Queues `buffer` on the connection and flushes it. False, and nothing queued, when the connection is closed
    /// or the peer is so far behind that the outbound buffer is full.
    ///
    /// Writes leave in the order they were made (callers serialise their writes). On the connection's own loop a
    /// write goes out at once, unless writes queued from other threads are still waiting on the loop: then it queues
    /// behind them, so it never overtakes them.
    ///
    /// A buffer made by ``buffer(capacity:)``, and not shared, is framed where it is; any other is framed into a copy.
    @discardableResult
    public func write(_ buffer: consuming ByteBuffer) -> Bool {
        guard channel.isActive, channel.isWritable else { return false }
        guard buffer.readableBytes > 0 else { return true }  // an empty chunk would end the body
        var part = buffer
        switch framing {
        case .chunked: HTTP1ResponseHead.frameChunkInPlace(&part)
        case .untilClose: break
        case .none: return true
        }
        submit(part)
        return true
    }

    /// Bytes written often and always the same (a heartbeat), framed once for each framing: writing them allocates
    /// and copies nothing.
    public struct PreparedBytes: Sendable {
        /// The bytes, unframed.
        public let plain: ByteBuffer
        let chunk: ByteBuffer

        public init(_ bytes: ByteBuffer) {
            plain = bytes
            chunk = HTTP1ResponseHead.chunk(bytes, allocator: ByteBufferAllocator())
        }
    }

    /// Queues `prepared` as ``write(_:)`` would queue its bytes.
    @discardableResult
    public func write(_ prepared: PreparedBytes) -> Bool {
        guard channel.isActive, channel.isWritable else { return false }
        guard prepared.plain.readableBytes > 0 else { return true }  // an empty chunk would end the body
        let part: ByteBuffer
        switch framing {
        case .chunked: part = prepared.chunk
        case .untilClose: part = prepared.plain
        case .none: return true
        }
        submit(part)
        return true
    }

    /// A buffer for ``write(_:)`` with room in front for the chunk's size line, so that write does not copy it.
    public static func buffer(capacity: Int) -> ByteBuffer {
        HTTP1ResponseHead.bufferWithSizeLineRoom(capacity: capacity, allocator: ByteBufferAllocator())
    }

    /// Queues what `fill` writes into a fresh buffer, as ``write(_:)`` does, but framed where it was written: the
    /// buffer is made with room for the chunk's size line in front, so the event's bytes are never copied.
    /// `capacity`: what `fill` is expected to write (the buffer grows if it writes more).
    @discardableResult
    public func write(capacity: Int, _ fill: (inout ByteBuffer) -> Void) -> Bool {
        var buffer = Self.buffer(capacity: capacity)
        fill(&buffer)
        // Nothing to write is no refusal, whatever the connection's state.
        guard buffer.readableBytes > 0 else { return true }
        return write(consume buffer)
    }

    private func submit(_ part: ByteBuffer) {
        writes.submit((channel, part)) { channel, part in channel.writeAndFlush(part, promise: nil) }
    }

    /// Ends the response and closes the connection (browsers reconnect to an event stream by themselves). Safe to
    /// call more than once, from any thread. The server calls it when the producer returns.
    func finish() {
        let handler = self.handler
        let context = self.context
        channel.eventLoop.execute { handler.value.finishEventStream(context: context.value) }
    }
}

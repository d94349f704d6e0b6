import NIOCore

/// The client side of one SSE stream: writes the request, reads the head, de-chunks, parses events.
final class StreamHandler: ChannelInboundHandler, SSESink {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let shard: Shard
    private let slot: Int
    private let generation: UInt32
    private var request: String
    private var head = ResponseHeadParser()
    private var headDone = false
    private var chunked = false
    private var chunks = ChunkedDecoder()
    private var sse = SSEParser()

    init(shard: Shard, slot: Int, generation: UInt32, request: String) {
        self.shard = shard
        self.slot = slot
        self.generation = generation
        self.request = request
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: request)), promise: nil)
        request = ""
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        var refused = false
        buffer.withUnsafeReadableBytes { p in
            var i = 0
            if !headDone {
                guard let parsed = head.feed(p, &i) else { return }
                headDone = true
                head.release()
                chunked = parsed.chunked
                shard.streamHead(slot, generation, status: parsed.status)
                if parsed.status != 200 { refused = true; return }
            }
            if chunked {
                var decoder = chunks
                decoder.feed(p, &i) { piece in sse.feed(piece, sink: self) }
                chunks = decoder
            } else if i < p.count {
                sse.feed(UnsafeRawBufferPointer(rebasing: p[i...]), sink: self)
            }
        }
        if refused { context.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        shard.streamClosed(slot, generation)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func sseEvent(id: Int?) { shard.streamEvent(slot, generation, id: id) }
    func sseComment() { shard.streamComment(slot, generation) }
}

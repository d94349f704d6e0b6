import NIOCore

/// A tag that matches a publish response to its slot (and to the slot's current session, by generation).
struct PublishTag {
    var slot: Int32
    var generation: UInt32
    var event: Int8
}

/// One keep-alive connection of the publishing pool: requests are pipelined, responses matched in order.
final class PublishHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let shard: Shard
    private let index: Int
    private var context: ChannelHandlerContext?
    private var tags = CircularBuffer<PublishTag>(initialCapacity: 64)
    private var head = ResponseHeadParser()
    private var status = 0
    private var phoneCookie: String?
    private var bodyLeft = 0
    private var chunks: ChunkedDecoder?

    init(shard: Shard, index: Int) {
        self.shard = shard
        self.index = index
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func send(_ request: String, tag: PublishTag, flush: Bool) {
        guard let context else { return }
        tags.append(tag)
        let buffer = context.channel.allocator.buffer(string: request)
        if flush { context.writeAndFlush(wrapOutboundOut(buffer), promise: nil) } else { context.write(wrapOutboundOut(buffer), promise: nil) }
    }

    func flush() { context?.flush() }

    func close() { context?.close(promise: nil) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        buffer.withUnsafeReadableBytes { p in
            var i = 0
            while i < p.count {
                if var decoder = chunks {
                    decoder.feed(p, &i) { _ in }
                    chunks = decoder
                    if decoder.finished { chunks = nil; complete() }
                } else if bodyLeft > 0 {
                    let take = min(bodyLeft, p.count - i)
                    i += take
                    bodyLeft -= take
                    if bodyLeft == 0 { complete() }
                } else if let parsed = head.feed(p, &i) {
                    status = parsed.status
                    phoneCookie = parsed.phoneCookie
                    if parsed.chunked {
                        chunks = ChunkedDecoder()
                    } else if let length = parsed.contentLength, length > 0 {
                        bodyLeft = length
                    } else {
                        complete()
                    }
                }
            }
        }
    }

    private func complete() {
        guard let tag = tags.popFirst() else { return }
        shard.published(tag, status: status, phoneCookie: phoneCookie)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let unanswered = Array(tags)
        tags.removeAll()
        self.context = nil
        shard.publisherClosed(index, unanswered: unanswered)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

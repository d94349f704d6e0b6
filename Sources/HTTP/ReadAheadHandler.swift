import NIOCore
import NIOHTTP1

/// Keeps a keep-alive connection's socket registered for reading while its request is answered.
///
/// `HTTPServerPipelineHandler` holds back `read()` from the moment a request has arrived until its response ends.
/// NIO then takes the socket out of epoll after the read and puts it back when the response is out: two
/// `epoll_ctl` calls for every request, a measurable share of a small request's cost. Sitting between the decoder
/// and the pipelining handler, this handler asks for the next read itself while fewer than `limit` requests wait for
/// their response. The pipelining handler still queues pipelined requests and answers them in order; past the
/// limit its back-pressure applies as before, so a client that pipelines without reading cannot grow memory beyond
/// one read's worth.
final class ReadAheadHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let limit: Int
    /// Requests fully received whose response has not ended yet.
    private var unanswered = 0

    init(limit: Int = 4) {
        self.limit = limit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .end = unwrapInboundIn(data) { unanswered += 1 }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
        if unanswered < limit, context.channel.isActive { context.read() }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), unanswered > 0 { unanswered -= 1 }
        context.write(data, promise: promise)
    }
}

import NIOCore
import NIOHTTP1

/// Keeps a keep-alive connection's socket registered for reading while its request is answered.
///
/// `HTTPServerPipelineHandler` holds back `read()` from the moment a request has arrived until its response ends.
/// NIO then takes the socket out of epoll after the read and puts it back when the response is out: two
/// `epoll_ctl` calls for every request, a measurable share of a small request's cost. Sitting between the decoder
/// and the pipelining handler, this handler asks for the next read itself while fewer than `limit` requests are in
/// flight and no request queued behind another is still receiving its body. The pipelining handler still queues
/// pipelined requests and answers them in order; beyond that its back-pressure applies as before, so a client that
/// pipelines without reading, or sends a large body behind a pending request, gets at most one read's worth
/// buffered.
final class ReadAheadHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let limit: Int
    /// Requests whose head has arrived and whose response has not ended.
    private var inFlight = 0
    /// Between a request's head and its end.
    private var receivingBody = false

    init(limit: Int = 4) {
        self.limit = limit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            inFlight += 1
            receivingBody = true
        case .end:
            receivingBody = false
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
        // A body arriving for a request queued behind another one is left to the pipelining handler's back-pressure.
        let queuedBodyArriving = receivingBody && inFlight > 1
        if inFlight < limit, !queuedBodyArriving, context.channel.isActive { context.read() }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), inFlight > 0 { inFlight -= 1 }
        context.write(data, promise: promise)
    }
}

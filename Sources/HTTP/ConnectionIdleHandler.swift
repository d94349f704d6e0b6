import NIOCore
import NIOHTTP1

/// Closes a connection that has had no request in flight for `timeout`, and closes idle connections when the server
/// drains. A request is in flight from its head until its response's end has been written, so a long streaming
/// response is never idle. A timer exists only while the connection is idle: an SSE stream costs no timer here.
final class ConnectionIdleHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// Sent down the pipeline when the server drains: close when idle, now or after the response in flight.
    struct DrainEvent: Sendable {}

    private let timeout: TimeAmount
    private var requestsInFlight = 0
    private var timer: Scheduled<Void>?
    private var draining = false

    init(timeout: Duration) {
        let nanoseconds = timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        self.timeout = .nanoseconds(max(1, nanoseconds))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { becameIdle(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        becameIdle(context: context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) {
            requestsInFlight += 1
            timer?.cancel()
            timer = nil
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .end = unwrapOutboundIn(data) else {
            context.write(data, promise: promise)
            return
        }
        context.write(data, promise: promise)
        requestsInFlight = max(0, requestsInFlight - 1)
        if requestsInFlight == 0 {
            if draining {
                context.flush()
                context.close(promise: nil)
            } else {
                becameIdle(context: context)
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is DrainEvent {
            draining = true
            if requestsInFlight == 0 { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func becameIdle(context: ChannelHandlerContext) {
        timer?.cancel()
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            loopBound.value.close(promise: nil)
        }
    }
}

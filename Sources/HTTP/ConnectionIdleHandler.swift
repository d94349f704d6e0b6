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
    private let requestTimeout: TimeAmount
    private var requestsInFlight = 0
    private var timer: Scheduled<Void>?
    /// Runs from a request's head until its end has been read: a body trickling in cannot hold the connection.
    /// Armed only when a read ends with the request still incomplete, so a request that arrives whole (nearly
    /// all of them) costs no timer.
    private var requestTimer: Scheduled<Void>?
    private var awaitingRequestEnd = false
    private var draining = false

    private let extraHeaders: [(String, String)]

    init(timeout: Duration, requestTimeout: Duration = .seconds(10), extraHeaders: [(String, String)] = []) {
        self.timeout = Self.timeAmount(timeout)
        self.requestTimeout = Self.timeAmount(requestTimeout)
        self.extraHeaders = extraHeaders
    }

    private static func timeAmount(_ duration: Duration) -> TimeAmount {
        .nanoseconds(max(1, duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000))
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
        requestTimer?.cancel()
        requestTimer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            requestsInFlight += 1
            timer?.cancel()
            timer = nil
            awaitingRequestEnd = true
        case .end:
            awaitingRequestEnd = false
            requestTimer?.cancel()
            requestTimer = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if awaitingRequestEnd, requestTimer == nil {
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            requestTimer = context.eventLoop.scheduleTask(in: requestTimeout) {
                let (handler, context) = loopBound.value
                handler.requestTimedOut(context: context)
            }
        }
        context.fireChannelReadComplete()
    }

    private func requestTimedOut(context: ChannelHandlerContext) {
        requestTimer = nil
        let body = ByteBuffer(string: #"{"code":"request_timeout","message":"The request did not arrive in time.","success":false}"#)
        let headers = HTTPHeaders([
            ("Connection", "close"), ("Content-Type", "application/json; charset=utf-8"), ("Content-Length", String(body.readableBytes)),
        ] + extraHeaders)
        // Nothing more is read: a body that completes now must not start a second response on this connection.
        context.channel.setOption(.autoRead, value: false).whenFailure { _ in }
        awaitingRequestEnd = false
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .requestTimeout, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in loopBound.value.close(promise: nil) }
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
            // Handlers after this one (an event stream) drain too.
            context.fireUserInboundEventTriggered(event)
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

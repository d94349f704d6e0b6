import NIOCore
import NIOHTTP1

/// Closes a connection that has had no request in flight for `timeout`, and closes idle connections when the server
/// drains. A request is in flight from its head until its response's end has been written, so a long streaming
/// response is never idle. No timer per connection: the handler notes when it became idle, and its loop's
/// ``IdleConnectionSweeper`` closes the ones idle too long.
final class ConnectionIdleHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// Sent down the pipeline when the server drains: close when idle, now or after the response in flight.
    struct DrainEvent: Sendable {}

    private let sweeper: IdleConnectionSweeper
    private let requestTimeout: TimeAmount
    private var requestsInFlight = 0
    /// When the last response ended (or the connection opened); nil while a request is in flight.
    private var idleSince: NIODeadline?
    private var context: ChannelHandlerContext?
    /// Runs from a request's head until its end has been read: a body trickling in cannot hold the connection.
    /// Armed only when a read ends with the request still incomplete, so a request that arrives whole (nearly
    /// all of them) costs no timer.
    private var requestTimer: Scheduled<Void>?
    private var awaitingRequestEnd = false
    private var draining = false

    private let extraHeaders: [(String, String)]

    init(sweeper: IdleConnectionSweeper, requestTimeout: Duration = .seconds(10), extraHeaders: [(String, String)] = []) {
        self.sweeper = sweeper
        self.requestTimeout = Self.timeAmount(requestTimeout)
        self.extraHeaders = extraHeaders
    }

    static func timeAmount(_ duration: Duration) -> TimeAmount {
        .nanoseconds(max(1, duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        idleSince = .now()
        sweeper.register(self)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        sweeper.unregister(self)
        self.context = nil
        requestTimer?.cancel()
        requestTimer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            requestsInFlight += 1
            idleSince = nil
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
                idleSince = .now()
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

    /// Whether the connection has been idle since before `deadline`.
    fileprivate func isIdle(before deadline: NIODeadline) -> Bool {
        guard let idleSince else { return false }
        return idleSince < deadline
    }

    fileprivate func close() {
        idleSince = nil
        context?.close(promise: nil)
    }
}

/// Closes the idle connections of one event loop: one repeating sweep over the loop's connections, instead of a
/// timer per connection set and cancelled around every request. A connection is closed between `timeout` and
/// `timeout` plus one sweep interval after its last response.
final class IdleConnectionSweeper: @unchecked Sendable {
    // Unchecked: every property is touched only on `eventLoop` (handlers call in from their channel's loop, which is
    // this one; `stop` hops there).
    private let eventLoop: any EventLoop
    private let timeout: TimeAmount
    private let interval: TimeAmount
    private var handlers: [ObjectIdentifier: ConnectionIdleHandler] = [:]
    private var sweep: RepeatedTask?
    private var stopped = false

    init(eventLoop: any EventLoop, timeout: Duration) {
        self.eventLoop = eventLoop
        self.timeout = ConnectionIdleHandler.timeAmount(timeout)
        // A quarter of the timeout, between 50 ms and 1 s: precise enough, and cheap with thousands of connections.
        self.interval = .nanoseconds(min(max(self.timeout.nanoseconds / 4, 50_000_000), 1_000_000_000))
    }

    fileprivate func register(_ handler: ConnectionIdleHandler) {
        eventLoop.preconditionInEventLoop()
        guard !stopped else { return }
        handlers[ObjectIdentifier(handler)] = handler
        if sweep == nil {
            sweep = eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] _ in closeIdleConnections() }
        }
    }

    fileprivate func unregister(_ handler: ConnectionIdleHandler) {
        handlers.removeValue(forKey: ObjectIdentifier(handler))
    }

    private func closeIdleConnections() {
        let deadline = NIODeadline.now() - timeout
        // Collected first: closing removes handlers from the dictionary.
        let idle = handlers.values.filter { $0.isIdle(before: deadline) }
        for handler in idle { handler.close() }
    }

    /// Ends the sweep (the server has stopped).
    func stop() {
        eventLoop.execute { [self] in
            stopped = true
            sweep?.cancel()
            sweep = nil
            handlers = [:]
        }
    }
}

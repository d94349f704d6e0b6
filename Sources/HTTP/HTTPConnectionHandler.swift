import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// What every connection of one server shares.
struct HTTPServerContext: Sendable {
    let configuration: HTTPServer.Configuration
    let responder: any HTTPResponder
    let logger: Logger
    let connections: ConnectionTracker
    let requestCounter: RequestCounter
}

/// Numbers requests for log lines.
final class RequestCounter: Sendable {
    private let value = Atomic<UInt64>(0)

    func next() -> UInt64 {
        value.wrappingAdd(1, ordering: .relaxed).newValue
    }
}

/// Serves one connection on its event loop: reads a request (with its body, within the limits), hands it to the
/// responder in a task of its own, and writes the response when it is ready. Requests are answered one at a time
/// and in order; `HTTPServerPipelineHandler` holds back pipelined ones meanwhile. No task lives longer than the
/// responder's work (and a `.stream` body's producer): an idle connection or an event stream costs a channel,
/// not a suspended task.
final class HTTPConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private struct Exchange {
        var version: HTTPVersion
        var method: HTTPMethod
        /// The path only: query strings carry session IDs, which are capabilities and stay out of logs.
        var path: String
        var isKeepAlive: Bool
        /// Nil once a long-lived stream no longer needs it (see `slim()`).
        var request: Request?
        var started: ContinuousClock.Instant
        var requestID: UInt64

        /// What a long-lived stream keeps of its request: enough for its log line, not the headers and body.
        func slim() -> Exchange {
            var slim = self
            slim.request = nil
            return slim
        }
    }

    /// The server's logger with this request's id, for its handlers and its log line. Without access logs the id
    /// would match nothing, and copying the logger's metadata for every request is a measurable cost: it is left out.
    private func logger(for exchange: Exchange) -> Logger {
        guard accessLogged else { return server.logger }
        var logger = server.logger
        logger[metadataKey: "request.id"] = "\(String(exchange.requestID, radix: 36))"
        return logger
    }

    /// Whether each request gets its log line (level `info` or finer).
    private var accessLogged: Bool { server.logger.logLevel <= .info }

    private enum State {
        case idle
        case reading(Exchange)
        case responding(Exchange)
        case streamingEvents(Exchange, EventStreamChannel, HTTPResponseStatus)
        case done
    }

    private let server: HTTPServerContext
    private var state = State.idle
    /// Set once the request decoder is gone (an event stream): from then on every read is raw bytes, dropped.
    private var requestDecoderRemoved = false
    /// Hears of draining and of the connection's end, from an event stream's start until the connection closes.
    private var eventStreamDelegate: (any EventStreamDelegate)?
    private var draining = false

    /// The peer's address as text, made once per connection (glibc formats it with sprintf, which costs more than
    /// parsing a small request).
    private let peerAddress: String
    /// Runs this connection's request tasks on its event loop (see ``EventLoopTaskExecutor``).
    private let taskExecutor: EventLoopTaskExecutor

    init(server: HTTPServerContext, peerAddress: String, taskExecutor: EventLoopTaskExecutor) {
        self.server = server
        self.peerAddress = peerAddress
        self.taskExecutor = taskExecutor
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // An event stream reads no more requests; with the request decoder gone, whatever the client still sends
        // arrives as raw bytes, and is dropped unparsed (also after the stream has ended).
        if requestDecoderRemoved { return }
        if case .streamingEvents = state { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard case .idle = state else { return }
            let id = server.requestCounter.next()
            let channel = context.channel
            let request = Request(
                method: head.method,
                uri: head.uri,
                headers: head.headers,
                body: context.channel.allocator.buffer(capacity: 0),
                remoteAddress: channel.remoteAddress,
                clientAddress: ClientAddress.of(
                    peerAddress: peerAddress, forwardedFor: head.headers["x-forwarded-for"], trusted: server.configuration.trustedProxies)
            )
            let exchange = Exchange(
                version: head.version, method: head.method, path: String(request.path), isKeepAlive: head.isKeepAlive,
                request: request, started: .now, requestID: id)
            if let declared = head.headers.first(name: "content-length").flatMap({ Int($0) }), declared > server.configuration.maximumBodyBytes {
                refuseOversizedBody(exchange, context: context)
                return
            }
            if head.headers.first(name: "expect")?.lowercased() == "100-continue" {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
            }
            state = .reading(exchange)
        case .body(var chunk):
            guard case .reading(var exchange) = state else { return }
            guard (exchange.request?.body.readableBytes ?? 0) + chunk.readableBytes <= server.configuration.maximumBodyBytes else {
                refuseOversizedBody(exchange, context: context)
                return
            }
            state = .done  // no copy of the body while it grows
            exchange.request?.body.writeBuffer(&chunk)
            state = .reading(exchange)
        case .end:
            guard case .reading(let exchange) = state else { return }
            state = .responding(exchange)
            respond(to: exchange, context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        switch state {
        case .responding(let exchange):
            log(exchange, status: nil, ended: "client closed")
        case .streamingEvents(let exchange, _, let status):
            log(exchange, status: status, ended: "client closed")
        case .idle, .reading, .done:
            break
        }
        state = .done
        if let delegate = eventStreamDelegate {
            eventStreamDelegate = nil
            // Later on the loop, not now: the close may come from inside a write the delegate is making (a peer that
            // reset the connection), and the delegate must not be called back while it is in that write.
            context.eventLoop.execute { delegate.eventStreamDidClose() }
        }
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ConnectionIdleHandler.DrainEvent {
            draining = true
            if case .streamingEvents(_, let stream, _) = state {
                if let delegate = eventStreamDelegate { delegate.eventStreamShouldDrain() } else { stream.finish() }
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Protocol errors are answered by HTTPProtocolErrorHandler; anything else ends the connection.
        context.close(promise: nil)
    }

    // MARK: Responding

    private func respond(to exchange: Exchange, context: ChannelHandlerContext) {
        let responder = server.responder
        guard let request = exchange.request else { return }
        let logger = logger(for: exchange)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let response = context.eventLoop.makePromise(of: Response.self)
        // On this connection's loop: the task runs where the request was read, and its answer is written without
        // waking another thread.
        Task(executorPreference: taskExecutor) {
            response.succeed(await responder.respond(to: request, logger: logger))
        }
        response.futureResult.whenSuccess { response in
            let (handler, context) = loopBound.value
            handler.write(response, for: exchange, context: context)
        }
    }

    private func refuseOversizedBody(_ exchange: Exchange, context: ChannelHandlerContext) {
        // The rest of the body is never read, so the connection cannot be reused.
        state = .responding(exchange)
        draining = true
        write(server.responder.bodyTooLarge(exchange.request ?? Request(method: exchange.method, uri: exchange.path)), for: exchange, context: context)
    }

    private func write(_ response: Response, for exchange: Exchange, context: ChannelHandlerContext) {
        guard case .responding = state, context.channel.isActive else {
            // An event stream's owner still hears of it, so whatever it set up for the stream is released.
            if case .eventStream(let attach) = response.body {
                attach(EventStreamChannel(channel: context.channel, handler: self, context: context, executor: taskExecutor))?.eventStreamDidClose()
            }
            return
        }
        let keepAlive = exchange.isKeepAlive && !draining && !server.connections.isDraining
        var headers = response.headers
        if !keepAlive {
            headers.replaceOrAdd(name: "Connection", value: "close")
        } else if exchange.version.minor == 0 {
            headers.replaceOrAdd(name: "Connection", value: "keep-alive")
        }
        let isHead = exchange.method == .HEAD
        switch response.body {
        case .bytes(let buffer):
            if response.status != .notModified, response.status != .noContent {
                headers.replaceOrAdd(name: "Content-Length", value: String(buffer.readableBytes))
            }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: exchange.version, status: response.status, headers: headers))), promise: nil)
            if !isHead, buffer.readableBytes > 0 {
                context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            }
            end(exchange, status: response.status, keepAlive: keepAlive, context: context)

        case .stream(let produce):
            headers.remove(name: "Content-Length")
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: exchange.version, status: response.status, headers: headers))), promise: nil)
            if isHead {
                end(exchange, status: response.status, keepAlive: keepAlive, context: context)
                return
            }
            let writer = ResponseBodyWriter(channel: context.channel)
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let produced = context.eventLoop.makePromise(of: Void.self)
            Task(executorPreference: taskExecutor) {
                do { produced.succeed(try await produce(writer)) } catch { produced.fail(error) }
            }
            produced.futureResult.whenComplete { _ in
                let (handler, context) = loopBound.value
                guard case .responding = handler.state, context.channel.isActive else { return }
                handler.end(exchange, status: response.status, keepAlive: keepAlive, context: context)
            }

        case .eventStream(let attach):
            headers.remove(name: "Content-Length")
            headers.replaceOrAdd(name: "Connection", value: "close")  // an event stream's end is its connection's end
            let stream = EventStreamChannel(
                channel: context.channel, handler: self, context: context, executor: taskExecutor)
            // Not flushed yet: the head leaves with the stream's opening bytes, in one write.
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: exchange.version, status: response.status, headers: headers))), promise: nil)
            state = .streamingEvents(exchange.slim(), stream, response.status)
            shedRequestHandlers(context: context)
            let delegate = attach(stream)
            context.flush()
            // The flush can close the connection on the spot (the peer reset it): then the owner, which has its
            // stream, hears at once that it is closed, so nothing it set up is left behind.
            guard case .streamingEvents = state, context.channel.isActive else {
                delegate?.eventStreamDidClose()
                return
            }
            eventStreamDelegate = delegate
            if isHead || draining || server.connections.isDraining { stream.finish() }
        }
    }

    /// An event stream ends its connection, so no further request will be read on it, and its response head is
    /// out: the request decoder, the pipelining, protocol-error, idle and header-validating handlers go, and
    /// whatever the client still sends is dropped unparsed (see `channelRead`). What an open stream holds is then
    /// its channel, the response encoder and this handler.
    private func shedRequestHandlers(context: ChannelHandlerContext) {
        let pipeline = context.pipeline.syncOperations
        requestDecoderRemoved = true
        do {
            _ = try pipeline.removeHandler(context: pipeline.context(handlerType: HTTPServerPipelineHandler.self))
            _ = try pipeline.removeHandler(context: pipeline.context(handlerType: ReadAheadHandler.self))
            _ = try pipeline.removeHandler(context: pipeline.context(handlerType: HTTPProtocolErrorHandler.self))
            _ = try pipeline.removeHandler(context: pipeline.context(handlerType: ConnectionIdleHandler.self))
            _ = try pipeline.removeHandler(context: pipeline.context(handlerType: NIOHTTPResponseHeadersValidator.self))
            _ = try pipeline.removeHandler(context: pipeline.context(handlerType: ByteToMessageHandler<HTTPRequestDecoder>.self))
        } catch {
            // Not fatal: the stream works with the full pipeline, it only costs more memory.
            server.logger.debug("kept the request handlers of an event stream", metadata: ["error": "\(error)"])
        }
    }

    func finishEventStream(context: ChannelHandlerContext) {
        guard case .streamingEvents(let exchange, _, let status) = state else { return }
        // Event streams end their connection: the browser reconnects anyway, and the descriptor is freed at once.
        // The close does not wait for the end to be written: a reader that stopped reading (a cut stream) would
        // never let that write finish.
        state = .done
        log(exchange, status: status, ended: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.close(promise: nil)
    }

    /// Ends the response; then either waits for the next request or closes the connection.
    private func end(_ exchange: Exchange, status: HTTPResponseStatus, keepAlive: Bool, context: ChannelHandlerContext) {
        state = keepAlive ? .idle : .done
        log(exchange, status: status, ended: nil)
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            written.whenComplete { _ in loopBound.value.close(promise: nil) }
        }
    }

    private func log(_ exchange: Exchange, status: HTTPResponseStatus?, ended: String?) {
        guard accessLogged else { return }
        let elapsed = ContinuousClock.now - exchange.started
        let milliseconds = Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000
        var metadata: Logger.Metadata = ["duration_ms": "\((milliseconds * 100).rounded() / 100)"]
        if let ended { metadata["ended"] = "\(ended)" }
        let code = status.map { String($0.code) } ?? "-"
        logger(for: exchange).info("\(exchange.method.rawValue) \(exchange.path) \(code)", metadata: metadata)
    }
}

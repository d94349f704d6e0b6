import Logging
import NIOCore
import NIOHTTP1

/// Writing responses: a request's turn, the responder's task, heads and bodies, event streams, and the close.
extension HTTPConnectionHandler {
    func take(_ turn: HTTP1ConnectionStateMachine.Turn, context: ChannelHandlerContext) {
        switch turn {
        case .request(let exchange):
            respond(to: exchange, context: context)
        case .bodyTooLarge(let exchange):
            // The rest of the body is never read, so the connection cannot be reused.
            exchange.isKeepAlive = false
            let request = exchange.request ?? Request(method: exchange.method, uri: "/")
            write(server.responder.refused(.bodyTooLarge, request: request), for: exchange, context: context)
        case .unparsable(let error):
            writeProtocolError(HTTPRefusal(error), context: context)
        case .timedOut:
            writeProtocolError(.timedOut, context: context)
        }
    }

    /// Hands `exchange`, whose turn it is (the machine's `responding`), to the responder.
    func respond(to exchange: HTTPExchange, context: ChannelHandlerContext) {
        guard let request = exchange.request else { return }
        let responder = server.responder
        let logger = logger(for: exchange)
        let loopBound = NIOLoopBound((self, context, exchange), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        // Started at once, on this thread (the connection's loop): a responder that does not suspend answers within
        // this read, with no task queued and no loop turn in between. After a suspension the task resumes on the
        // loop's executor, so its answer is written from the loop too.
        Task.immediate(executorPreference: taskExecutor) {
            let response = await responder.respond(to: request, logger: logger)
            if eventLoop.inEventLoop {
                let (handler, context, exchange) = loopBound.value
                handler.write(response, for: exchange, context: context)
            } else {
                eventLoop.execute {
                    let (handler, context, exchange) = loopBound.value
                    handler.write(response, for: exchange, context: context)
                }
            }
        }
    }

    func write(_ response: Response, for exchange: HTTPExchange, context: ChannelHandlerContext) {
        guard state.mayWriteResponse, context.channel.isActive else {
            runCancelled(response, context: context)
            return
        }
        let keepAlive = state.keepsAlive(exchange, serverDraining: server.connections.isDraining)
        let isHead = exchange.method == .HEAD
        let chunked = exchange.version.minor >= 1
        // Room for a head with the default headers and, when it goes in the same write, a small body: no regrowing.
        var head = context.channel.allocator.buffer(capacity: Self.headCapacity(for: response, defaults: server.configuration.defaultResponseHeaders))
        do {
            switch response.body {
            case .bytes(let body):
                let bodiless = response.status == .notModified || response.status == .noContent
                try HTTP1ResponseHead.write(
                    status: response.status, headers: response.headers, defaults: server.configuration.defaultResponseHeaders, framing: bodiless ? .none : .contentLength(body.readableBytes),
                    keepAlive: keepAlive, requestMinorVersion: exchange.version.minor, into: &head)
                if !isHead, !bodiless, body.readableBytes > 0 {
                    // One write for head and body when the body is small; a large one goes as its own buffer, uncopied.
                    if body.readableBytes <= 8192 {
                        head.writeImmutableBuffer(body)
                    } else {
                        context.write(wrapOutboundOut(head), promise: nil)
                        head = body
                    }
                }
                ended(exchange, status: response.status, keepAlive: keepAlive, last: head, context: context)

            case .stream(let produce):
                try HTTP1ResponseHead.write(
                    status: response.status, headers: response.headers, defaults: server.configuration.defaultResponseHeaders, framing: chunked ? .chunked : .none,
                    keepAlive: keepAlive && chunked, requestMinorVersion: exchange.version.minor, into: &head)
                context.writeAndFlush(wrapOutboundOut(head), promise: nil)
                if isHead {
                    ended(exchange, status: response.status, keepAlive: keepAlive && chunked, last: nil, context: context)
                    return
                }
                let writer = ResponseBodyWriter(channel: context.channel, chunked: chunked)
                let loopBound = NIOLoopBound((self, context, exchange), eventLoop: context.eventLoop)
                let produced = context.eventLoop.makePromise(of: Void.self)
                Task(executorPreference: taskExecutor) {
                    do { produced.succeed(try await produce(writer)) } catch { produced.fail(error) }
                }
                produced.futureResult.whenComplete { result in
                    let (handler, context, exchange) = loopBound.value
                    guard handler.state.mayWriteResponse else { return }
                    if case .failure = result {
                        // Without its last chunk (or with the connection cut), the client sees the body is incomplete.
                        handler.log(exchange, status: response.status, ended: "producer failed", now: context.eventLoop.now)
                        context.close(promise: nil)
                        return
                    }
                    handler.ended(
                        exchange, status: response.status, keepAlive: keepAlive && chunked,
                        last: chunked ? HTTP1ResponseHead.lastChunk : nil, context: context)
                }

            case .eventStream(let produce):
                // An event stream's end is its connection's end.
                try HTTP1ResponseHead.write(
                    status: response.status, headers: response.headers, defaults: server.configuration.defaultResponseHeaders, framing: chunked ? .chunked : .none,
                    keepAlive: false, requestMinorVersion: exchange.version.minor, into: &head)
                let stream = EventStreamChannel(
                    channel: context.channel, handler: self, context: context, executor: taskExecutor,
                    framing: isHead ? .none : chunked ? .chunked : .untilClose)
                // Not flushed yet: the head leaves with the stream's opening bytes, in one write, the producer's first.
                context.write(wrapOutboundOut(head), promise: nil)
                exchange.request = nil  // a long-lived stream keeps none of its request
                state.eventStreamStarted(.init(exchange: exchange, status: response.status, chunked: chunked && !isHead))
                eventStreamChannel = stream
                received = nil
                cancelRequestTimer()
                sweeper.unregister(self)  // never idle from now on
                // The producer's one task, on this loop. When it returns, the stream ends (if it still is this one).
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                let producer = Task(executorPreference: taskExecutor) {
                    await produce(stream)
                    loopBound.value.0.finishEventStream(context: loopBound.value.1)
                }
                eventStreamProducer = producer
                if isHead || state.draining || server.connections.isDraining {
                    if !isHead { stream.markDraining() }
                    producer.cancel()
                }
            }
        } catch {
            server.logger.error("response not sent: a header cannot be written", metadata: ["header": "\(error.name)"])
            runCancelled(response, context: context)
            // The answers written before this one (pipelined, maybe not flushed yet) still go out; then it closes.
            closeAfterWriting(ByteBuffer(), context: context)
        }
    }

    /// A response that is not sent: an event stream's producer still runs, cancelled, so whatever its responder set
    /// up for it (a session's place in its registry) is released.
    private func runCancelled(_ response: Response, context: ChannelHandlerContext) {
        guard case .eventStream(let produce) = response.body else { return }
        let stream = EventStreamChannel(channel: context.channel, handler: self, context: context, executor: taskExecutor, framing: .none)
        Task(executorPreference: taskExecutor) { await produce(stream) }.cancel()
    }

    private static func headCapacity(for response: Response, defaults: DefaultResponseHeaders) -> Int {
        var capacity = 256 + defaults.byteCount
        if case .bytes(let body) = response.body, body.readableBytes <= 8192 { capacity += body.readableBytes }
        return capacity
    }

    /// Ends an event stream: the last chunk, then the connection (browsers reconnect to an event stream by
    /// themselves, and the descriptor is freed at once). The close does not wait for the last chunk to be written:
    /// a reader that stopped reading (a cut stream) would never let that write finish.
    func finishEventStream(context: ChannelHandlerContext) {
        guard let stream = state.eventStreamEnded() else {
            context.flush()  // a head never followed by a write
            return
        }
        log(stream.exchange, status: stream.status, ended: nil, now: context.eventLoop.now)
        // The head may still be unflushed (a producer that wrote nothing, a HEAD): it leaves before the close.
        if stream.chunked { context.writeAndFlush(wrapOutboundOut(HTTP1ResponseHead.lastChunk), promise: nil) } else { context.flush() }
        context.close(promise: nil)
    }

    /// The response is complete once `last` is written: the next request's turn comes, or the connection closes.
    private func ended(_ exchange: HTTPExchange, status: HTTPResponseStatus, keepAlive: Bool, last: ByteBuffer?, context: ChannelHandlerContext) {
        state.responseEnded()
        log(exchange, status: status, ended: nil, now: context.eventLoop.now)
        guard keepAlive else {
            closeAfterWriting(last ?? ByteBuffer(), context: context)
            return
        }
        if let last { context.write(wrapOutboundOut(last), promise: nil) }
        // Requests already here are answered before the flush, so pipelined answers leave together.
        if let turn = state.nextTurn() { take(turn, context: context) }
        parseReceived(context: context)
        // The next response may have been the last (answered on the spot, it closes the connection).
        guard !state.isClosing else { return }
        if state.flushNow() { context.flush() }
        if state.closesWhenIdle(now: context.eventLoop.now, serverDraining: server.connections.isDraining) {
            // Answers of this parse may not be flushed yet: they go out before the close.
            closeAfterWriting(ByteBuffer(), context: context)
            return
        }
        if state.continueDue() { context.write(wrapOutboundOut(HTTP1ResponseHead.continueHead), promise: nil) }
        if state.flushDue() { context.flush() }
        armRequestTimerIfDue(context: context)
        resumeReadingIfHeldBack(context: context)
    }

    /// Writes the last bytes of the connection and closes it once they are out. Until then it counts as idle, so a
    /// client that never reads them is closed by the idle sweep instead of holding the connection.
    private func closeAfterWriting(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        state.closeAfterWriting(now: context.eventLoop.now)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in
            let (handler, context) = loopBound.value
            switch handler.state.lastBytesWritten() {
            case .close: context.close(promise: nil)
            case .closeOutputAndDrain: handler.closeAfterRefusal(context: context)
            case .none: break
            }
        }
    }

    /// Closes after a refusal without losing it: a close with unread bytes makes the kernel send a reset, which can
    /// destroy the refusal before the client reads it (RFC 9112 §9.6). The output is closed first; what the client
    /// still sends is read and dropped until it closes too, or for at most a second.
    private func closeAfterRefusal(context: ChannelHandlerContext) {
        context.close(mode: .output, promise: nil)
        resumeReadingIfHeldBack(context: context)
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        requestTimer?.cancel()
        requestTimer = context.eventLoop.scheduleTask(in: .seconds(1)) { loopBound.value.close(promise: nil) }
    }

    /// The answer to a request that could not be read (the responder words it; nothing of the request is known), then
    /// the close: the connection cannot be read any further.
    private func writeProtocolError(_ refusal: HTTPRefusal, context: ChannelHandlerContext) {
        let response = server.responder.refused(refusal, request: nil)
        var body = ByteBuffer()
        switch response.body {
        case .bytes(let bytes): body = bytes
        case .stream, .eventStream: break  // a refusal is never streamed; a responder that tried gets an empty body
        }
        var buffer = context.channel.allocator.buffer(capacity: 512)
        do {
            try HTTP1ResponseHead.write(
                status: refusal.status, headers: response.headers, defaults: server.configuration.defaultResponseHeaders, framing: .contentLength(body.readableBytes), keepAlive: false,
                requestMinorVersion: 1, into: &buffer)
            buffer.writeImmutableBuffer(body)
        } catch {
            context.close(promise: nil)
            return
        }
        closeAfterWriting(buffer, context: context)
    }
}

import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// What every connection of one server shares (a class: each connection keeps a reference, not a copy).
final class HTTPServerContext: Sendable {
    let configuration: HTTPServer.Configuration
    let responder: any HTTPResponder
    let logger: Logger
    let connections: ConnectionTracker
    let requestCounter: RequestCounter
    let ignoredForwarding: IgnoredForwarding

    init(configuration: HTTPServer.Configuration, responder: any HTTPResponder, logger: Logger, connections: ConnectionTracker, requestCounter: RequestCounter) {
        self.ignoredForwarding = IgnoredForwarding(settingName: configuration.trustedProxiesSetting, metrics: configuration.metrics, logger: logger)
        self.configuration = configuration
        self.responder = responder
        self.logger = logger
        self.connections = connections
        self.requestCounter = requestCounter
    }
}

/// Numbers requests for log lines.
final class RequestCounter: Sendable {
    private let value = Atomic<UInt64>(0)

    func next() -> UInt64 {
        value.wrappingAdd(1, ordering: .relaxed).newValue
    }
}

/// Serves one HTTP/1.1 connection on its event loop, as the only handler of the channel: parses requests from the
/// received bytes (``HTTP1RequestParser``), hands each to the responder in a task of its own, and writes the
/// response head and body as one buffer. One handler instead of NIO's decoder, encoder, pipelining and helper
/// handlers: a request passes no chain of boxed parts, and a response is one write.
///
/// - Requests are answered one at a time and in order; pipelined ones wait their turn, up to `pipelineLimit` in
///   flight, beyond which reading stops (a client that pipelines without reading holds one read's worth here).
/// - No task lives longer than the responder's work: an idle connection or an event stream costs a channel and
///   this handler, not a suspended task.
/// - No timer per connection: the loop's ``IdleConnectionSweeper`` closes connections idle too long, and a timer
///   is armed only while a request's body trickles in.
/// - Requests that cannot be parsed get 400, 431, 501 or 505, a body over the limit 413, a body that does not
///   arrive in time 408: each with `Connection: close`, in its turn after the responses before it.
/// - A request with `Upgrade` is answered as if it had none (no upgrade is ever granted), with `Connection: close`;
///   what follows it is dropped, as after a refusal.
final class HTTPConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Sent down the pipeline when the server drains: close when idle, now or after the response in flight.
    struct DrainEvent: Sendable {}

    /// One request and what its response needs. A class: the handler refers to the one being read and the one being
    /// answered, and an open event stream keeps its own for its log line, so a connection carries references, not
    /// copies of the request.
    private final class Exchange {
        let version: HTTPVersion
        let method: HTTPMethod
        /// The path only, for the log line (empty without access logs): query strings carry session IDs, which are
        /// capabilities and stay out of logs.
        let path: String
        var isKeepAlive: Bool
        /// Nil once a long-lived stream no longer needs it.
        var request: Request?
        let started: ContinuousClock.Instant
        let requestID: UInt64
        /// `Expect: 100-continue` not answered yet: answered when the request's turn comes.
        var awaitsContinue: Bool

        init(
            version: HTTPVersion, method: HTTPMethod, path: String, isKeepAlive: Bool, request: Request, started: ContinuousClock.Instant,
            requestID: UInt64, awaitsContinue: Bool
        ) {
            self.version = version
            self.method = method
            self.path = path
            self.isKeepAlive = isKeepAlive
            self.request = request
            self.started = started
            self.requestID = requestID
            self.awaitsContinue = awaitsContinue
        }
    }

    /// The event stream this connection carries (a class: it is checked on every read, and never copied).
    private final class OpenEventStream {
        let exchange: Exchange
        let channel: EventStreamChannel
        let status: HTTPResponseStatus
        /// Whether its body is chunked, so it ends with the last chunk (not for HEAD, or an HTTP/1.0 client).
        let chunked: Bool
        /// The producer's task: cancelled when the connection closes or the server drains.
        var producer: Task<Void, Never>?

        init(exchange: Exchange, channel: EventStreamChannel, status: HTTPResponseStatus, chunked: Bool) {
            self.exchange = exchange
            self.channel = channel
            self.status = status
            self.chunked = chunked
        }
    }

    /// A request's turn: answered by the responder, or refused by the connection itself.
    private enum Turn {
        case request(Exchange)
        case bodyTooLarge(Exchange)
        case unparsable(HTTP1ParseError)
        case timedOut
    }

    private let server: HTTPServerContext
    private let sweeper: IdleConnectionSweeper
    /// Runs this connection's request tasks on its event loop (see ``EventLoopTaskExecutor``).
    private let taskExecutor: EventLoopTaskExecutor
    /// The peer's address as text, made once per connection (glibc formats it with sprintf).
    private let peerAddress: String
    private let pipelineLimit: Int
    private let requestTimeout: TimeAmount

    private var context: ChannelHandlerContext?
    private var remoteAddress: SocketAddress?
    /// Shared by every bodiless request of this connection.
    private var emptyBody = ByteBuffer()

    // Reading
    private var parser: HTTP1RequestParser
    /// Received bytes not parsed yet.
    private var received: ByteBuffer?
    /// The request whose head has arrived and whose body has not ended.
    private var reading: Exchange?
    /// Complete requests (and refusals) waiting for the response before them: at most a few, and an array allocates
    /// nothing until the first one (most connections, and every event stream, never have one).
    private var waiting: [Turn] = []
    /// A `read()` held back while enough is in flight; issued when there is room again.
    private var readHeldBack = false
    /// Nothing more is parsed: the connection ends after the responses already due.
    private var stopParsing = false
    /// A refusal (or the answer to a request with `Upgrade`) is due: once it is written the connection closes without
    /// discarding what the client still sends, so that the client reads it instead of a reset (see `closeAfterRefusal`).
    private var refused = false
    /// Inside `parseReceived`: a response answered on the spot does not parse again (the running parse goes on) and
    /// leaves its flush to the end of the parse, so the answers to pipelined requests leave in one write.
    private var isParsing = false
    /// A flush is due at the end of the parse (flushing inside it can call back into reading).
    private var flushAfterParse = false
    /// The connection's last bytes are written; it closes once they are out.
    private var closing = false

    // Responding
    /// The request with the responder, or whose response is being written.
    private var responding: Exchange?
    private var eventStream: OpenEventStream?
    /// The event stream's producer, from its start until the connection closes (also once the stream has ended).
    private var eventStreamProducer: Task<Void, Never>?
    private var draining = false
    private var closed = false

    // Idle and slow requests
    /// When the last response ended (or the connection opened); nil while a request is in flight.
    private var idleSince: NIODeadline?
    /// Runs while a request's body is incomplete at the end of a read.
    private var requestTimer: Scheduled<Void>?

    init(server: HTTPServerContext, peerAddress: String, taskExecutor: EventLoopTaskExecutor, sweeper: IdleConnectionSweeper, pipelineLimit: Int = 4) {
        self.server = server
        self.peerAddress = peerAddress
        self.taskExecutor = taskExecutor
        self.sweeper = sweeper
        self.pipelineLimit = pipelineLimit
        self.requestTimeout = IdleConnectionSweeper.timeAmount(server.configuration.requestTimeout)
        self.parser = HTTP1RequestParser(maximumHeadBytes: server.configuration.maximumHeaderBytes)
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

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        remoteAddress = context.channel.remoteAddress
        idleSince = .now()
        sweeper.register(self)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        sweeper.unregister(self)
        cancelRequestTimer()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // An event stream reads no more requests, and nothing is parsed after a refusal: whatever still arrives is
        // dropped unparsed.
        guard !stopParsing, eventStream == nil, !closed else { return }
        var bytes = unwrapInboundIn(data)
        if var pending = received, pending.readableBytes > 0 {
            received = nil  // no copy of the pending bytes while they grow
            if pending.readerIndex > 4096 { pending.discardReadBytes() }
            pending.writeBuffer(&bytes)
            received = pending
        } else {
            received = bytes
        }
        parseReceived(context: context)
        // What the requests just handled set going on this loop (an event stream's task given an event, a stream's
        // first bytes) runs now, in this read, not after every other ready socket of the loop's turn.
        taskExecutor.runPending()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        armRequestTimerIfDue(context: context)
        context.fireChannelReadComplete()
    }

    /// A request whose turn it is and whose body is still arriving gets a deadline; a request that arrives whole
    /// (nearly all of them) costs no timer.
    private func armRequestTimerIfDue(context: ChannelHandlerContext) {
        guard reading != nil, responding == nil, waiting.isEmpty, requestTimer == nil, !stopParsing, !closed else { return }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        requestTimer = context.eventLoop.scheduleTask(in: requestTimeout) {
            let (handler, context) = loopBound.value
            handler.requestTimedOut(context: context)
        }
    }

    func read(context: ChannelHandlerContext) {
        if mayRead { context.read() } else { readHeldBack = true }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // The client reads again: the requests it sent meanwhile are parsed and answered.
        if context.channel.isWritable {
            parseReceived(context: context)
            resumeReadingIfHeldBack(context: context)
        }
        context.fireChannelWritabilityChanged()
    }

    private func resumeReadingIfHeldBack(context: ChannelHandlerContext) {
        guard readHeldBack, mayRead else { return }
        readHeldBack = false
        context.read()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        if let responding { log(responding, status: nil, ended: "client closed") }
        if let eventStream { log(eventStream.exchange, status: eventStream.status, ended: "client closed") }
        responding = nil
        reading = nil
        waiting = []
        received = nil
        cancelRequestTimer()
        // The producer ends: its `for await` returns on cancellation, and it releases what it holds. The stream's
        // handle refers back to this handler: dropping it here breaks that cycle, so the connection is freed.
        eventStreamProducer?.cancel()
        eventStreamProducer = nil
        eventStream = nil
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is DrainEvent {
            draining = true
            if let eventStream {
                eventStream.channel.markDraining()
                if let producer = eventStreamProducer { producer.cancel() } else { eventStream.channel.finish() }
            } else if isIdle {
                context.close(promise: nil)
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A socket error: nothing more can be read or written on this connection.
        context.close(promise: nil)
    }

    // MARK: Reading

    /// Requests in flight: being read, waiting, or being answered.
    private var inFlight: Int { (reading == nil ? 0 : 1) + waiting.count + (responding == nil ? 0 : 1) }

    private var isIdle: Bool { inFlight == 0 && eventStream == nil }

    /// Whether to read more: not while the pipeline is full, not while the client does not read its answers (the
    /// channel is not writable), and not while a request queued behind another is receiving its body (that body
    /// could be large; it waits in the client's socket instead of here).
    private var mayRead: Bool {
        if eventStream != nil { return true }  // to notice the client leaving; what arrives is dropped
        if closed { return false }
        if stopParsing { return refused }  // read and dropped while the refusal goes out (see `closeAfterRefusal`)
        if inFlight >= pipelineLimit { return false }
        if let channel = context?.channel, !channel.isWritable { return false }
        if reading != nil, responding != nil || !waiting.isEmpty { return false }
        return true
    }

    private func parseReceived(context: ChannelHandlerContext) {
        guard !isParsing else { return }
        isParsing = true
        // Also with no bytes left: the parser may have a request's end to give (its body was in earlier bytes).
        var bytes = received ?? emptyBody
        received = nil
        defer {
            isParsing = false
            if !stopParsing, !closed, bytes.readableBytes > 0 { received = bytes }
            if flushAfterParse {
                flushAfterParse = false
                context.flush()
            }
        }
        // Bytes already received are parsed, also a queued request's body (bounded by the body limit); what bounds
        // the requests in flight is that no more is read (see `mayRead`).
        while !stopParsing, !closed, eventStream == nil, reading != nil || inFlight < pipelineLimit, context.channel.isWritable {
            let part: HTTP1RequestParser.Part?
            do {
                part = try parser.next(from: &bytes)
            } catch {
                refuse(.unparsable(error), context: context)
                return
            }
            guard let part else { return }
            switch part {
            case .head(let head):
                headArrived(head, context: context)
            case .body(var chunk):
                guard let exchange = reading else { continue }
                reading = nil
                if var request = exchange.request {
                    exchange.request = nil
                    guard request.body.readableBytes + chunk.readableBytes <= server.configuration.maximumBodyBytes else {
                        exchange.request = request
                        refuse(.bodyTooLarge(exchange), context: context)
                        return
                    }
                    if request.body.readableBytes == 0 { request.body = chunk } else { request.body.writeBuffer(&chunk) }
                    exchange.request = request
                }
                reading = exchange
            case .end:
                if parser.isFinished {
                    // The request asked for an upgrade, which is never granted: it is answered like any other, then
                    // the connection closes, draining like a refusal, since what follows may be the other protocol.
                    stopParsing = true
                    refused = true
                }
                requestEnded(context: context)
            }
        }
    }

    private func headArrived(_ head: HTTP1RequestHead, context: ChannelHandlerContext) {
        idleSince = nil
        let request = Request(
            method: head.method,
            uri: head.uri,
            headers: head.headers,
            body: emptyBody,
            remoteAddress: remoteAddress,
            clientAddress: ClientAddress.of(
                peerAddress: peerAddress, headers: head.headers, trusted: server.configuration.trustedProxies,
                ignoredForwarding: server.ignoredForwarding)
        )
        let exchange = Exchange(
            version: head.version, method: head.method, path: accessLogged ? String(request.path) : "", isKeepAlive: head.isKeepAlive,
            request: request, started: .now, requestID: server.requestCounter.next(),
            awaitsContinue: head.expectsContinue && head.contentLength != 0)
        if let declared = head.contentLength, declared > server.configuration.maximumBodyBytes {
            refuse(.bodyTooLarge(exchange), context: context)
            return
        }
        reading = exchange
        answerContinueIfDue(context: context)
    }

    /// The request being read is complete: its turn now, or after the ones before it.
    private func requestEnded(context: ChannelHandlerContext) {
        guard let exchange = reading else { return }
        reading = nil
        cancelRequestTimer()
        if responding == nil, waiting.isEmpty {
            respond(to: exchange, context: context)
        } else {
            waiting.append(.request(exchange))
        }
    }

    /// Sends `100 Continue` to the request being read once nothing is ahead of it, so its body is sent only when it
    /// is wanted.
    private func answerContinueIfDue(context: ChannelHandlerContext) {
        guard let exchange = reading, exchange.awaitsContinue, responding == nil, waiting.isEmpty else { return }
        exchange.awaitsContinue = false
        context.write(wrapOutboundOut(HTTP1ResponseHead.continueHead), promise: nil)
        flushAfterParse = true
    }

    /// Nothing more is parsed on this connection; `turn` answers in its turn and closes it.
    private func refuse(_ turn: Turn, context: ChannelHandlerContext) {
        stopParsing = true
        refused = true
        received = nil
        reading = nil
        cancelRequestTimer()
        if responding == nil, waiting.isEmpty {
            take(turn, context: context)
        } else {
            waiting.append(turn)
        }
    }

    private func cancelRequestTimer() {
        requestTimer?.cancel()
        requestTimer = nil
    }

    private func requestTimedOut(context: ChannelHandlerContext) {
        requestTimer = nil
        guard reading != nil, !stopParsing else { return }
        refuse(.timedOut, context: context)
    }

    // MARK: Responding

    private func take(_ turn: Turn, context: ChannelHandlerContext) {
        switch turn {
        case .request(let exchange):
            respond(to: exchange, context: context)
        case .bodyTooLarge(let exchange):
            // The rest of the body is never read, so the connection cannot be reused.
            exchange.isKeepAlive = false
            responding = exchange
            let request = exchange.request ?? Request(method: exchange.method, uri: "/")
            write(server.responder.refused(.bodyTooLarge, request: request), for: exchange, context: context)
        case .unparsable(let error):
            writeProtocolError(HTTPRefusal(error), context: context)
        case .timedOut:
            writeProtocolError(.timedOut, context: context)
        }
    }

    private func respond(to exchange: Exchange, context: ChannelHandlerContext) {
        responding = exchange
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

    private func write(_ response: Response, for exchange: Exchange, context: ChannelHandlerContext) {
        guard responding != nil, !closed, context.channel.isActive else {
            // An event stream's producer still runs, cancelled, so whatever its responder set up is released.
            if case .eventStream(let produce) = response.body {
                let stream = EventStreamChannel(channel: context.channel, handler: self, context: context, executor: taskExecutor, framing: .none)
                Task(executorPreference: taskExecutor) { await produce(stream) }.cancel()
            }
            return
        }
        let keepAlive = exchange.isKeepAlive && !draining && !server.connections.isDraining
        let isHead = exchange.method == .HEAD
        let chunked = exchange.version.minor >= 1
        var head = context.channel.allocator.buffer(capacity: 256)
        do {
            switch response.body {
            case .bytes(let body):
                let bodiless = response.status == .notModified || response.status == .noContent
                try HTTP1ResponseHead.write(
                    status: response.status, headers: response.headers, framing: bodiless ? .none : .contentLength(body.readableBytes),
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
                    status: response.status, headers: response.headers, framing: chunked ? .chunked : .none,
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
                    guard handler.responding != nil, !handler.closed else { return }
                    if case .failure = result {
                        // Without its last chunk (or with the connection cut), the client sees the body is incomplete.
                        handler.log(exchange, status: response.status, ended: "producer failed")
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
                    status: response.status, headers: response.headers, framing: chunked ? .chunked : .none,
                    keepAlive: false, requestMinorVersion: exchange.version.minor, into: &head)
                let stream = EventStreamChannel(
                    channel: context.channel, handler: self, context: context, executor: taskExecutor,
                    framing: isHead ? .none : chunked ? .chunked : .untilClose)
                // Not flushed yet: the head leaves with the stream's opening bytes, in one write, the producer's first.
                context.write(wrapOutboundOut(head), promise: nil)
                exchange.request = nil  // a long-lived stream keeps none of its request
                responding = nil
                let open = OpenEventStream(exchange: exchange, channel: stream, status: response.status, chunked: chunked && !isHead)
                eventStream = open
                stopParsing = true
                received = nil
                reading = nil
                waiting = []
                sweeper.unregister(self)  // never idle from now on
                // The producer's one task, on this loop. When it returns, the stream ends (if it still is this one).
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                let producer = Task(executorPreference: taskExecutor) {
                    await produce(stream)
                    loopBound.value.0.finishEventStream(context: loopBound.value.1)
                }
                eventStreamProducer = producer
                if isHead || draining || server.connections.isDraining {
                    if !isHead { stream.markDraining() }
                    producer.cancel()
                }
            }
        } catch {
            server.logger.error("response not sent: a header cannot be written", metadata: ["header": "\(error.name)"])
            // The answers written before this one (pipelined, maybe not flushed yet) still go out; then it closes.
            closeAfterWriting(ByteBuffer(), context: context)
        }
    }

    /// Ends an event stream: the last chunk, then the connection (browsers reconnect to an event stream by
    /// themselves, and the descriptor is freed at once). The close does not wait for the last chunk to be written:
    /// a reader that stopped reading (a cut stream) would never let that write finish.
    func finishEventStream(context: ChannelHandlerContext) {
        guard let eventStream, !closed else {
            context.flush()  // a head never followed by a write
            return
        }
        self.eventStream = nil  // ended: its log line is written here, not again when the connection closes
        log(eventStream.exchange, status: eventStream.status, ended: nil)
        // The head may still be unflushed (a producer that wrote nothing, a HEAD): it leaves before the close.
        if eventStream.chunked { context.writeAndFlush(wrapOutboundOut(HTTP1ResponseHead.lastChunk), promise: nil) } else { context.flush() }
        context.close(promise: nil)
    }

    /// The response is complete once `last` is written: the next request's turn comes, or the connection closes.
    private func ended(_ exchange: Exchange, status: HTTPResponseStatus, keepAlive: Bool, last: ByteBuffer?, context: ChannelHandlerContext) {
        responding = nil
        log(exchange, status: status, ended: nil)
        guard keepAlive else {
            closeAfterWriting(last ?? ByteBuffer(), context: context)
            return
        }
        if let last { context.write(wrapOutboundOut(last), promise: nil) }
        // Requests already here are answered before the flush, so pipelined answers leave together.
        if !waiting.isEmpty { take(waiting.removeFirst(), context: context) }
        parseReceived(context: context)
        // The next response may have been the last (answered on the spot, it closes the connection).
        guard !closing else { return }
        if isParsing { flushAfterParse = true } else { context.flush() }
        if isIdle {
            if draining || server.connections.isDraining {
                // Answers of this parse may not be flushed yet: they go out before the close.
                closeAfterWriting(ByteBuffer(), context: context)
                return
            }
            idleSince = .now()
        }
        answerContinueIfDue(context: context)
        if flushAfterParse, !isParsing {
            flushAfterParse = false
            context.flush()
        }
        armRequestTimerIfDue(context: context)
        resumeReadingIfHeldBack(context: context)
    }

    /// Writes the last bytes of the connection and closes it once they are out. Until then it counts as idle, so a
    /// client that never reads them is closed by the idle sweep instead of holding the connection.
    private func closeAfterWriting(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        stopParsing = true
        received = nil
        closing = true
        idleSince = .now()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in
            let (handler, context) = loopBound.value
            if handler.refused { handler.closeAfterRefusal(context: context) } else { context.close(promise: nil) }
        }
    }

    /// Closes after a refusal without losing it: a close with unread bytes makes the kernel send a reset, which can
    /// destroy the refusal before the client reads it (RFC 9112 §9.6). The output is closed first; what the client
    /// still sends is read and dropped until it closes too, or for at most a second.
    private func closeAfterRefusal(context: ChannelHandlerContext) {
        guard !closed else { return }
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
                status: refusal.status, headers: response.headers, framing: .contentLength(body.readableBytes), keepAlive: false,
                requestMinorVersion: 1, into: &buffer)
            buffer.writeImmutableBuffer(body)
        } catch {
            context.close(promise: nil)
            return
        }
        closeAfterWriting(buffer, context: context)
    }

    // MARK: Idle connections

    /// Whether the connection has been idle since before `deadline`.
    func isIdle(before deadline: NIODeadline) -> Bool {
        guard let idleSince else { return false }
        return idleSince < deadline
    }

    func closeIdle() {
        idleSince = nil
        context?.close(promise: nil)
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

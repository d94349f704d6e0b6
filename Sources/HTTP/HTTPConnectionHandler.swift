import Logging
import NIOCore
import NIOHTTP1

/// Serves one HTTP/1.1 connection on its event loop, as the only handler of the channel: parses requests from the
/// received bytes (``HTTP1RequestParser``), hands each to the responder in a task of its own, and writes the
/// response head and body as one buffer. One handler instead of NIO's decoder, encoder, pipelining and helper
/// handlers: a request passes no chain of boxed parts, and a response is one write.
///
/// The connection's state (what is read, waiting, answered; refusals, event streams, closing) lives in
/// ``HTTP1ConnectionStateMachine``; this handler does what the machine says and owns the bytes, the parser, the
/// request timer and the event stream's producer. Responses are written in `HTTPConnectionHandler+Responses.swift`,
/// access log lines in `HTTPConnectionHandler+AccessLog.swift`.
///
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

    let server: HTTPServerContext
    let sweeper: IdleConnectionSweeper
    /// Runs this connection's request tasks on its event loop (see ``EventLoopTaskExecutor``).
    let taskExecutor: EventLoopTaskExecutor
    /// The peer's address as text, made once per connection (glibc formats it with sprintf).
    private let peerAddress: String
    private let requestTimeout: TimeAmount

    var state: HTTP1ConnectionStateMachine
    private var context: ChannelHandlerContext?
    private var remoteAddress: SocketAddress?
    /// Shared by every bodiless request of this connection.
    private var emptyBody = ByteBuffer()
    private var parser: HTTP1RequestParser
    /// Received bytes not parsed yet.
    var received: ByteBuffer?
    /// While `channelRead` parses: the answers written are flushed by it, after the loop's pending jobs ran.
    private var holdsFlush = false
    /// A parse ended with answers to flush while ``holdsFlush``.
    private var flushOwed = false
    /// Runs while a request's body is incomplete at the end of a read; after a refusal, the close's deadline.
    var requestTimer: Scheduled<Void>?
    /// The open event stream's connection, handed to its producer.
    var eventStreamChannel: EventStreamChannel?
    /// The event stream's producer, from its start until the connection closes (also once the stream has ended).
    var eventStreamProducer: Task<Void, Never>?

    init(server: HTTPServerContext, peerAddress: String, taskExecutor: EventLoopTaskExecutor, sweeper: IdleConnectionSweeper, pipelineLimit: Int = 4) {
        self.server = server
        self.peerAddress = peerAddress
        self.taskExecutor = taskExecutor
        self.sweeper = sweeper
        self.requestTimeout = IdleConnectionSweeper.timeAmount(server.configuration.requestTimeout)
        self.parser = HTTP1RequestParser(maximumHeadBytes: server.configuration.maximumHeaderBytes)
        // Replaced in `handlerAdded`, which knows the loop's time.
        self.state = HTTP1ConnectionStateMachine(pipelineLimit: pipelineLimit, openedAt: .uptimeNanoseconds(0))
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        remoteAddress = context.channel.remoteAddress
        state = HTTP1ConnectionStateMachine(pipelineLimit: state.pipelineLimit, openedAt: context.eventLoop.now)
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
        guard state.parsesRequests else { return }
        var bytes = unwrapInboundIn(data)
        if var pending = received, pending.readableBytes > 0 {
            received = nil  // no copy of the pending bytes while they grow
            if pending.readerIndex > 4096 { pending.discardReadBytes() }
            pending.writeBuffer(&bytes)
            received = pending
        } else {
            received = bytes
        }
        holdsFlush = true
        parseReceived(context: context)
        holdsFlush = false
        // What the requests just handled set going on this loop (an event stream's task given an event, a stream's
        // first bytes) runs now, in this read, not after every other ready socket of the loop's turn; and before
        // this read's answers are flushed, so a step's event leaves before the answer to the step (an answer's write
        // on loopback runs the client's TCP input in this thread's time).
        taskExecutor.runPending()
        if flushOwed {
            flushOwed = false
            context.flush()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        armRequestTimerIfDue(context: context)
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if state.readRequested(isWritable: context.channel.isWritable) { context.read() }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // The client reads again: the requests it sent meanwhile are parsed and answered.
        if context.channel.isWritable {
            parseReceived(context: context)
            resumeReadingIfHeldBack(context: context)
        }
        context.fireChannelWritabilityChanged()
    }

    func resumeReadingIfHeldBack(context: ChannelHandlerContext) {
        if state.resumeReading(isWritable: context.channel.isWritable) { context.read() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let inFlight = state.closed()
        if let responding = inFlight.responding { log(responding, status: nil, ended: "client closed", now: context.eventLoop.now) }
        if let stream = inFlight.eventStream { log(stream.exchange, status: stream.status, ended: "client closed", now: context.eventLoop.now) }
        received = nil
        cancelRequestTimer()
        // The producer ends: its `for await` returns on cancellation, and it releases what it holds. The stream's
        // handle refers back to this handler: dropping it here breaks that cycle, so the connection is freed.
        eventStreamProducer?.cancel()
        eventStreamProducer = nil
        eventStreamChannel = nil
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is DrainEvent {
            switch state.drain() {
            case .endEventStream:
                eventStreamChannel?.markDraining()
                if let producer = eventStreamProducer { producer.cancel() } else { eventStreamChannel?.finish() }
            case .close:
                context.close(promise: nil)
            case .none:
                break
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A socket error: nothing more can be read or written on this connection.
        context.close(promise: nil)
    }

    // MARK: Reading

    /// Parses and handles what was received, then flushes the answers written meanwhile (or, while ``holdsFlush``,
    /// leaves that to `channelRead`).
    func parseReceived(context: ChannelHandlerContext) {
        guard state.parseStarted() else { return }
        // Also with no bytes left: the parser may have a request's end to give (its body was in earlier bytes).
        var bytes = received ?? emptyBody
        received = nil
        defer {
            if state.parsesRequests, bytes.readableBytes > 0 { received = bytes }
            state.headBytesReceived(pending: parser.isBetweenRequests && bytes.readableBytes > 0)
            if state.parseEnded() {
                if holdsFlush { flushOwed = true } else { context.flush() }
            }
        }
        while state.parsesNext(isWritable: context.channel.isWritable) {
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
                guard let exchange = state.reading, var request = exchange.request else { continue }
                exchange.request = nil  // no copy of the body while it grows
                guard request.body.readableBytes + chunk.readableBytes <= server.configuration.maximumBodyBytes else {
                    exchange.request = request
                    refuse(.bodyTooLarge(exchange), context: context)
                    return
                }
                if request.body.readableBytes == 0 { request.body = chunk } else { request.body.writeBuffer(&chunk) }
                exchange.request = request
            case .end:
                let exchange = state.requestEnded(upgrade: parser.isFinished)
                cancelRequestTimer()
                if let exchange { respond(to: exchange, context: context) }
            }
        }
    }

    private func headArrived(_ head: HTTP1RequestHead, context: ChannelHandlerContext) {
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
        let exchange = HTTPExchange(
            version: head.version, method: head.method, path: accessLogged ? String(request.path) : "", isKeepAlive: head.isKeepAlive,
            request: request, started: context.eventLoop.now, requestID: server.requestCounter.next())
        if let declared = head.contentLength, declared > server.configuration.maximumBodyBytes {
            received = nil
            cancelRequestTimer()
            if let turn = state.headArrivedTooLarge(exchange) { take(turn, context: context) }
            return
        }
        if state.headArrived(exchange, awaitsContinue: head.expectsContinue && head.contentLength != 0) {
            context.write(wrapOutboundOut(HTTP1ResponseHead.continueHead), promise: nil)
        }
    }

    /// Nothing more is parsed on this connection; `turn` answers in its turn and closes it.
    private func refuse(_ turn: HTTP1ConnectionStateMachine.Turn, context: ChannelHandlerContext) {
        received = nil
        cancelRequestTimer()
        if let turn = state.refuse(turn) { take(turn, context: context) }
    }

    /// A request whose turn it is and whose body is still arriving gets a deadline.
    func armRequestTimerIfDue(context: ChannelHandlerContext) {
        guard state.wantsRequestTimer, requestTimer == nil else { return }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        requestTimer = context.eventLoop.scheduleTask(in: requestTimeout) {
            let (handler, context) = loopBound.value
            handler.requestTimer = nil
            if let turn = handler.state.requestTimedOut() {
                handler.received = nil
                handler.take(turn, context: context)
            }
        }
    }

    func cancelRequestTimer() {
        requestTimer?.cancel()
        requestTimer = nil
    }

    // MARK: Idle connections

    /// Whether the connection has been idle since before `deadline`.
    func isIdle(before deadline: NIODeadline) -> Bool {
        state.isIdle(before: deadline)
    }

    func closeIdle() {
        state.closedForIdleness()
        context?.close(promise: nil)
    }
}

import Logging
import LoopOrder
import NIOCore
import NIOPosix

/// One connection to Redis. SwiftNIO moves the bytes, hiredis parses them; commands are pipelined (written without
/// waiting) and their replies matched in order. A subscriber connection also receives pushed `message`s.
final class RedisConnection: Sendable {
    let channel: any Channel
    /// Keeps the commands in the order `send` was called, from the loop and from other threads.
    private let sends: LoopOrderedSubmitter

    private init(channel: any Channel) {
        self.channel = channel
        self.sends = LoopOrderedSubmitter(eventLoop: channel.eventLoop)
    }

    /// Connects, authenticates and selects the database.
    /// - Parameters:
    ///   - onMessage: for a subscriber connection, called on the event loop with each pushed (channel, payload), of a
    ///     channel (`message`) or a shard channel (`smessage`).
    ///   - onShardUnsubscribed: for a sharded subscriber connection, called on the event loop with a shard channel the
    ///     server unsubscribed by itself (its slot moved to another node, or a failover).
    ///   - commandTimeout: a reply slower than this closes the connection (one sweep per connection, not a timer
    ///     per command), which fails what is pending and lets the owner reconnect.
    static func connect(
        to url: RedisURL,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        commandTimeout: Duration,
        onMessage: (@Sendable (String, [UInt8]) -> Void)? = nil,
        onShardUnsubscribed: (@Sendable (String) -> Void)? = nil
    ) async throws -> RedisConnection {
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(2))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(ByteToMessageHandler(try RESPDecoder()))
                    try sync.addHandler(RedisCommandHandler(commandTimeout: commandTimeout, onMessage: onMessage, onShardUnsubscribed: onShardUnsubscribed))
                }
            }
            .connect(host: url.host, port: url.port)
            .get()
        let connection = RedisConnection(channel: channel)
        do {
            if let password = url.password {
                let arguments = url.user.map { ["AUTH", $0, password] } ?? ["AUTH", password]
                try await connection.send(arguments).get().throwingError()
            }
            if url.database != 0 {
                try await connection.send(["SELECT", String(url.database)]).get().throwingError()
            }
        } catch {
            connection.close()
            throw error
        }
        return connection
    }

    /// Sends one command and returns its reply (a Redis error reply is a value, not a thrown error).
    /// Fails with ``BrokerError/Code/unavailable`` when the connection breaks first.
    func send(_ arguments: [String]) -> EventLoopFuture<RESPValue> {
        send(arguments, replies: 1).map { $0.first ?? .null }
    }

    /// Sends one command that is answered by `replies` replies (SUBSCRIBE to several channels).
    func send(_ arguments: [String], replies: Int) -> EventLoopFuture<[RESPValue]> {
        let promise = channel.eventLoop.makePromise(of: [RESPValue].self)
        // Never empty: even no arguments format as "*0\r\n".
        let bytes = RESPCommandFormatter.format(arguments)
        let request = RedisRequest(
            bytes: bytes, replies: replies, promise: promise, isShardUnsubscribe: arguments.first?.uppercased() == "SUNSUBSCRIBE")
        // Commands reach Redis in the order `send` was called (SUBSCRIBE and UNSUBSCRIBE of one session, sent under
        // the broker's lock, must not swap places).
        sends.submit((self, request)) { connection, request in connection.write(request) }
        return promise.futureResult
    }

    private func write(_ request: RedisRequest) {
        channel.writeAndFlush(request).whenFailure { error in
            request.promise.fail(BrokerError(.unavailable, "Redis write failed: \(error)"))
        }
    }

    func close() {
        channel.close(promise: nil)
    }
}

extension RESPValue {
    /// Throws Redis error replies, for setup commands whose failure means the connection is unusable.
    @discardableResult
    func throwingError() throws -> RESPValue {
        if case .error(let message) = self { throw BrokerError(.unavailable, "Redis said: \(message)") }
        return self
    }
}

struct RedisRequest {
    var bytes: [UInt8]
    var replies: Int
    var promise: EventLoopPromise<[RESPValue]>
    /// A `SUNSUBSCRIBE` sent by us: its replies look like the server's own unsubscribe pushes.
    var isShardUnsubscribe = false
}

/// Turns bytes into replies with hiredis's reader.
struct RESPDecoder: ByteToMessageDecoder {
    typealias InboundOut = RESPValue
    private let reader: HiredisReader

    init() throws {
        reader = try HiredisReader()
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if buffer.readableBytes > 0 {
            try buffer.withUnsafeReadableBytes { try reader.feed($0) }
            buffer.moveReaderIndex(to: buffer.writerIndex)
        }
        // hiredis holds every byte fed so far, so drain all whole replies now: the decoder is not called again
        // until more bytes arrive.
        while let reply = try reader.nextReply() {
            context.fireChannelRead(wrapInboundOut(reply))
        }
        return .needMoreData
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

/// Matches replies to pipelined commands in order; hands pushed messages of a subscriber connection to `onMessage`.
final class RedisCommandHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPValue
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var remaining: Int
        var replies: [RESPValue]
        var promise: EventLoopPromise<[RESPValue]>
        var sentAt: NIODeadline
        var isShardUnsubscribe: Bool
    }

    private var pending = CircularBuffer<Pending>()
    /// When a reply last arrived: a Redis that is slow because it (or this machine) is busy still answers something,
    /// and only silence counts as a stall.
    private var lastReplyAt = NIODeadline.now()
    private let commandTimeout: TimeAmount
    private let onMessage: (@Sendable (String, [UInt8]) -> Void)?
    private let onShardUnsubscribed: (@Sendable (String) -> Void)?
    private var sweep: RepeatedTask?
    private var flushScheduled = false

    init(commandTimeout: Duration, onMessage: (@Sendable (String, [UInt8]) -> Void)?, onShardUnsubscribed: (@Sendable (String) -> Void)? = nil) {
        self.commandTimeout = TimeAmount(commandTimeout)
        self.onMessage = onMessage
        self.onShardUnsubscribed = onShardUnsubscribed
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let interval = TimeAmount.nanoseconds(max(commandTimeout.nanoseconds / 4, 10_000_000))
        sweep = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            let (handler, context) = loopBound.value
            handler.closeIfStalled(context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        sweep?.cancel()
        failAll(BrokerError(.unavailable, "Redis connection closed"))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        guard context.channel.isActive else {
            request.promise.fail(BrokerError(.unavailable, "Redis connection closed"))
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        pending.append(
            Pending(
                remaining: request.replies, replies: [], promise: request.promise, sentAt: .now(),
                isShardUnsubscribe: request.isShardUnsubscribe))
        var buffer = context.channel.allocator.buffer(capacity: request.bytes.count)
        buffer.writeBytes(request.bytes)
        context.write(wrapOutboundOut(buffer), promise: promise)
    }

    /// Flushes once per event-loop tick, not once per command: the commands of every request handled in this tick
    /// leave in one write, and Redis reads them in one go.
    func flush(context: ChannelHandlerContext) {
        guard !flushScheduled else { return }
        flushScheduled = true
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = loopBound.value
            handler.flushScheduled = false
            context.flush()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let reply = unwrapInboundIn(data)
        lastReplyAt = .now()
        if let onMessage, let message = Self.pushedMessage(reply) {
            onMessage(message.channel, message.payload)
            return
        }
        // `["sunsubscribe", channel, count]` answers our SUNSUBSCRIBE, or is the server's own notice that the slot
        // left this node: a notice when no SUNSUBSCRIBE of ours waits for its replies.
        if let onShardUnsubscribed, pending.first?.isShardUnsubscribe != true, let channel = Self.shardUnsubscribeNotice(reply) {
            onShardUnsubscribed(channel)
            return
        }
        guard var first = pending.first else {
            // A reply nobody asked for: the stream is out of step, so nothing after it can be trusted.
            context.fireErrorCaught(BrokerError(.protocolViolation, "unexpected reply from Redis"))
            context.close(promise: nil)
            return
        }
        first.replies.append(reply)
        first.remaining -= 1
        // A command refused as a whole (an ACL, a wrong argument) gets one error however many replies it would have
        // had: it is complete, or every later reply would be matched to the wrong command.
        if case .error = reply { first.remaining = 0 }
        if first.remaining <= 0 {
            pending.removeFirst()
            first.promise.succeed(first.replies)
        } else {
            pending[pending.startIndex] = first
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(BrokerError(.unavailable, "Redis connection closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(BrokerError(.unavailable, "Redis connection failed: \(error)"))
        context.close(promise: nil)
    }

    private func closeIfStalled(context: ChannelHandlerContext) {
        let now = NIODeadline.now()
        guard let oldest = pending.first, oldest.sentAt + commandTimeout < now, lastReplyAt + commandTimeout < now else { return }
        failAll(BrokerError(.unavailable, "Redis did not answer within \(commandTimeout.nanoseconds / 1_000_000) ms"))
        context.close(promise: nil)
    }

    private func failAll(_ error: BrokerError) {
        while let request = pending.popFirst() { request.promise.fail(error) }
    }

    /// `["message", channel, payload]` or `["smessage", channel, payload]`: the messages a subscriber connection gets
    /// besides (un)subscribe replies.
    private static func pushedMessage(_ reply: RESPValue) -> (channel: String, payload: [UInt8])? {
        guard case .array(let parts) = reply, parts.count == 3, parts[0].string == "message" || parts[0].string == "smessage",
            let channel = parts[1].string, case .bulkString(let payload) = parts[2]
        else { return nil }
        return (channel, payload)
    }

    private static func shardUnsubscribeNotice(_ reply: RESPValue) -> String? {
        guard case .array(let parts) = reply, parts.count == 3, parts[0].string == "sunsubscribe", case .integer = parts[2] else { return nil }
        return parts[1].string
    }
}

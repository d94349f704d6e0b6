import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// An HTTP/1.1 server over SwiftNIO's non-blocking sockets: one task per connection reads requests in order
/// (keep-alive, pipelining), asks the responder, and writes the response, streaming it when the body is a stream.
///
/// As a `Service`, `run()` serves until cancelled or shut down gracefully. Graceful shutdown stops accepting, closes
/// idle connections, closes busy ones after their response, and returns when the last connection has ended
/// (streaming responders end their streams on graceful shutdown themselves).
public final class HTTPServer: Service, Sendable {
    private let configuration: Configuration
    private let responder: any HTTPResponder
    private let logger: Logger
    private let eventLoopGroup: any EventLoopGroup
    private let onServerRunning: @Sendable (SocketAddress) async -> Void
    private let connections = ConnectionTracker()
    private let requestCounter = Atomic<UInt64>(0)

    /// - Parameter onServerRunning: called once the socket is bound, with the address it is bound to (the port
    ///   chosen when `configuration.port` is 0).
    public init(
        configuration: Configuration,
        responder: any HTTPResponder,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        onServerRunning: @escaping @Sendable (SocketAddress) async -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.responder = responder
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.onServerRunning = onServerRunning
    }

    public func run() async throws {
        let configuration = self.configuration
        let server = try await ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.backlog, value: Int32(clamping: configuration.backlog))
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .bind(host: configuration.host, port: configuration.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    var limits = NIOHTTPDecoderLimitConfiguration()
                    limits.maxHeaderListSize = configuration.maximumHeaderBytes
                    limits.maxHeaderFieldSize = configuration.maximumHeaderBytes
                    limits.maxHeaderFieldCount = 100
                    let sync = channel.pipeline.syncOperations
                    try sync.configureHTTPServerPipeline(
                        withErrorHandling: false,
                        withEncoderConfiguration: .init(),
                        withDecoderLimitConfiguration: limits
                    )
                    try sync.addHandler(HTTPProtocolErrorHandler())
                    try sync.addHandler(ConnectionIdleHandler(timeout: configuration.idleTimeout, requestTimeout: configuration.requestTimeout))
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(
                        wrappingChannelSynchronously: channel
                    )
                }
            }

        guard let address = server.channel.localAddress else {
            throw ChannelError.unknownLocalAddress
        }
        logger.debug("listening", metadata: ["address": "\(address)"])
        await onServerRunning(address)

        let connections = self.connections
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection) }
                    }
                }
            }
        } onGracefulShutdown: {
            // Closing the listener ends the accept loop above; the task group then waits for open connections.
            server.channel.close(promise: nil)
            connections.drainAll()
        }
    }

    /// Number of connections currently open.
    public var openConnections: Int { connections.count }

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        let channel = connection.channel
        let peer = channel.remoteAddress?.ipAddress ?? "unknown"
        let perAddressLimit = configuration.trustedProxies.contains(peer) ? Int.max : configuration.maximumConnectionsPerAddress
        guard connections.add(channel, address: peer, limit: configuration.maximumConnections, perAddressLimit: perAddressLimit) else {
            // Over a limit: closed before anything is read, so a flood costs a moment, not memory.
            logger.debug("connection refused: over the connection limit", metadata: ["peer": "\(peer)"])
            try? await connection.channel.close()
            return
        }
        defer { connections.remove(channel, address: peer) }
        do {
            try await connection.executeThenClose { inbound, outbound in
                var parts = inbound.makeAsyncIterator()
                while let part = try await parts.next() {
                    guard case .head(let head) = part else { continue }  // remains of a request answered early
                    let id = String(requestCounter.wrappingAdd(1, ordering: .relaxed).newValue, radix: 36)
                    var logger = self.logger
                    logger[metadataKey: "request.id"] = "\(id)"
                    let started = ContinuousClock.now

                    var request = Request(
                        method: head.method,
                        uri: head.uri,
                        headers: head.headers,
                        remoteAddress: channel.remoteAddress,
                        clientAddress: ClientAddress.of(
                            peer: channel.remoteAddress, forwardedFor: head.headers["x-forwarded-for"], trusted: configuration.trustedProxies),
                        id: id
                    )
                    switch try await readBody(of: head, from: &parts, outbound: outbound, allocator: channel.allocator) {
                    case .complete(let buffer):
                        request.body = buffer
                    case .tooLarge:
                        // The rest of the body is never read, so the connection cannot be reused.
                        try await write(responder.bodyTooLarge(request), for: head, keepAlive: false, outbound: outbound, channel: channel)
                        log(head, status: .payloadTooLarge, since: started, logger: logger)
                        return
                    }

                    let keepAlive = head.isKeepAlive && !connections.isDraining
                    let response = await responder.respond(to: request, logger: logger)
                    do {
                        try await write(response, for: head, keepAlive: keepAlive, outbound: outbound, channel: channel)
                    } catch {
                        // The client went away mid-response (a stream it closed): the request still gets its line.
                        log(head, status: response.status, since: started, logger: logger, ended: "client closed")
                        throw error
                    }
                    log(head, status: response.status, since: started, logger: logger)
                    if !keepAlive { return }
                }
            }
        } catch {
            logger.trace("connection closed", metadata: ["error": "\(error)"])
        }
    }

    private enum BodyResult {
        case complete(ByteBuffer)
        case tooLarge
    }

    private func readBody(
        of head: HTTPRequestHead,
        from parts: inout NIOAsyncChannelInboundStream<HTTPServerRequestPart>.AsyncIterator,
        outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>,
        allocator: ByteBufferAllocator
    ) async throws -> BodyResult {
        let limit = configuration.maximumBodyBytes
        if let declared = head.headers.first(name: "content-length").flatMap({ Int($0) }), declared > limit {
            return .tooLarge
        }
        if head.headers.first(name: "expect")?.lowercased() == "100-continue" {
            try await outbound.write(.head(HTTPResponseHead(version: head.version, status: .continue)))
        }
        var body = allocator.buffer(capacity: 0)
        while let part = try await parts.next() {
            switch part {
            case .body(var chunk):
                guard body.readableBytes + chunk.readableBytes <= limit else { return .tooLarge }
                body.writeBuffer(&chunk)
            case .end:
                return .complete(body)
            case .head:
                throw HTTPParserError.invalidInternalState
            }
        }
        throw ChannelError.eof
    }

    private func write(
        _ response: Response,
        for head: HTTPRequestHead,
        keepAlive: Bool,
        outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>,
        channel: any Channel
    ) async throws {
        var headers = response.headers
        if !keepAlive {
            headers.replaceOrAdd(name: "Connection", value: "close")
        } else if head.version.minor == 0 {
            headers.replaceOrAdd(name: "Connection", value: "keep-alive")
        }
        let isHead = head.method == .HEAD
        switch response.body {
        case .bytes(let buffer):
            if response.status != .notModified, response.status != .noContent {
                headers.replaceOrAdd(name: "Content-Length", value: String(buffer.readableBytes))
            }
            let responseHead = HTTPResponseHead(version: head.version, status: response.status, headers: headers)
            if isHead || buffer.readableBytes == 0 {
                try await outbound.write(contentsOf: [.head(responseHead), .end(nil)])
            } else {
                try await outbound.write(contentsOf: [.head(responseHead), .body(.byteBuffer(buffer)), .end(nil)])
            }
        case .stream(let produce):
            headers.remove(name: "Content-Length")
            let responseHead = HTTPResponseHead(version: head.version, status: response.status, headers: headers)
            try await outbound.write(.head(responseHead))
            if !isHead {
                try await produce(ResponseBodyWriter(outbound: outbound, channel: channel))
            }
            try await outbound.write(.end(nil))
        }
    }

    private func log(
        _ head: HTTPRequestHead, status: HTTPResponseStatus, since started: ContinuousClock.Instant, logger: Logger, ended: String? = nil
    ) {
        // The path only: query strings carry session IDs, which are capabilities and stay out of logs.
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        let elapsed = ContinuousClock.now - started
        let milliseconds = Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000
        var metadata: Logger.Metadata = ["duration_ms": "\((milliseconds * 100).rounded() / 100)"]
        if let ended { metadata["ended"] = "\(ended)" }
        logger.info("\(head.method.rawValue) \(path) \(status.code)", metadata: metadata)
    }
}

/// The open connections, so that graceful shutdown can tell each one to drain.
final class ConnectionTracker: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        var perAddress: [String: Int] = [:]
        var draining = false
    }

    private let state = Mutex(State())

    /// Registers a new connection; false (and nothing registered) when a limit would be passed.
    func add(_ channel: any Channel, address: String, limit: Int, perAddressLimit: Int) -> Bool {
        let admitted = state.withLock { state -> Bool? in
            guard state.channels.count < limit, state.perAddress[address, default: 0] < perAddressLimit else { return nil }
            state.channels[ObjectIdentifier(channel)] = channel
            state.perAddress[address, default: 0] += 1
            return state.draining
        }
        guard let draining = admitted else { return false }
        if draining { channel.pipeline.fireUserInboundEventTriggered(ConnectionIdleHandler.DrainEvent()) }
        return true
    }

    func remove(_ channel: any Channel, address: String) {
        state.withLock { state in
            guard state.channels.removeValue(forKey: ObjectIdentifier(channel)) != nil else { return }
            let remaining = state.perAddress[address, default: 1] - 1
            state.perAddress[address] = remaining > 0 ? remaining : nil
        }
    }

    var isDraining: Bool { state.withLock { $0.draining } }
    var count: Int { state.withLock { $0.channels.count } }

    func drainAll() {
        let channels = state.withLock { state in
            state.draining = true
            return Array(state.channels.values)
        }
        for channel in channels {
            channel.pipeline.fireUserInboundEventTriggered(ConnectionIdleHandler.DrainEvent())
        }
    }
}

import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// An HTTP/1.1 server over SwiftNIO's non-blocking sockets. Each connection is served by channel handlers on its
/// event loop (``HTTPConnectionHandler``); a task exists only while a responder works on a request, so a waiting
/// connection or an open event stream costs its channel and nothing more.
///
/// As a `Service`, `run()` serves until cancelled or shut down gracefully. Graceful shutdown stops accepting, closes
/// idle connections, closes busy ones after their response, tells event streams to drain, and returns when the last
/// connection has closed. Cancellation (the shutdown deadline) closes whatever is left.
public final class HTTPServer: Service, Sendable {
    private let configuration: Configuration
    private let responder: any HTTPResponder
    private let logger: Logger
    private let eventLoopGroup: any EventLoopGroup
    private let onServerRunning: @Sendable (SocketAddress) async -> Void
    private let onDrain: @Sendable () -> Void
    private let connections = ConnectionTracker()
    private let requestCounter = RequestCounter()

    /// - Parameters:
    ///   - onServerRunning: called once the socket is bound, with the address it is bound to (the port chosen when
    ///     `configuration.port` is 0).
    ///   - onDrain: called when the graceful shutdown begins, before connections are told to drain.
    public init(
        configuration: Configuration,
        responder: any HTTPResponder,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        onServerRunning: @escaping @Sendable (SocketAddress) async -> Void = { _ in },
        onDrain: @escaping @Sendable () -> Void = {}
    ) {
        self.onDrain = onDrain
        self.configuration = configuration
        self.responder = responder
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.onServerRunning = onServerRunning
    }

    /// Whether the server has begun its graceful shutdown (readiness checks answer "no" from then on).
    public var isDraining: Bool { connections.isDraining }

    /// Number of connections currently open.
    public var openConnections: Int { connections.count }

    public func run() async throws {
        let configuration = self.configuration
        let connections = self.connections
        let logger = self.logger
        let sweepers = PerEventLoop(eventLoopGroup) { IdleConnectionSweeper(eventLoop: $0, timeout: configuration.idleTimeout) }
        defer { for sweeper in sweepers.all { sweeper.stop() } }
        let executors = PerEventLoop(eventLoopGroup) { EventLoopTaskExecutor($0) }
        let context = HTTPServerContext(
            configuration: configuration, responder: responder, logger: logger, connections: connections, requestCounter: requestCounter)
        let server = try await ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.backlog, value: Int32(clamping: configuration.backlog))
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // NIO's default of four accepts per readiness stays: one (as nginx without `multi_accept`) saved the
            // `accept4` that finds nothing when connections come one by one, but cost 20-30 us of node time per
            // connection when eight come at once (a loop turn each); see BENCHMARKS.md, session of 29 Nov, midday.
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Set here, synchronously, rather than as the bootstrap's child options, which it applies one
                    // future at a time: a dozen allocations per accepted connection, and every stream is one.
                    if let options = channel.syncOptions {
                        try options.setOption(.socketOption(.tcp_nodelay), value: 1)
                        try options.setOption(.maxMessagesPerRead, value: 16)
                        // Requests are small; start reads with a small buffer that grows only for a client that sends more.
                        try options.setOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536))
                    } else {
                        throw ChannelError.operationUnsupported
                    }
                    let peer = channel.remoteAddress?.ipAddress ?? "unknown"
                    let perAddressLimit = configuration.trustedProxies.contains(peer) ? Int.max : configuration.maximumConnectionsPerAddress
                    guard connections.add(channel, address: peer, limit: configuration.maximumConnections, perAddressLimit: perAddressLimit) else {
                        // Over a limit: closed before anything is read, so a flood costs a moment, not memory.
                        logger.debug("connection refused: over the connection limit", metadata: ["peer": "\(peer)"])
                        throw ConnectionLimitReached()
                    }
                    channel.closeFuture.whenComplete { _ in connections.remove(channel, address: peer) }
                    guard let sweeper = sweepers[channel.eventLoop], let executor = executors[channel.eventLoop] else {
                        throw ChannelError.inappropriateOperationForState
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPConnectionHandler(server: context, peerAddress: peer, taskExecutor: executor, sweeper: sweeper))
                    // Accepted while the server drains: told now that its handlers are there to hear it.
                    if connections.isDraining { channel.pipeline.fireUserInboundEventTriggered(HTTPConnectionHandler.DrainEvent()) }
                }
            }
            .bind(host: configuration.host, port: configuration.port)
            .get()

        guard let address = server.localAddress else {
            server.close(promise: nil)
            throw ChannelError.unknownLocalAddress
        }
        logger.debug("listening", metadata: ["address": "\(address)"])
        await onServerRunning(address)

        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                try? await server.closeFuture.get()
                await connections.waitUntilAllClosed()
            } onCancel: {
                server.close(promise: nil)
                connections.closeAll()
            }
        } onGracefulShutdown: { [onDrain] in
            // Closing the listener ends the wait above; then the open connections drain.
            onDrain()
            server.close(promise: nil)
            connections.drainAll()
        }
    }
}

/// Thrown by the channel initializer to refuse a connection over a limit (NIO then closes it).
struct ConnectionLimitReached: Error {}

/// The open connections, so that graceful shutdown can tell each one to drain.
final class ConnectionTracker: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        var perAddress: [String: Int] = [:]
        var draining = false
        var emptyWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    /// Registers a new connection; false (and nothing registered) when a limit would be passed.
    func add(_ channel: any Channel, address: String, limit: Int, perAddressLimit: Int) -> Bool {
        state.withLock { state -> Bool in
            guard state.channels.count < limit, state.perAddress[address, default: 0] < perAddressLimit else { return false }
            state.channels[ObjectIdentifier(channel)] = channel
            state.perAddress[address, default: 0] += 1
            return true
        }
    }

    func remove(_ channel: any Channel, address: String) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard state.channels.removeValue(forKey: ObjectIdentifier(channel)) != nil else { return [] }
            let remaining = state.perAddress[address, default: 1] - 1
            state.perAddress[address] = remaining > 0 ? remaining : nil
            guard state.channels.isEmpty else { return [] }
            defer { state.emptyWaiters = [] }
            return state.emptyWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once no connection is open.
    func waitUntilAllClosed() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                if state.channels.isEmpty { return true }
                state.emptyWaiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// Closes every connection now (the shutdown deadline has passed).
    func closeAll() {
        let channels = state.withLock { Array($0.channels.values) }
        for channel in channels { channel.close(promise: nil) }
    }

    var isDraining: Bool { state.withLock { $0.draining } }
    var count: Int { state.withLock { $0.channels.count } }

    func drainAll() {
        let channels = state.withLock { state in
            state.draining = true
            return Array(state.channels.values)
        }
        for channel in channels {
            channel.pipeline.fireUserInboundEventTriggered(HTTPConnectionHandler.DrainEvent())
        }
    }
}

import Broker
import HTTP
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import UnixSignals

/// One Tandem node: its broker, its session registry and its HTTP server, run as one service group. Shutdown runs
/// in reverse order: the server drains first while the registry and broker still work.
struct TandemApplication: Sendable {
    let configuration: TandemConfiguration
    let registry: SessionRegistries
    let broker: any Broker
    let server: HTTPServer
    let metrics: TandemMetrics
    /// Reports this node's counts to the operators' page (runs only when `ops.token` is set).
    let opsReporter: OpsReporter
    let logger: Logger
    /// The loops serving connections and Redis: NIO's shared group, or one of `eventLoops` threads of this node's own
    /// (see ``withApplication(configuration:logger:time:onServerRunning:_:)``).
    let eventLoopGroup: any EventLoopGroup

    /// Makes the node and runs `body` with it: on `eventLoops` threads of the node's own, which are shut down when
    /// `body` returns or throws (and when the node cannot be made), or on NIO's shared group when `eventLoops` is 0.
    static func withApplication<Result>(
        configuration: TandemConfiguration,
        logger: Logger,
        time: TimeSource = .system,
        onServerRunning: @escaping @Sendable (SocketAddress) async -> Void = { _ in },
        _ body: (TandemApplication) async throws -> Result
    ) async throws -> Result {
        guard configuration.eventLoops > 0 else {
            return try await body(
                TandemApplication(configuration: configuration, logger: logger, time: time, onServerRunning: onServerRunning))
        }
        return try await MultiThreadedEventLoopGroup.withEventLoopGroup(numberOfThreads: configuration.eventLoops) { group in
            try await body(
                TandemApplication(
                    configuration: configuration, logger: logger, time: time, eventLoopGroup: group, onServerRunning: onServerRunning))
        }
    }

    /// - Parameters:
    ///   - eventLoopGroup: the loops to serve on; whoever made them shuts them down after the node has stopped.
    ///   - onServerRunning: called with the bound address once the node accepts connections.
    init(
        configuration: TandemConfiguration,
        logger: Logger,
        time: TimeSource = .system,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        onServerRunning: @escaping @Sendable (SocketAddress) async -> Void = { _ in }
    ) throws {
        self.configuration = configuration
        self.logger = logger
        let metrics = TandemMetrics(opsPage: !configuration.opsToken.isEmpty)
        self.metrics = metrics
        let redisTarget: RedisBroker.Configuration.Target?
        switch configuration.broker {
        case .memory:
            redisTarget = nil
        case .redis:
            guard let url = RedisURL(configuration.redisURL) else {
                throw ConfigurationError(description: "redis.url '\(RedisURL.redacted(configuration.redisURL))' is not a redis:// URL")
            }
            redisTarget = .server(url)
        case .redisCluster:
            guard let seeds = TandemConfiguration.clusterSeeds(configuration.redisClusterNodes) else {
                throw ConfigurationError(description: "redis.clusterNodes names no cluster node (host:port,...)")
            }
            redisTarget = .cluster(seeds: seeds)
        }
        let staticFiles = try Self.loadStaticFiles(configuration, logger: logger)
        self.eventLoopGroup = eventLoopGroup
        let registry = SessionRegistries(
            eventLoopGroup: eventLoopGroup,
            bufferLimit: configuration.bufferedEvents,
            heartbeatInterval: configuration.heartbeat,
            presenceRenewalInterval: configuration.pairingGrace / 3,
            presenceReviewDelay: configuration.presenceReviewDelay,
            time: time,
            metrics: metrics,
            logger: logger
        )
        self.registry = registry
        if let redisTarget {
            broker = RedisBroker(
                configuration: .init(
                    target: redisTarget, presenceGrace: configuration.pairingGrace, lostSessionTombstone: configuration.sessionTTL * 2,
                    waitReplicas: configuration.redisWaitReplicas),
                sink: registry, time: time,
                eventLoopGroup: eventLoopGroup, logger: logger)
        } else {
            broker = InMemoryBroker(sink: registry, time: time, presenceGrace: configuration.pairingGrace, logger: logger)
        }
        let instrumented = InstrumentedBroker(base: broker, metrics: metrics)
        registry.keepPresence(through: instrumented)
        let publicOrigin = PublicOriginBox()
        let drainState = DrainState()
        let opsReporter = OpsReporter(
            configuration: configuration, broker: instrumented, registry: registry, metrics: metrics, time: time, logger: logger)
        self.opsReporter = opsReporter
        let api = API(
            broker: instrumented, registry: registry, configuration: configuration,
            staticFiles: staticFiles, metrics: metrics, drainState: drainState, time: time, publicOrigin: publicOrigin,
            ops: configuration.opsToken.isEmpty ? nil : OpsAccess(reporter: opsReporter))
        var serverConfiguration = HTTPServer.Configuration(
            host: configuration.host,
            port: configuration.port,
            maximumHeaderBytes: configuration.maxHeaderBytes,
            maximumBodyBytes: configuration.maxBodyBytes,
            idleTimeout: .seconds(configuration.idleTimeoutSeconds),
            requestTimeout: .seconds(configuration.requestTimeoutSeconds),
            maximumConnections: configuration.maxConnections,
            maximumConnectionsPerAddress: configuration.maxConnectionsPerAddress,
            trustedProxies: configuration.trustedProxyList
        )
        // Named as an operator sets it, for the warning about forwarding headers from untrusted peers.
        serverConfiguration.trustedProxiesSetting =
            "trustedProxies (environment variable \(ConfigurationReader.environmentName(for: "trustedProxies")))"
        serverConfiguration.metrics = metrics.factory
        serverConfiguration.defaultResponseHeaders = Self.securityHeaders
        server = HTTPServer(
            configuration: serverConfiguration,
            responder: SecureResponder(router: api.makeRouter(), configuration: configuration, time: time, metrics: metrics),
            eventLoopGroup: eventLoopGroup,
            logger: logger,
            onServerRunning: { address in
                // The phone URL needs the bound port, known only now (a configured port of 0 picks one).
                publicOrigin.set(PublicOrigin.resolve(configuration, port: address.port ?? configuration.port))
                opsReporter.serverStarted(port: address.port ?? configuration.port)
                await onServerRunning(address)
            },
            onDrain: { drainState.begin() }
        )
    }

    /// The node's services in start order; `signals` trigger a graceful shutdown bounded by `drainTimeoutSeconds`.
    func makeServiceGroup(signals: [UnixSignal] = [.sigterm, .sigint]) -> ServiceGroup {
        // The reporter uses the broker: it stops after the server has drained, before the broker. Without a token the
        // page is off and nothing reports.
        let reporting: [ServiceGroupConfiguration.ServiceConfiguration] = configuration.opsToken.isEmpty ? [] : [.init(service: opsReporter)]
        var group = ServiceGroupConfiguration(
            services: [.init(service: broker), .init(service: registry)] + reporting + [.init(service: server)],
            gracefulShutdownSignals: signals,
            logger: logger
        )
        group.maximumGracefulShutdownDuration = .seconds(configuration.drainTimeoutSeconds)
        return ServiceGroup(configuration: group)
    }

    /// The security headers (``SecureResponder/securityHeaders``), checked once, for the HTTP layer to write.
    static let securityHeaders: DefaultResponseHeaders = {
        do {
            return try DefaultResponseHeaders(SecureResponder.securityHeaders)
        } catch {
            preconditionFailure("the built-in security headers are valid: \(error)")
        }
    }()

    private static func loadStaticFiles(_ configuration: TandemConfiguration, logger: Logger) throws -> StaticFiles? {
        do {
            return try StaticFiles(directory: configuration.publicDirectory)
        } catch {
            let configured = configuration.origins.first { $0.key == "publicDirectory" }?.origin != .defaultValue
            if configured { throw ConfigurationError(description: "publicDirectory: \(error)") }
            logger.warning("no pages to serve: \(error); the API still works")
            return nil
        }
    }
}

/// Whether this node has begun draining (read by `/readyz`).
final class DrainState: Sendable {
    private let draining = Atomic<Bool>(false)

    func begin() { draining.store(true, ordering: .relaxed) }
    var isDraining: Bool { draining.load(ordering: .relaxed) }
}

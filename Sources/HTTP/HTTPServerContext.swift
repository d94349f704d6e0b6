import Logging
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

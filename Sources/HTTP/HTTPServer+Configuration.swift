import CoreMetrics

extension HTTPServer {
    /// Where the server listens and the limits it enforces on every connection.
    public struct Configuration: Sendable {
        /// Address to bind; `0.0.0.0` listens on every IPv4 interface.
        public var host: String
        /// Port to bind; 0 picks a free one (reported through `onServerRunning`).
        public var port: Int
        /// Largest request line plus headers, in bytes; larger gets 431 and the connection is closed.
        public var maximumHeaderBytes: Int
        /// Largest request body, in bytes; larger gets 413 and the connection is closed.
        public var maximumBodyBytes: Int
        /// How long a keep-alive connection may sit with no request in flight before it is closed. A streaming
        /// response (an SSE stream) is a request in flight, so it is never idle.
        public var idleTimeout: Duration
        /// How long a request may take to arrive whole once its head is in (a body sent a byte a second); past it
        /// the client gets 408 and the connection closes.
        public var requestTimeout: Duration
        /// Open connections at most; more are closed as they are accepted (each costs a file descriptor, and a
        /// process may hold 20,000 here).
        public var maximumConnections: Int
        /// Open connections from one address at most (trusted proxies excepted, since every client comes through
        /// them); more are closed as they are accepted.
        public var maximumConnectionsPerAddress: Int
        /// Peers whose `X-Forwarded-For` names the client (see ``Request/clientAddress``).
        public var trustedProxies: TrustedProxies
        /// How the setting behind ``trustedProxies`` is named to operators, for the warning logged when a forwarding
        /// header arrives from a peer that is not trusted (the application knows its own setting's name).
        public var trustedProxiesSetting = "trustedProxies"
        /// Where the HTTP layer's own counters go (`http_forwarding_headers_ignored_total`); nil counts nothing.
        public var metrics: (any MetricsFactory)?
        /// The listen backlog.
        public var backlog: Int
        /// Headers every response carries unless it sets the same name (security headers), refusals made by this
        /// layer included.
        public var defaultResponseHeaders = DefaultResponseHeaders.none

        public init(
            host: String = "0.0.0.0",
            port: Int = 8080,
            maximumHeaderBytes: Int = 16 * 1024,
            maximumBodyBytes: Int = 16 * 1024,
            idleTimeout: Duration = .seconds(60),
            requestTimeout: Duration = .seconds(10),
            maximumConnections: Int = 19_800,
            maximumConnectionsPerAddress: Int = 512,
            trustedProxies: TrustedProxies = .none,
            backlog: Int = 1024
        ) {
            self.host = host
            self.port = port
            self.maximumHeaderBytes = maximumHeaderBytes
            self.maximumBodyBytes = maximumBodyBytes
            self.idleTimeout = idleTimeout
            self.requestTimeout = requestTimeout
            self.maximumConnections = maximumConnections
            self.maximumConnectionsPerAddress = maximumConnectionsPerAddress
            self.trustedProxies = trustedProxies
            self.backlog = backlog
        }
    }
}

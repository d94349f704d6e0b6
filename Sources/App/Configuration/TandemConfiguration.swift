#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Broker
import HTTP
import Logging

/// Every knob of Tandem. Read from environment variables, then `config.json`, then these defaults; the committed
/// `config.json` holds exactly the defaults (a test checks).
///
/// Keys (environment variable in brackets): `host` [HOST], `port` [PORT], `eventLoops` [EVENT_LOOPS], `broker` [BROKER], `redis.url`
/// [REDIS_URL], `publicBaseURL` [PUBLIC_BASE_URL], `session.ttlSeconds` [SESSION_TTL_SECONDS], `heartbeatSeconds`
/// [HEARTBEAT_SECONDS], `sse.retryMilliseconds`, `sse.bufferedEvents`, `limits.maxHeaderBytes`, `limits.maxBodyBytes`,
/// `limits.idleTimeoutSeconds`, `drainTimeoutSeconds`, `defaultLanguage`, `publicDirectory`, `logLevel`.
struct TandemConfiguration: Sendable, Equatable {
    enum BrokerKind: String, Sendable, CaseIterable {
        case memory
        case redis
    }

    var host = "0.0.0.0"
    var port = 8080
    /// Event loops (threads) serving connections and Redis; 0 is one per core. Fewer than cores leaves room for
    /// what shares the machine (Redis, another node).
    var eventLoops = 0
    var broker = BrokerKind.memory
    var redisURL = "redis://127.0.0.1:6379/0"
    /// The origin phones use to reach this server (for the QR code); empty means "work it out".
    var publicBaseURL = ""
    var sessionTTLSeconds = 600
    /// How long a session's PC may be gone (its stream closed everywhere) before the session is cancelled; 0 means
    /// the reconnect delay plus 5 s, which covers a browser's reconnect and a node's drain.
    var pairingGraceSeconds = 0
    /// How often the QR code of a server-made session changes; a code is good for twice this (see docs/protocol.md).
    var qrRotateSeconds = 30
    var heartbeatSeconds = 30
    /// The `retry:` hint sent at the start of every stream: how long a browser waits before reconnecting.
    var retryMilliseconds = 2000
    /// Events a stream keeps while its response is prepared or a gap in ids is filled from the log.
    var bufferedEvents = 32
    var maxHeaderBytes = 16 * 1024
    var maxBodyBytes = 16 * 1024
    var idleTimeoutSeconds = 60
    var requestTimeoutSeconds = 10
    var maxConnections = 19_800
    var maxConnectionsPerAddress = 512
    /// Sessions (POST /api/sessions, stream opens) per client address and minute; 0 is no limit.
    var sessionsPerMinute = 60
    /// Phone requests (validate, input-started, submit) per client address and minute; 0 is no limit.
    var requestsPerMinute = 600
    /// Proxies whose X-Forwarded-For names the client: addresses or CIDR ranges, comma-separated.
    var trustedProxies = ""
    /// Origins allowed to call the API from other sites (CORS), comma-separated; empty keeps CORS closed.
    var corsOrigins = ""
    /// How long a graceful shutdown may take before open work is cancelled.
    var drainTimeoutSeconds = 10
    /// The language of error messages when `Accept-Language` names neither Japanese nor English.
    var defaultLanguage = Language.japanese
    var publicDirectory = "Public"
    var logLevel = Logger.Level.info
    /// `text` (swift-log's lines) or `json` (one object per line).
    var logFormat = LogFormat.text

    enum LogFormat: String, Sendable, CaseIterable {
        case text
        case json
    }

    /// Where each value came from, in key order.
    var origins: [(key: String, environmentName: String, origin: ConfigurationOrigin)] = []

    init() {}

    init(reader: inout ConfigurationReader) throws(ConfigurationError) {
        let defaults = TandemConfiguration()
        host = try reader.string("host", default: defaults.host)
        if host.isEmpty { throw reader.invalid("host", expected: "a host name or address", value: host) }
        port = try reader.integer("port", default: defaults.port, in: 0...65535)
        eventLoops = try reader.integer("eventLoops", default: defaults.eventLoops, in: 0...256)
        broker = try reader.choice("broker", default: defaults.broker)
        redisURL = try reader.string("redis.url", default: defaults.redisURL)
        if broker == .redis, RedisURL(redisURL) == nil {
            throw reader.invalid("redis.url", expected: "a URL like redis://host:6379/0", value: redisURL)
        }
        publicBaseURL = try reader.string("publicBaseURL", default: defaults.publicBaseURL)
        if !publicBaseURL.isEmpty {
            guard publicBaseURL.hasPrefix("http://") || publicBaseURL.hasPrefix("https://"),
                URL(string: publicBaseURL)?.host?.isEmpty == false
            else {
                throw reader.invalid("publicBaseURL", expected: "empty or an origin like http://192.168.1.20:8080", value: publicBaseURL)
            }
            while publicBaseURL.hasSuffix("/") { publicBaseURL.removeLast() }
        }
        sessionTTLSeconds = try reader.integer("session.ttlSeconds", default: defaults.sessionTTLSeconds, in: 1...86_400)
        pairingGraceSeconds = try reader.integer("pairing.graceSeconds", default: defaults.pairingGraceSeconds, in: 0...3600)
        qrRotateSeconds = try reader.integer("pairing.qrRotateSeconds", default: defaults.qrRotateSeconds, in: 5...3600)
        heartbeatSeconds = try reader.integer("heartbeatSeconds", default: defaults.heartbeatSeconds, in: 1...3600)
        retryMilliseconds = try reader.integer("sse.retryMilliseconds", default: defaults.retryMilliseconds, in: 0...600_000)
        // A grace shorter than the browser's reconnect delay would cancel every session whose stream blips.
        if pairingGraceSeconds > 0, pairingGraceSeconds * 1000 < retryMilliseconds + 1000 {
            throw reader.invalid(
                "pairing.graceSeconds", expected: "0 (automatic) or at least sse.retryMilliseconds + 1 s (\(retryMilliseconds / 1000 + 1) s)",
                value: String(pairingGraceSeconds))
        }
        bufferedEvents = try reader.integer("sse.bufferedEvents", default: defaults.bufferedEvents, in: 1...10_000)
        maxHeaderBytes = try reader.integer("limits.maxHeaderBytes", default: defaults.maxHeaderBytes, in: 1024...1_048_576)
        maxBodyBytes = try reader.integer("limits.maxBodyBytes", default: defaults.maxBodyBytes, in: 256...16_777_216)
        idleTimeoutSeconds = try reader.integer("limits.idleTimeoutSeconds", default: defaults.idleTimeoutSeconds, in: 1...86_400)
        requestTimeoutSeconds = try reader.integer("limits.requestTimeoutSeconds", default: defaults.requestTimeoutSeconds, in: 1...3600)
        maxConnections = try reader.integer("limits.maxConnections", default: defaults.maxConnections, in: 1...1_000_000)
        maxConnectionsPerAddress = try reader.integer("limits.maxConnectionsPerAddress", default: defaults.maxConnectionsPerAddress, in: 1...1_000_000)
        sessionsPerMinute = try reader.integer("limits.sessionsPerMinute", default: defaults.sessionsPerMinute, in: 0...1_000_000)
        requestsPerMinute = try reader.integer("limits.requestsPerMinute", default: defaults.requestsPerMinute, in: 0...1_000_000)
        trustedProxies = try reader.string("trustedProxies", default: defaults.trustedProxies)
        if TrustedProxies(Self.list(trustedProxies)) == nil {
            throw reader.invalid("trustedProxies", expected: "comma-separated addresses or CIDR ranges like 10.0.0.0/8", value: trustedProxies)
        }
        corsOrigins = try reader.string("cors.allowedOrigins", default: defaults.corsOrigins)
        for origin in Self.list(corsOrigins) where !(origin.hasPrefix("http://") || origin.hasPrefix("https://")) || origin.hasSuffix("/") {
            throw reader.invalid("cors.allowedOrigins", expected: "comma-separated origins like https://example.com", value: corsOrigins)
        }
        drainTimeoutSeconds = try reader.integer("drainTimeoutSeconds", default: defaults.drainTimeoutSeconds, in: 0...3600)
        defaultLanguage = try reader.choice("defaultLanguage", default: defaults.defaultLanguage)
        publicDirectory = try reader.string("publicDirectory", default: defaults.publicDirectory)
        logLevel = try reader.choice("logLevel", default: defaults.logLevel)
        logFormat = try reader.choice("logFormat", default: defaults.logFormat)
        try reader.rejectUnknownFileKeys()
        origins = reader.origins
    }

    /// Loads the configuration: `path` (default `config.json` in the working folder, or `TANDEM_CONFIG`) may be
    /// missing unless it was named explicitly; the environment overrides it.
    static func load(
        path explicitPath: String? = nil, environment: [String: String], overrides: [String: String] = [:]
    ) throws(ConfigurationError) -> TandemConfiguration {
        let path = explicitPath ?? environment["TANDEM_CONFIG"] ?? "config.json"
        let contents = FileManager.default.contents(atPath: path).map { [UInt8]($0) }
        if contents == nil, explicitPath != nil || environment["TANDEM_CONFIG"] != nil {
            throw ConfigurationError(description: "configuration file '\(path)' cannot be read")
        }
        var reader = try ConfigurationReader(fileContents: contents, fileName: path, environment: environment, overrides: overrides)
        return try TandemConfiguration(reader: &reader)
    }

    static func == (lhs: TandemConfiguration, rhs: TandemConfiguration) -> Bool {
        lhs.host == rhs.host && lhs.port == rhs.port && lhs.eventLoops == rhs.eventLoops && lhs.broker == rhs.broker && lhs.redisURL == rhs.redisURL
            && lhs.publicBaseURL == rhs.publicBaseURL && lhs.sessionTTLSeconds == rhs.sessionTTLSeconds
            && lhs.pairingGraceSeconds == rhs.pairingGraceSeconds && lhs.qrRotateSeconds == rhs.qrRotateSeconds
            && lhs.heartbeatSeconds == rhs.heartbeatSeconds && lhs.retryMilliseconds == rhs.retryMilliseconds
            && lhs.bufferedEvents == rhs.bufferedEvents && lhs.maxHeaderBytes == rhs.maxHeaderBytes
            && lhs.maxBodyBytes == rhs.maxBodyBytes && lhs.idleTimeoutSeconds == rhs.idleTimeoutSeconds
            && lhs.requestTimeoutSeconds == rhs.requestTimeoutSeconds && lhs.maxConnections == rhs.maxConnections
            && lhs.maxConnectionsPerAddress == rhs.maxConnectionsPerAddress && lhs.sessionsPerMinute == rhs.sessionsPerMinute
            && lhs.requestsPerMinute == rhs.requestsPerMinute && lhs.trustedProxies == rhs.trustedProxies
            && lhs.corsOrigins == rhs.corsOrigins
            && lhs.drainTimeoutSeconds == rhs.drainTimeoutSeconds && lhs.defaultLanguage == rhs.defaultLanguage
            && lhs.publicDirectory == rhs.publicDirectory && lhs.logLevel == rhs.logLevel && lhs.logFormat == rhs.logFormat
    }

    /// Every setting's effective value as text, by key, secrets masked (for `tandem check-config`).
    var effectiveValues: [String: String] {
        var redis = redisURL
        if let url = RedisURL(redisURL), url.password != nil { redis = url.description }
        return [
            "host": host, "port": String(port), "eventLoops": String(eventLoops), "broker": broker.rawValue, "redis.url": redis, "publicBaseURL": publicBaseURL,
            "session.ttlSeconds": String(sessionTTLSeconds), "pairing.graceSeconds": String(pairingGraceSeconds),
            "pairing.qrRotateSeconds": String(qrRotateSeconds), "heartbeatSeconds": String(heartbeatSeconds),
            "sse.retryMilliseconds": String(retryMilliseconds), "sse.bufferedEvents": String(bufferedEvents),
            "limits.maxHeaderBytes": String(maxHeaderBytes), "limits.maxBodyBytes": String(maxBodyBytes),
            "limits.idleTimeoutSeconds": String(idleTimeoutSeconds), "limits.requestTimeoutSeconds": String(requestTimeoutSeconds),
            "limits.maxConnections": String(maxConnections), "limits.maxConnectionsPerAddress": String(maxConnectionsPerAddress),
            "limits.sessionsPerMinute": String(sessionsPerMinute), "limits.requestsPerMinute": String(requestsPerMinute),
            "trustedProxies": trustedProxies, "cors.allowedOrigins": corsOrigins, "drainTimeoutSeconds": String(drainTimeoutSeconds),
            "defaultLanguage": defaultLanguage.rawValue, "publicDirectory": publicDirectory, "logLevel": logLevel.rawValue,
            "logFormat": logFormat.rawValue,
        ]
    }

    var sessionTTL: Duration { .seconds(sessionTTLSeconds) }
    /// The presence grace in effect (see `pairingGraceSeconds`).
    var pairingGrace: Duration {
        pairingGraceSeconds > 0 ? .seconds(pairingGraceSeconds) : .milliseconds(retryMilliseconds) + .seconds(5)
    }
    var trustedProxyList: TrustedProxies { TrustedProxies(Self.list(trustedProxies)) ?? .none }
    var corsAllowedOrigins: Set<String> { Set(Self.list(corsOrigins)) }

    static func list(_ text: String) -> [String] {
        text.split(separator: ",").map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
    }
    var heartbeat: Duration { .seconds(heartbeatSeconds) }
}

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
        /// A Redis Cluster (Redis 7): sessions spread over its masters by slot, events by sharded Pub/Sub.
        case redisCluster = "redis-cluster"
    }

    var host = "0.0.0.0"
    var port = 8080
    /// Event loops (threads) serving connections and Redis; 0 is one per core. Fewer than cores leaves room for
    /// what shares the machine (Redis, another node).
    var eventLoops = 0
    var broker = BrokerKind.memory
    var redisURL = "redis://127.0.0.1:6379/0"
    /// Seed nodes of the Redis Cluster (broker `redis-cluster`), comma-separated: `host:port`, or
    /// `redis://[[user]:password@]host:port` to give credentials (used for every node). Any few nodes will do: the
    /// rest of the cluster is learnt from them.
    var redisClusterNodes = ""
    /// Replicas that must have an event (`WAIT`) before its POST is answered; 0 answers once the master has it.
    var redisWaitReplicas = 0
    /// The origin phones use to reach this server (for the QR code); empty means "work it out".
    var publicBaseURL = "" {
        didSet { publicBaseIsHTTPS = publicBaseURL.lowercased().hasPrefix("https://") }
    }
    /// Whether `publicBaseURL` is `https://`: every key cookie is `Secure` then. Kept with the setting, as the
    /// proxies below: each phone step reads it.
    private(set) var publicBaseIsHTTPS = false
    var sessionTTLSeconds = 600
    /// The TTLs a node may be configured with. A session's cookies are bounded by the largest, not by this node's
    /// own TTL: nodes of one deployment may differ (while the setting rolls out), and a session made by another node
    /// lives as long as that node said.
    static let sessionTTLSecondsRange: ClosedRange<Int> = 1...86_400
    /// How long a session's PC may be gone (its stream closed everywhere) before the session is cancelled; 0 means
    /// the reconnect delay plus 5 s, which covers a browser's reconnect and a node's drain.
    var pairingGraceSeconds = 0
    /// How often the QR code of a server-made session changes; a code is good for twice this (see docs/protocol.md).
    var qrRotateSeconds = 30
    /// The phone's form (`form.fields`); the article's name and phone by default.
    var form = FormSchema.article
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
    var trustedProxies = "" {
        didSet { trustedProxyList = TrustedProxies(Self.list(trustedProxies)) ?? .none }
    }
    /// `trustedProxies` parsed, once per setting, not on each cookie (``none`` when it does not parse: the setting's
    /// check refuses that at start).
    private(set) var trustedProxyList: TrustedProxies = .none
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
    /// The bearer token of the operators' page (`/ops`, `/api/ops/...`); empty turns the page off (404).
    var opsToken = ""
    /// This node's name on the operators' page; empty means `hostname:port`.
    var opsNodeName = ""

    enum LogFormat: String, Sendable, CaseIterable {
        case text
        case json
    }

    /// Where each value came from, in key order (not part of equality: see ``settings``).
    var origins: [(key: String, environmentName: String, origin: ConfigurationOrigin)] = []

    init() {}

    /// Reads every setting of ``settings`` in order, then checks each value against the whole configuration (some
    /// checks involve two settings), then refuses keys in the file that no setting read.
    init(reader: inout ConfigurationReader) throws(ConfigurationError) {
        for setting in Self.settings { try setting.read(&reader, &self) }
        for setting in Self.settings { try setting.check(&self, reader) }
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

    /// Every setting, declared once: its key (the environment variable is derived from it), the property it fills,
    /// its range or choices, and the checks that need more than its own value. Reading, equality and `check-config`'s
    /// report all come from this table; a test checks that every stored property has its row.
    static var settings: [ConfigurationSetting] {
        [
            .string("host", \.host, check: { value, _ in value.isEmpty ? "a host name or address" : nil }),
            .integer("port", \.port, in: 0...65535),
            .integer("eventLoops", \.eventLoops, in: 0...256),
            .choice("broker", \.broker),
            .string("redis.url", \.redisURL, shown: RedisURL.redacted, check: { value, configuration in
                configuration.broker == .redis && RedisURL(value) == nil ? "a URL like redis://host:6379/0" : nil
            }),
            .string("redis.clusterNodes", \.redisClusterNodes, shown: Self.redactedSeeds, check: { value, configuration in
                guard configuration.broker == .redisCluster else { return nil }
                return Self.clusterSeeds(value) == nil ? "comma-separated cluster nodes like 10.0.0.1:7000,10.0.0.2:7000" : nil
            }),
            // On one Redis the node cannot see whether a replica is there to acknowledge; a WAIT without one would hold
            // the shared connection for its timeout on every event.
            .integer("redis.waitReplicas", \.redisWaitReplicas, in: 0...16, check: { value, configuration in
                value > 0 && configuration.broker != .redisCluster ? "0 unless broker is redis-cluster" : nil
            }),
            .string("publicBaseURL", \.publicBaseURL, normalize: { value in
                var value = value
                while value.hasSuffix("/") { value.removeLast() }
                return value
            }, check: { value, _ in
                guard !value.isEmpty else { return nil }
                let isOrigin = (value.hasPrefix("http://") || value.hasPrefix("https://")) && URL(string: value)?.host?.isEmpty == false
                return isOrigin ? nil : "empty or an origin like http://192.168.1.20:8080"
            }),
            .integer("session.ttlSeconds", \.sessionTTLSeconds, in: Self.sessionTTLSecondsRange),
            // A grace shorter than the browser's reconnect delay would cancel every session whose stream blips.
            .integer("pairing.graceSeconds", \.pairingGraceSeconds, in: 0...3600, check: { value, configuration in
                let retry = configuration.retryMilliseconds
                guard value > 0, value * 1000 < retry + 1000 else { return nil }
                return "0 (automatic) or at least sse.retryMilliseconds + 1 s (\(retry / 1000 + 1) s)"
            }),
            .integer("pairing.qrRotateSeconds", \.qrRotateSeconds, in: 5...3600),
            .form("form.fields", \.form),
            .integer("heartbeatSeconds", \.heartbeatSeconds, in: 1...3600),
            .integer("sse.retryMilliseconds", \.retryMilliseconds, in: 0...600_000),
            .integer("sse.bufferedEvents", \.bufferedEvents, in: 1...10_000),
            .integer("limits.maxHeaderBytes", \.maxHeaderBytes, in: 1024...1_048_576),
            .integer("limits.maxBodyBytes", \.maxBodyBytes, in: 256...16_777_216),
            .integer("limits.idleTimeoutSeconds", \.idleTimeoutSeconds, in: 1...86_400),
            .integer("limits.requestTimeoutSeconds", \.requestTimeoutSeconds, in: 1...3600),
            .integer("limits.maxConnections", \.maxConnections, in: 1...1_000_000),
            .integer("limits.maxConnectionsPerAddress", \.maxConnectionsPerAddress, in: 1...1_000_000),
            .integer("limits.sessionsPerMinute", \.sessionsPerMinute, in: 0...1_000_000),
            .integer("limits.requestsPerMinute", \.requestsPerMinute, in: 0...1_000_000),
            .string("trustedProxies", \.trustedProxies, check: { value, _ in
                TrustedProxies(Self.list(value)) == nil ? "comma-separated addresses or CIDR ranges like 10.0.0.0/8" : nil
            }),
            .string("cors.allowedOrigins", \.corsOrigins, check: { value, _ in
                let allOrigins = Self.list(value).allSatisfy { ($0.hasPrefix("http://") || $0.hasPrefix("https://")) && !$0.hasSuffix("/") }
                return allOrigins ? nil : "comma-separated origins like https://example.com"
            }),
            .integer("drainTimeoutSeconds", \.drainTimeoutSeconds, in: 0...3600),
            .choice("defaultLanguage", \.defaultLanguage),
            .string("publicDirectory", \.publicDirectory),
            .choice("logLevel", \.logLevel),
            .choice("logFormat", \.logFormat),
            // A secret: masked in check-config and in the error for a wrong value. Short tokens can be guessed; a token
            // of other characters than a bearer token's could never be presented in `Authorization: Bearer`.
            .string("ops.token", \.opsToken, shown: Self.maskedSecret, check: { value, _ in
                value.isEmpty || Self.isAcceptableOpsToken(value)
                    ? nil
                    : "empty (the operators' page is off) or a token of \(Self.opsTokenBytes.lowerBound) to \(Self.opsTokenBytes.upperBound) "
                        + "bytes of letters, digits and -._~+/ (then = at the end), e.g. from openssl rand -hex 24"
            }),
            .string("ops.nodeName", \.opsNodeName, check: { value, _ in
                value.isEmpty || NodeReport.isAcceptableNodeName(value)
                    ? nil : "at most \(NodeReport.maximumNodeBytes) bytes without control or format characters"
            }),
        ]
    }

    /// Equal when every setting is: where the values came from does not count.
    static func == (lhs: TandemConfiguration, rhs: TandemConfiguration) -> Bool {
        settings.allSatisfy { $0.isEqual(lhs, rhs) }
    }

    /// Every setting's effective value as text, by key, secrets masked (for `tandem check-config`).
    var effectiveValues: [String: String] {
        Dictionary(uniqueKeysWithValues: Self.settings.map { ($0.key, $0.shown(self)) })
    }

    var sessionTTL: Duration { .seconds(sessionTTLSeconds) }
    /// The presence grace in effect (see `pairingGraceSeconds`).
    var pairingGrace: Duration {
        pairingGraceSeconds > 0 ? .seconds(pairingGraceSeconds) : .milliseconds(retryMilliseconds) + .seconds(5)
    }
    /// How long after a device's presence is released the broker is asked whether it came back: the grace and a
    /// little more, so the review finds a lapsed presence lapsed.
    var presenceReviewDelay: Duration { pairingGrace + .milliseconds(250) }
    var corsAllowedOrigins: Set<String> { Set(Self.list(corsOrigins)) }

    /// `redis.clusterNodes` with every credential masked, whether or not it parses: each `redis://` entry up to its
    /// last `@` before the next entry (a password may hold commas).
    static func redactedSeeds(_ text: String) -> String {
        let parts = text.components(separatedBy: "redis://")
        // Before the first `redis://`, entries without a scheme: all of it up to its last `@` (a comma in a password
        // cannot be told from a comma between entries, so more is masked rather than less).
        let first = RedisURL.redacted(parts[0])
        return ([first] + parts.dropFirst().map { RedisURL.redacted("redis://" + $0) }).joined()
    }

    /// The seed nodes of `redis.clusterNodes`, or nil unless there is at least one and each is `host:port` or a
    /// `redis://` URL with a port and database 0 (a cluster has no other).
    static func clusterSeeds(_ text: String) -> [RedisURL]? {
        let entries = list(text)
        let seeds = entries.compactMap { entry -> RedisURL? in
            guard let url = RedisURL(entry.hasPrefix("redis://") ? entry : "redis://" + entry), url.database == 0 else { return nil }
            return url
        }
        return !seeds.isEmpty && seeds.count == entries.count ? seeds : nil
    }

    static func list(_ text: String) -> [String] {
        text.split(separator: ",").map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
    }
    var heartbeat: Duration { .seconds(heartbeatSeconds) }

    /// The lengths of `ops.token` accepted: short tokens can be guessed.
    static let opsTokenBytes = 16...256

    /// Whether `token` can be an `ops.token`: ``opsTokenBytes`` bytes of RFC 6750 `b64token`, i.e. ASCII letters,
    /// digits and `-._~+/`, then any number of `=` at the end. Nothing else could be sent in `Authorization: Bearer`.
    static func isAcceptableOpsToken(_ token: String) -> Bool {
        let bytes = Array(token.utf8)
        guard opsTokenBytes.contains(bytes.count) else { return false }
        let body = bytes.prefix { $0 != UInt8(ascii: "=") }
        guard !body.isEmpty, bytes[body.count...].allSatisfy({ $0 == UInt8(ascii: "=") }) else { return false }
        return body.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                true
            case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "+"), UInt8(ascii: "/"):
                true
            default:
                false
            }
        }
    }

    /// A secret as `check-config` shows it: whether it is set, never what it is.
    static func maskedSecret(_ value: String) -> String { value.isEmpty ? "" : "********" }
}

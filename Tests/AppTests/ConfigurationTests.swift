import Broker
import Foundation
import PropertyBased
import Testing

@testable import App

@Suite struct ConfigurationTests {
    @Test func committedConfigFileHoldsExactlyTheDefaults() throws {
        let loaded = try TandemConfiguration.load(path: "config.json", environment: [:])
        #expect(loaded == TandemConfiguration())
        #expect(loaded.origins.allSatisfy { $0.origin == .file }, "every knob is in config.json")
    }

    /// Settings are declared once, in `TandemConfiguration.settings`: a stored property without its row would be
    /// read from nowhere and ignored by equality and `check-config`.
    @Test func everyStoredPropertyHasItsRowInTheSettingsTable() {
        // Derived values kept with their setting (didSet) are not settings of their own.
        let derived: Set = ["origins", "publicBaseIsHTTPS", "trustedProxyList"]
        let properties = Mirror(reflecting: TandemConfiguration()).children.compactMap(\.label).filter { !derived.contains($0) }
        let keys = TandemConfiguration.settings.map(\.key)
        #expect(keys.count == properties.count)
        #expect(Set(keys).count == keys.count, "each key once")
        #expect(Set(TandemConfiguration().effectiveValues.keys) == Set(keys))
    }

    /// Each row takes part in equality: a configuration read with one setting changed differs from the defaults.
    @Test func everySettingTakesPartInEquality() throws {
        let changed: [String: String] = [
            "host": "127.0.0.1", "port": "1", "eventLoops": "1", "broker": "redis", "redis.url": "redis://x:1/0", "publicBaseURL": "http://a.b",
            "session.ttlSeconds": "1", "pairing.graceSeconds": "60", "pairing.qrRotateSeconds": "5", "heartbeatSeconds": "1",
            "sse.retryMilliseconds": "1", "sse.bufferedEvents": "1", "limits.maxHeaderBytes": "1024", "limits.maxBodyBytes": "256",
            "limits.idleTimeoutSeconds": "1", "limits.requestTimeoutSeconds": "1", "limits.maxConnections": "1",
            "limits.maxConnectionsPerAddress": "1", "limits.sessionsPerMinute": "1", "limits.requestsPerMinute": "1",
            "trustedProxies": "10.0.0.1", "cors.allowedOrigins": "https://a.b", "drainTimeoutSeconds": "1", "defaultLanguage": "en",
            "publicDirectory": "elsewhere", "logLevel": "debug", "logFormat": "json", "redis.clusterNodes": "a:1", "redis.waitReplicas": "1",
            "form.fields": #"[{"name": "email", "type": "email", "label": {"ja": "メール", "en": "E-mail"}}]"#,
            "ops.token": "0123456789abcdef", "ops.nodeName": "node-a",
        ]
        // Settings that are only valid alongside another one.
        let companions: [String: [String: String]] = ["redis.waitReplicas": ["broker": "redis-cluster", "redis.clusterNodes": "a:1"]]
        #expect(Set(changed.keys) == Set(TandemConfiguration.settings.map(\.key)), "a value for every setting")
        for (key, value) in changed {
            let loaded = try TandemConfiguration.load(path: "config.json", environment: [:], overrides: [key: value].merging(companions[key] ?? [:]) { $1 })
            #expect(loaded != TandemConfiguration(), "\(key)")
            #expect(loaded.origins.first { $0.key == key }?.origin == .commandLine)
        }
    }

    @Test(arguments: [
        ("host", "HOST"), ("port", "PORT"), ("eventLoops", "EVENT_LOOPS"), ("broker", "BROKER"), ("redis.url", "REDIS_URL"),
        ("publicBaseURL", "PUBLIC_BASE_URL"), ("session.ttlSeconds", "SESSION_TTL_SECONDS"),
        ("heartbeatSeconds", "HEARTBEAT_SECONDS"), ("limits.maxBodyBytes", "LIMITS_MAX_BODY_BYTES"),
        ("trustedProxies", "TRUSTED_PROXIES"), ("cors.allowedOrigins", "CORS_ALLOWED_ORIGINS"),
    ])
    func environmentNamesAreTheContracts(key: String, name: String) {
        #expect(ConfigurationReader.environmentName(for: key) == name)
    }

    /// A grace shorter than the reconnect delay would cancel sessions whose streams merely blip: refused at start.
    @Test func aPairingGraceShorterThanTheReconnectIsRefused() throws {
        #expect(throws: ConfigurationError.self) {
            try TandemConfiguration.load(path: "config.json", environment: ["PAIRING_GRACE_SECONDS": "2"])
        }
        let accepted = try TandemConfiguration.load(path: "config.json", environment: ["PAIRING_GRACE_SECONDS": "3"])
        #expect(accepted.pairingGrace == .seconds(3))
        let automatic = try TandemConfiguration.load(path: "config.json", environment: ["SSE_RETRY_MILLISECONDS": "4000"])
        #expect(automatic.pairingGrace == .seconds(9))
    }

    @Test func environmentOverridesTheFileAndRecordsWhereValuesCameFrom() throws {
        let loaded = try TandemConfiguration.load(
            path: "config.json",
            environment: ["PORT": "9000", "SESSION_TTL_SECONDS": "30", "PUBLIC_BASE_URL": "http://192.168.1.5:9000/", "HEARTBEAT_SECONDS": "5"])
        #expect(loaded.port == 9000)
        #expect(loaded.sessionTTLSeconds == 30)
        #expect(loaded.heartbeatSeconds == 5)
        #expect(loaded.publicBaseURL == "http://192.168.1.5:9000")
        #expect(loaded.origins.first { $0.key == "port" }?.origin == .environment)
        #expect(loaded.origins.first { $0.key == "host" }?.origin == .file)
    }

    @Test func noFileAtAllGivesTheDefaults() throws {
        let loaded = try TandemConfiguration.load(environment: ["TANDEM_CONFIG_UNUSED": "1"])
        #expect(loaded == TandemConfiguration())
        var reader = try ConfigurationReader(fileContents: nil, fileName: "none", environment: [:])
        let defaults = try TandemConfiguration(reader: &reader)
        #expect(defaults.port == 8080 && defaults.broker == .memory && defaults.sessionTTLSeconds == 600)
        #expect(defaults.origins.allSatisfy { $0.origin == .defaultValue })
    }

    @Test(arguments: [
        (["PORT": "eighty"], "environment variable PORT must be an integer from 0 to 65535, got 'eighty'"),
        (["PORT": "70000"], "environment variable PORT must be an integer from 0 to 65535, got '70000'"),
        (["BROKER": "postgres"], "environment variable BROKER must be one of memory, redis, redis-cluster, got 'postgres'"),
        (["SESSION_TTL_SECONDS": "0"], "environment variable SESSION_TTL_SECONDS must be an integer from 1 to 86400, got '0'"),
        (["PUBLIC_BASE_URL": "192.168.1.5"], "environment variable PUBLIC_BASE_URL must be empty or an origin like http://192.168.1.20:8080, got '192.168.1.5'"),
        (["BROKER": "redis", "REDIS_URL": "localhost:6379"], "environment variable REDIS_URL must be a URL like redis://host:6379/0, got 'localhost:6379'"),
        (["BROKER": "redis-cluster"], "config.json key \"redis.clusterNodes\" must be comma-separated cluster nodes like 10.0.0.1:7000,10.0.0.2:7000, got ''"),
        (["BROKER": "redis-cluster", "REDIS_CLUSTER_NODES": "a:7000,b:70000"], "environment variable REDIS_CLUSTER_NODES must be comma-separated cluster nodes like 10.0.0.1:7000,10.0.0.2:7000, got 'a:7000,b:70000'"),
        (["BROKER": "redis-cluster", "REDIS_CLUSTER_NODES": "redis://a:7000/1"], "environment variable REDIS_CLUSTER_NODES must be comma-separated cluster nodes like 10.0.0.1:7000,10.0.0.2:7000, got 'redis://a:7000/1'"),
        (["BROKER": "redis", "REDIS_WAIT_REPLICAS": "1"], "environment variable REDIS_WAIT_REPLICAS must be 0 unless broker is redis-cluster, got '1'"),
        (["BROKER": "redis-cluster", "REDIS_CLUSTER_NODES": "a:7000", "REDIS_WAIT_REPLICAS": "17"], "environment variable REDIS_WAIT_REPLICAS must be an integer from 0 to 16, got '17'"),
        (["TRUSTED_PROXIES": "10.0.0.0/33"], "environment variable TRUSTED_PROXIES must be comma-separated addresses or CIDR ranges like 10.0.0.0/8, got '10.0.0.0/33'"),
    ])
    func wrongValuesGiveAClearMessage(environment: [String: String], message: String) {
        #expect(throws: ConfigurationError(description: message)) {
            try TandemConfiguration.load(path: "config.json", environment: environment)
        }
    }

    /// `ops.token` is what `Authorization: Bearer` can carry (RFC 6750 b64token), 16 to 256 bytes; anything else
    /// could never be presented, or is too short to resist guessing.
    @Test(arguments: [
        ("0123456789abcdef", true), ("AZaz09-._~+/xxxxxx==", true), (String(repeating: "a", count: 256), true),
        ("abcdefghijklmno=", true), ("", true),
        ("0123456789abcde", false), (String(repeating: "a", count: 257), false),
        ("0123456789 abcdef", false), (" 0123456789abcdef", false), ("0123456789abcdef\t", false),
        ("運用トークン運用トークン", false), ("0123456789abcdéf", false), ("0123456789abcdef=x", false),
        ("================", false), ("0123456789abcdef,", false), ("0123456789abc\"def", false),
    ])
    func theOpsTokenIsABearerTokenOf16To256Bytes(token: String, accepted: Bool) throws {
        if accepted {
            #expect(try TandemConfiguration.load(environment: ["OPS_TOKEN": token]).opsToken == token)
        } else {
            #expect(throws: ConfigurationError.self) { try TandemConfiguration.load(environment: ["OPS_TOKEN": token]) }
            do {
                _ = try TandemConfiguration.load(environment: ["OPS_TOKEN": token])
            } catch {
                #expect(token.count < 4 || !"\(error)".contains(token), "the error shows the token: \(error)")
            }
        }
    }

    /// `ops.nodeName` is shown on the page: no controls, and no format characters such as U+202E (which would
    /// reverse the text after it) or zero-width ones.
    @Test(arguments: [
        ("node-a", true), ("東京-1", true), ("", true), (String(repeating: "n", count: 128), true),
        (String(repeating: "n", count: 129), false), ("node\u{202E}a", false), ("node\u{200B}a", false),
        ("\u{FEFF}node", false), ("node\u{2066}a", false), ("node\na", false), ("node\u{7F}", false),
    ])
    func theNodeNameHasNoControlOrFormatCharacters(name: String, accepted: Bool) throws {
        if accepted {
            #expect(try TandemConfiguration.load(environment: ["OPS_NODE_NAME": name]).opsNodeName == name)
        } else {
            #expect(throws: ConfigurationError.self) { try TandemConfiguration.load(environment: ["OPS_NODE_NAME": name]) }
        }
    }

    /// Editors on Windows start a UTF-8 file with a byte order mark: it is skipped, not refused.
    @Test func aByteOrderMarkIsSkipped() throws {
        var reader = try ConfigurationReader(fileContents: [0xEF, 0xBB, 0xBF] + Array(#"{"port": 9000}"#.utf8), fileName: "bom.json", environment: [:])
        #expect(try TandemConfiguration(reader: &reader).port == 9000)
    }

    /// One setting written both nested and dotted is refused, not settled by which one a dictionary yields last.
    @Test func aSettingGivenNestedAndDottedIsRefused() {
        #expect(throws: ConfigurationError(description: "twice.json gives limits.maxBodyBytes more than once")) {
            try ConfigurationReader(
                fileContents: Array(#"{"limits": {"maxBodyBytes": 1000}, "limits.maxBodyBytes": 2000}"#.utf8), fileName: "twice.json", environment: [:])
        }
    }

    /// A password in `redis.url` never reaches a message or `check-config`, whether the URL parses or not.
    @Test(arguments: ["redis://user:s3cret@", "redis://s3cret@host:99999/0", "redis://u:s3cret@host/x", "s3cret@host", "http://u:s3cret@host"])
    func aRedisPasswordIsNeverPrinted(url: String) throws {
        var reader = try ConfigurationReader(fileContents: nil, fileName: "none.json", environment: ["BROKER": "redis", "REDIS_URL": url])
        do {
            _ = try TandemConfiguration(reader: &reader)
            Issue.record("\(url) was accepted")
        } catch {
            #expect(error.description.contains("***") && !error.description.contains("s3cret"))
        }
        var configuration = TandemConfiguration()
        configuration.redisURL = url
        let shown = try #require(TandemConfiguration.settings.first { $0.key == "redis.url" }).shown(configuration)
        #expect(!shown.contains("s3cret"))
    }

    @Test func clusterSeedsAreHostPortsOrRedisURLsWithTheirCredentials() throws {
        let seeds = try #require(TandemConfiguration.clusterSeeds(" 10.0.0.1:7000 , redis://u:pw@[::1]:7001 ,h"))
        #expect(seeds.map(\.host) == ["10.0.0.1", "::1", "h"])
        #expect(seeds.map(\.port) == [7000, 7001, 6379])
        #expect(seeds[1].user == "u" && seeds[1].password == "pw")
        for wrong in ["", ",", "a:0", "a:65536", "redis://a:7000/2", "http://a:7000", "a:7000,:7001"] {
            #expect(TandemConfiguration.clusterSeeds(wrong) == nil, "\(wrong)")
        }
        var reader = try ConfigurationReader(
            fileContents: nil, fileName: "none.json",
            environment: ["BROKER": "redis-cluster", "REDIS_CLUSTER_NODES": "a:7000,redis://:s3cret@b:7001", "REDIS_WAIT_REPLICAS": "1"])
        let configuration = try TandemConfiguration(reader: &reader)
        #expect(configuration.broker == .redisCluster && configuration.redisWaitReplicas == 1)
        #expect(configuration.effectiveValues["redis.clusterNodes"] == "a:7000,redis://***@b:7001")
        // A password may hold a comma: no part of it is shown, in check-config or in the error.
        for list in ["redis://:pa,ss@127.0.0.1:7000", "a:1,redis://u:x,y@b:2,redis://:z@c:3", "u:pa,ss@h:1"] {
            #expect(!TandemConfiguration.redactedSeeds(list).contains("pa") && !TandemConfiguration.redactedSeeds(list).contains("x,y"), "\(list)")
        }
        var broken = try ConfigurationReader(
            fileContents: nil, fileName: "none.json", environment: ["BROKER": "redis-cluster", "REDIS_CLUSTER_NODES": "redis://:pa,ss@127.0.0.1:70000"])
        #expect(throws: ConfigurationError(
            description: "environment variable REDIS_CLUSTER_NODES must be comma-separated cluster nodes like 10.0.0.1:7000,10.0.0.2:7000, got 'redis://***@127.0.0.1:70000'")) {
            try TandemConfiguration(reader: &broken)
        }
    }

    /// Any text as the seed list: read without trapping; what is accepted has a host and a port in range each.
    @Test func anySeedListIsReadWithoutTrapping() async {
        let parts = Gen<String?>.element(of: ["redis://", "@", ":", ",", " ", "/", "0", "7000", "65536", "-1", "[::1]", "h", "u:p@"])
            .map { $0 ?? "" }
        await propertyCheck(count: 500, input: parts.array(of: 0...10).map { $0.joined() }) { text in
            if let seeds = TandemConfiguration.clusterSeeds(text) {
                #expect(!seeds.isEmpty)
                #expect(seeds.allSatisfy { !$0.host.isEmpty && (1...65535).contains($0.port) && $0.database == 0 })
            }
        }
    }

    @Test func fileProblemsAreNamed() throws {
        func load(_ text: String) throws -> TandemConfiguration {
            var reader = try ConfigurationReader(fileContents: Array(text.utf8), fileName: "test.json", environment: [:])
            return try TandemConfiguration(reader: &reader)
        }
        #expect(throws: ConfigurationError(description: "test.json has unknown key(s): sesion.ttlSeconds")) {
            try load(#"{"sesion":{"ttlSeconds":5}}"#)
        }
        #expect(throws: ConfigurationError(description: "test.json key \"port\" must be an integer from 0 to 65535, got \"8080\"")) {
            try load(#"{"port":"8080"}"#)
        }
        #expect(throws: ConfigurationError(description: "test.json is not valid JSON (UTF-8, each key once): stops at line 1, column 2")) {
            try load("{not json")
        }
        #expect(throws: ConfigurationError(description: "test.json is not valid JSON (UTF-8, each key once): stops at line 3, column 15")) {
            try load("{\n  \"port\": 9090,\n  \"host\": \"é\",,\n}")
        }
        #expect(try load(#"{"port":9090,"session":{"ttlSeconds":60}}"#).sessionTTLSeconds == 60)
        #expect(throws: ConfigurationError(description: "configuration file 'missing.json' cannot be read")) {
            try TandemConfiguration.load(path: "missing.json", environment: [:])
        }
    }

    @Test(arguments: [
        (nil, Language.japanese), ("en-US,en;q=0.9", .english), ("ja,en;q=0.5", .japanese), ("fr-FR,en;q=0.8,ja;q=0.9", .japanese),
        ("de", .japanese), ("en;q=0, ja;q=0.1", .japanese), ("EN", .english), ("*", .japanese),
    ] as [(String?, Language)])
    func acceptLanguagePicksTheBestSupportedLanguage(header: String?, expected: Language) {
        #expect(Language.preferred(byAcceptLanguage: header, fallback: .japanese) == expected)
    }
}

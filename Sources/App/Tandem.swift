#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import HTTP
import Logging
import NIOCore
import ServiceLifecycle

/// `tandem`: serves Tandem (the default), or checks a configuration.
@main
struct Tandem: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem",
        abstract: "Real-time handoff between a PC and a phone: QR pairing and Server-Sent Events.",
        discussion: """
            Every setting comes from, in this order: a command-line option, its environment variable, config.json \
            (or --config PATH, or $TANDEM_CONFIG), its default. With no settings at all, `tandem` serves the \
            in-memory broker on port 8080. `tandem check-config` shows every setting and where it came from; \
            README.md describes each one.
            """,
        version: Tandem.version,
        subcommands: [Serve.self, CheckConfig.self],
        defaultSubcommand: Serve.self
    )

    /// The version `--version` prints and the operators' page shows.
    static let version = "0.1.0"
}

/// The options both subcommands share: where the configuration is, and the settings most often changed by hand.
struct ConfigurationOptions: ParsableArguments {
    @Option(help: "A JSON configuration file (default: config.json in the working folder, if present).")
    var config: String?

    @Option(help: "Address to listen on [HOST].")
    var host: String?

    @Option(help: "Port to listen on; 0 picks a free one [PORT].")
    var port: String?

    @Option(help: "memory (one node), redis (many nodes, one Redis) or redis-cluster (many nodes, a Redis Cluster) [BROKER].")
    var broker: String?

    @Option(name: .customLong("redis-url"), help: "redis://[[user]:password@]host[:port][/db] [REDIS_URL].")
    var redisURL: String?

    @Option(name: .customLong("redis-cluster-nodes"), help: "Seed nodes of the Redis Cluster: host:port,... [REDIS_CLUSTER_NODES].")
    var redisClusterNodes: String?

    @Option(name: .customLong("public-base-url"), help: "The origin phones use, e.g. http://192.168.1.20:8080 [PUBLIC_BASE_URL].")
    var publicBaseURL: String?

    @Option(name: .customLong("session-ttl-seconds"), help: "Session lifetime in seconds [SESSION_TTL_SECONDS].")
    var sessionTTLSeconds: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical [LOG_LEVEL].")
    var logLevel: String?

    @Option(name: .customLong("log-format"), help: "text or json [LOG_FORMAT].")
    var logFormat: String?

    @Option(
        name: .customLong("ops-token"),
        help: "Token of the operators' page /ops, 16+ bytes; prefer the variable, which ps does not show [OPS_TOKEN].")
    var opsToken: String?

    /// Loads the configuration; a problem is printed as one clear line and ends the process with status 2.
    func load() throws -> TandemConfiguration {
        let pairs: [(String, String?)] = [
            ("host", host), ("port", port), ("broker", broker), ("redis.url", redisURL), ("redis.clusterNodes", redisClusterNodes),
            ("publicBaseURL", publicBaseURL),
            ("session.ttlSeconds", sessionTTLSeconds), ("logLevel", logLevel), ("logFormat", logFormat),
            ("ops.token", opsToken),
        ]
        var overrides: [String: String] = [:]
        for (key, value) in pairs { if let value { overrides[key] = value } }
        do {
            return try TandemConfiguration.load(path: config, environment: ProcessInfo.processInfo.environment, overrides: overrides)
        } catch {
            Tandem.printError("configuration error: \(error)")
            throw ExitCode(2)
        }
    }
}

extension Tandem {
    /// `tandem serve`: runs the node until SIGINT or SIGTERM, then drains.
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Serve the pages and the API (the default).")

        @OptionGroup var options: ConfigurationOptions

        func run() async throws {
            let configuration = try options.load()
            LoggingSystem.bootstrap { label in
                switch configuration.logFormat {
                case .text:
                    var handler = StreamLogHandler.standardError(label: label)
                    handler.logLevel = configuration.logLevel
                    return handler
                case .json:
                    var handler = JSONLogHandler(label: label)
                    handler.logLevel = configuration.logLevel
                    return handler
                }
            }
            let logger = Logger(label: "tandem")
            do {
                try await TandemApplication.withApplication(configuration: configuration, logger: logger, onServerRunning: { address in
                    let port = address.port ?? configuration.port
                    logger.notice(
                        "Tandem listening on \(configuration.host):\(port) (broker: \(configuration.broker.rawValue), session TTL \(configuration.sessionTTLSeconds) s)"
                    )
                    let pcPage = PublicOrigin.resolve(configuration, port: port) + "/"
                    logger.notice("PC page: \(pcPage)")
                    // A person at a terminal gets the QR code; JSON logs feed machines, and stay pure JSON.
                    if configuration.logFormat == .text || isatty(1) == 1 { Tandem.printPCPage(at: pcPage) }
                }) { application in
                    try await application.makeServiceGroup().run()
                }
                logger.notice("Tandem stopped")
            } catch let error as ConfigurationError {
                Tandem.printError("configuration error: \(error)")
                throw ExitCode(2)
            } catch {
                logger.critical("Tandem failed: \(error)")
                throw ExitCode(1)
            }
        }
    }

    /// `tandem check-config`: validates the configuration and prints every setting, its value and its source.
    struct CheckConfig: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check-config",
            abstract: "Validate the configuration and print every setting with where it came from."
        )

        @OptionGroup var options: ConfigurationOptions

        func run() async throws {
            let configuration = try options.load()
            let values = configuration.effectiveValues
            let rows = configuration.origins.map { origin in
                [origin.key, values[origin.key].map { $0.isEmpty ? "\"\"" : $0 } ?? "?", origin.origin.rawValue, origin.environmentName]
            }
            let header = ["setting", "value", "from", "environment variable"]
            let widths = (0..<header.count).map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
            for row in [header] + rows {
                let line = row.enumerated().map { $1 + String(repeating: " ", count: widths[$0] - $1.count) }.joined(separator: "  ")
                print(line.trimmingSpaces())
            }
            print("configuration OK")
        }
    }

    /// Prints the PC page's URL and a QR code of it on standard output, so a person can open it from another
    /// machine or a phone; colours only when standard output is a terminal, so logs stay plain text.
    static func printPCPage(at url: String) {
        print("Tandem PC page: \(url)")
        if let code = try? QRCode(encoding: url) {
            print(code.terminalText(ansiColors: isatty(1) == 1))
        }
        // A pipe buffers standard output until exit; the URL is wanted now.
        fflush(nil)  // every stream, standard output included (naming `stdout` is not concurrency-safe)
    }

    static func printError(_ message: String) {
        var standardError = FileOutputStream.standardError
        print("tandem: \(message)", to: &standardError)
    }
}

/// Lets `print` write to standard error.
struct FileOutputStream: TextOutputStream {
    let descriptor: Int32
    static let standardError = FileOutputStream(descriptor: 2)

    mutating func write(_ string: String) {
        var text = string
        text.withUTF8 { bytes in _ = Glibc.write(descriptor, bytes.baseAddress, bytes.count) }
    }
}

import ArgumentParser
import Foundation
import Testing

@testable import App

/// The `tandem` command line, parsed in process and run as the real binary.
@Suite(.timeLimit(.minutes(1)))
struct CommandLineTests {
    @Test func commandLineOptionsOverrideTheEnvironmentAndTheFile() throws {
        let options = try ConfigurationOptions.parse(["--config", "config.json", "--port", "9191", "--broker", "memory", "--log-format", "json"])
        let loaded = try TandemConfiguration.load(
            path: options.config, environment: ["PORT": "7000", "HEARTBEAT_SECONDS": "5"],
            overrides: ["port": try #require(options.port), "logFormat": try #require(options.logFormat)])
        #expect(loaded.port == 9191)
        #expect(loaded.heartbeatSeconds == 5)
        #expect(loaded.logFormat == .json)
        #expect(loaded.origins.first { $0.key == "port" }?.origin == .commandLine)
        #expect(loaded.origins.first { $0.key == "heartbeatSeconds" }?.origin == .environment)
    }

    @Test func serveIsTheDefaultSubcommand() throws {
        let command = try Tandem.parseAsRoot(["--port", "0"])
        #expect(command is Tandem.Serve)
        #expect(try Tandem.parseAsRoot(["check-config"]) is Tandem.CheckConfig)
    }

    /// Runs the built binary with `arguments` and `environment` added; returns its status and output.
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String, errors: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: FileManager.default.currentDirectoryPath + "/.build/debug/tandem")
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: outputData, as: UTF8.self), String(decoding: errorData, as: UTF8.self))
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: ".build/debug/tandem")))
    func checkConfigPrintsEverySettingWithItsSource() throws {
        let (status, output, _) = try Self.run(["check-config", "--port", "9000"], environment: ["HEARTBEAT_SECONDS": "7"])
        #expect(status == 0)
        let lines = output.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("port") && $0.contains("9000") && $0.contains("command line") && $0.hasSuffix("PORT") })
        #expect(lines.contains { $0.hasPrefix("heartbeatSeconds") && $0.contains("7") && $0.contains("environment") })
        #expect(lines.contains { $0.hasPrefix("session.ttlSeconds") && $0.contains("600") && $0.contains("config.json") })
        #expect(lines.count >= TandemConfiguration().effectiveValues.count + 2)
        #expect(lines.last == "configuration OK")
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: ".build/debug/tandem")))
    func aBadSettingStopsTheBinaryWithAClearMessage() throws {
        let (status, _, errors) = try Self.run(["check-config"], environment: ["SESSION_TTL_SECONDS": "never"])
        #expect(status == 2)
        #expect(errors.contains("environment variable SESSION_TTL_SECONDS must be an integer from 1 to 86400, got 'never'"))
        let serve = try Self.run(["--broker", "postgres"])
        #expect(serve.status == 2)
        #expect(serve.errors.contains("command-line option for \"broker\" must be one of memory, redis, redis-cluster, got 'postgres'"))
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: ".build/debug/tandem")))
    func helpDocumentsEveryOption() throws {
        let (status, output, _) = try Self.run(["serve", "--help"])
        #expect(status == 0)
        for option in ["--config", "--host", "--port", "--broker", "--redis-url", "--redis-cluster-nodes", "--public-base-url", "--session-ttl-seconds", "--log-level", "--log-format"] {
            #expect(output.contains(option))
        }
    }
}

import HTTP
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import TestSupport
import Testing

/// Log lines kept for a test to read.
final class CapturedLogs: Sendable {
    private let lines = Mutex<[(level: Logger.Level, message: String)]>([])

    var logger: Logger {
        Logger(label: "captured") { _ in CapturingLogHandler(store: self) }
    }

    func append(_ level: Logger.Level, _ message: String) {
        lines.withLock { $0.append((level, message)) }
    }

    func messages(at level: Logger.Level) -> [String] {
        lines.withLock { $0.filter { $0.level == level }.map(\.message) }
    }
}

struct CapturingLogHandler: LogHandler {
    let store: CapturedLogs
    var logLevel: Logger.Level = .debug
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        store.append(event.level, "\(event.message)")
    }
}

/// Behind a proxy that is not listed as trusted, every client shares the proxy's address: the server says so, once.
@Suite(.timeLimit(.minutes(1)))
struct ForwardingWarningTests {
    static func run(trusted: TrustedProxies, logs: CapturedLogs, _ body: @Sendable (TestClient) async throws -> Void) async throws {
        var configuration = HTTPServer.Configuration(host: "127.0.0.1", port: 0, trustedProxies: trusted)
        configuration.trustedProxiesSetting = "trustedProxies (TRUSTED_PROXIES)"
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let server = HTTPServer(configuration: configuration, responder: HTTPServerTests.router(), logger: logs.logger) { address in
            portContinuation.yield(address.port ?? 0)
            portContinuation.finish()
        }
        var groupConfiguration = ServiceGroupConfiguration(services: [server], logger: HTTPServerTests.logger)
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(2)
        let group = ServiceGroup(configuration: groupConfiguration)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            let result: Result<Void, any Error>
            do {
                result = .success(try await body(TestClient(port: port)))
            } catch {
                result = .failure(error)
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            try result.get()
        }
    }

    @Test func aForwardingHeaderFromAnUntrustedPeerIsWarnedAboutOnce() async throws {
        let logs = CapturedLogs()
        try await Self.run(trusted: .none, logs: logs) { client in
            for index in 0..<5 {
                let response = try await client.request("GET", "/hello", headers: [("X-Forwarded-For", "203.0.113.\(index)")])
                #expect(response.status == 200)
            }
            #expect(try await client.request("GET", "/hello", headers: [("Forwarded", "for=198.51.100.7")]).status == 200)
            #expect(try await client.request("GET", "/hello").status == 200)
        }
        let warnings = logs.messages(at: .warning)
        #expect(warnings.count == 1, "\(warnings)")
        let warning = try #require(warnings.first)
        #expect(warning.contains("trustedProxies (TRUSTED_PROXIES)"))
        #expect(warning.contains("127.0.0.1"))
    }

    @Test func aForwardedHeaderAloneIsWarnedAboutToo() async throws {
        let logs = CapturedLogs()
        try await Self.run(trusted: .none, logs: logs) { client in
            let response = try await client.request("GET", "/hello", headers: [("Forwarded", "for=198.51.100.7")])
            #expect(response.status == 200)
        }
        #expect(logs.messages(at: .warning).count == 1)
    }

    @Test func noWarningWhenThePeerIsTrustedOrNoHeaderArrives() async throws {
        let logs = CapturedLogs()
        let trusted = try #require(TrustedProxies(["127.0.0.1"]))
        try await Self.run(trusted: trusted, logs: logs) { client in
            for index in 0..<3 {
                let response = try await client.request("GET", "/hello", headers: [("X-Forwarded-For", "203.0.113.\(index)")])
                #expect(response.status == 200)
            }
        }
        #expect(logs.messages(at: .warning).isEmpty)
        let quiet = CapturedLogs()
        try await Self.run(trusted: .none, logs: quiet) { client in
            let response = try await client.request("GET", "/hello")
            #expect(response.status == 200)
        }
        #expect(quiet.messages(at: .warning).isEmpty)
    }
}

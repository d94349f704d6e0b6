import Logging
import Synchronization
import TestSupport
import Testing

@testable import App

/// Through a proxy that is not in `trustedProxies`, every client shares one rate-limit bucket: the node warns once,
/// naming the setting and its environment variable, and counts such requests.
@Suite(.timeLimit(.minutes(1)))
struct ProxyWarningTests {
    final class Warnings: Sendable {
        private let messages = Mutex<[String]>([])

        var logger: Logger {
            var logger = Logger(label: "proxy-warning-test") { _ in Handler(store: self) }
            logger.logLevel = .warning
            return logger
        }

        func append(_ message: String) { messages.withLock { $0.append(message) } }
        var all: [String] { messages.withLock { $0 } }

        struct Handler: LogHandler {
            let store: Warnings
            var logLevel: Logger.Level = .warning
            var metadata: Logger.Metadata = [:]

            subscript(metadataKey key: String) -> Logger.Metadata.Value? {
                get { metadata[key] }
                set { metadata[key] = newValue }
            }

            func log(event: LogEvent) {
                if event.level == .warning { store.append("\(event.message)") }
            }
        }
    }

    @Test func forwardedRequestsFromAnUntrustedPeerAreWarnedAboutOnceAndCounted() async throws {
        let warnings = Warnings()
        try await withTandem(logger: warnings.logger) { _, client in
            for index in 0..<4 {
                let response = try await client.request("POST", "/api/sessions", headers: [("X-Forwarded-For", "203.0.113.\(index)")])
                #expect(response.status == 201)
            }
            let scrape = try await client.request("GET", "/metrics")
            #expect(ObservabilityTests.sample(scrape.bodyText, "http_forwarding_headers_ignored_total") == 4)
        }
        let proxyWarnings = warnings.all.filter { $0.contains("X-Forwarded-For") }
        #expect(proxyWarnings.count == 1, "\(warnings.all)")
        #expect(proxyWarnings.first?.contains("trustedProxies (environment variable TRUSTED_PROXIES)") == true)
        #expect(proxyWarnings.first?.contains("127.0.0.1") == true)
    }

    @Test func aTrustedProxyIsNotWarnedAbout() async throws {
        let warnings = Warnings()
        try await withTandem({ $0.trustedProxies = "127.0.0.1" }, logger: warnings.logger) { _, client in
            for index in 0..<3 {
                let response = try await client.request("POST", "/api/sessions", headers: [("X-Forwarded-For", "203.0.113.\(index)")])
                #expect(response.status == 201)
            }
        }
        #expect(!warnings.all.contains { $0.contains("X-Forwarded-For") }, "\(warnings.all)")
    }
}

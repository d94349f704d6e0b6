import Broker
import HTTP
import Logging
import NIOHTTP1
import NIOPosix
import PropertyBased
import Testing

@testable import App

/// A session's key cookies live as long as the session, whichever node answers: nodes of one deployment may be
/// configured with different TTLs (while the setting rolls out), and a cookie cut to the answering node's TTL would
/// lock the phone out of its own session (its next step refused as another device's).
@Suite(.timeLimit(.minutes(1)))
struct KeyCookieLifetimeTests {
    static func maxAge(_ cookie: String) -> Int64? {
        cookie.split(separator: ";").lazy.map { $0.trimmingPrefix(" ") }.first { $0.hasPrefix("Max-Age=") }
            .flatMap { Int64($0.dropFirst("Max-Age=".count)) }
    }

    static func api(ttlSeconds: Int, broker: InMemoryBroker, registries: SessionRegistries) -> API {
        var configuration = TandemConfiguration()
        configuration.sessionTTLSeconds = ttlSeconds
        return API(
            broker: broker, registry: registries, configuration: configuration, staticFiles: nil, metrics: TandemMetrics(),
            drainState: DrainState(), time: .system)
    }

    /// A session another node opened for 600 s, claimed through a node configured for 60 s: the phone key cookie
    /// lives 600 s.
    @Test func aPhoneKeyLivesAsLongAsTheSessionNotAsTheAnsweringNodesTTL() async throws {
        let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        let registries = SessionRegistries(
            eventLoopGroup: MultiThreadedEventLoopGroup.singleton, bufferLimit: 8, heartbeatInterval: .seconds(30), logger: logger)
        let broker = InMemoryBroker(sink: registries, logger: logger)
        let text = SeedFlowTests.newSessionID()
        let id = try #require(SessionID(text))
        _ = try await broker.openSession(id, ttl: .seconds(600), readerKey: "key", heldByStream: false)

        let shortNode = Self.api(ttlSeconds: 60, broker: broker, registries: registries)
        let answer = try await shortNode.validateSession(Request(method: .GET, uri: "/api/validate-session?session=\(text)"), logger: logger)
        #expect(answer.status == .ok)
        let cookie = try #require(answer.headers.first(name: "set-cookie"))
        #expect(cookie.hasPrefix("tandem_phone_\(text)="))
        #expect(Self.maxAge(cookie) == 600, "\(cookie)")
    }

    /// Whatever times a store holds: at least a second, at most the longest TTL any node may have, and otherwise the
    /// session's lifetime.
    @Test func aKeyCookiesLifetimeIsTheSessionsWithinTheTTLsANodeMayHave() async {
        let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        let registries = SessionRegistries(
            eventLoopGroup: MultiThreadedEventLoopGroup.singleton, bufferLimit: 8, heartbeatInterval: .seconds(30), logger: logger)
        let api = Self.api(ttlSeconds: 60, broker: InMemoryBroker(sink: registries, logger: logger), registries: registries)
        let longest = Int64(TandemConfiguration.sessionTTLSecondsRange.upperBound)
        let request = Request(method: .GET, uri: "/api/validate-session")
        let times = Gen.oneOf(Gen.int64(), Gen.int64(in: 0...200_000_000), Gen.always(Int64.min), Gen.always(Int64.max))
        await propertyCheck(count: 2000, input: zip(times, times)) { createdAt, expiresAt in
            let cookie = api.sessionCookie(named: "tandem_phone_x", createdAt: createdAt, expiresAt: expiresAt, key: "k", request: request)
            let maxAge = Self.maxAge(cookie)
            let (lifetime, overflow) = expiresAt.subtractingReportingOverflow(createdAt)
            let expected = overflow ? 1 : max(1, min(lifetime / 1000, longest))
            #expect(maxAge == expected, "createdAt \(createdAt), expiresAt \(expiresAt): \(cookie)")
        }
    }
}

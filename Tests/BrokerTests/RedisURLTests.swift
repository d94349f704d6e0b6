import PropertyBased
import Testing

@testable import Broker

/// `redis.url` comes from an operator's file or environment: parsed without trapping, and its password never printed.
@Suite struct RedisURLTests {
    @Test(arguments: [
        ("redis://127.0.0.1:6379/0", "127.0.0.1", 6379, 0, nil as String?, nil as String?),
        ("redis://h", "h", 6379, 0, nil, nil),
        ("redis://:pw@h:1/2", "h", 1, 2, nil, "pw"),
        ("redis://user:pw@h:65535/15", "h", 65535, 15, "user", "pw"),
        // redis-cli's and most clients' reading: a lone credential is the password (AUTH password).
        ("redis://pw@h", "h", 6379, 0, nil, "pw"),
        ("redis://p@ss:w@rd@h/3", "h", 6379, 3, "p@ss", "w@rd"),
        ("redis://[::1]:7000/0", "::1", 7000, 0, nil, nil),
        ("redis://[::1]", "::1", 6379, 0, nil, nil),
    ])
    func validURLsParse(text: String, host: String, port: Int, database: Int, user: String?, password: String?) throws {
        let url = try #require(RedisURL(text))
        #expect(url.host == host && url.port == port && url.database == database)
        #expect(url.user == user && url.password == password)
    }

    @Test(arguments: [
        "", "redis://", "redis://h:0", "redis://h:65536", "redis://h:-1", "redis://h:x", "redis://h/-1", "redis://h/x",
        "http://h", "h:6379", "redis://:pw@", "redis://h:99999999999999999999999", "redis://h/99999999999999999999999",
    ])
    func invalidURLsAreRefused(text: String) {
        #expect(RedisURL(text) == nil)
    }

    /// Any text: parsing does not trap, a parsed URL's description never holds its password, and `redacted`
    /// never holds what stood before the last `@`.
    @Test func anyTextParsesWithoutTrappingAndNeverShowsItsPassword() async {
        let parts = Gen<String>.oneOf(
            Gen.character(in: "\u{20}"..."\u{7E}").string(of: 0...12),
            Gen<String?>.element(of: ["redis://", "@", ":", "/", "[", "]", "::1", "65535", "65536", "-1", "0"]).map { $0 ?? "" }
        )
        await propertyCheck(count: 500, input: parts.array(of: 1...8).map { $0.joined() }) { text in
            let secret = "Zq9secret"
            let candidates = [text, "redis://u:\(secret)@\(text)", "redis://\(secret)@\(text)", "\(text)\(secret)@h"]
            for candidate in candidates {
                if let url = RedisURL(candidate), let password = url.password {
                    #expect(url.description.contains(":***@"))
                    if password == secret { #expect(!url.description.contains(secret) || url.host.contains(secret)) }
                }
                if candidate.contains(secret), candidate.lastIndex(of: "@").map({ candidate[..<$0].contains(secret) }) == true {
                    #expect(!RedisURL.redacted(candidate).contains(secret))
                }
            }
        }
    }
}

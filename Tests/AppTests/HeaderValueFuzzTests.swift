import PropertyBased
import TestSupport
import Testing

@testable import App

/// Header *values*, not only mutated bytes: every header Tandem reads, set to numbers at and past the edges of
/// every integer type, signs, spaces and text, on every endpoint of a live session whose stream is open, so that
/// the values meet the code that delivers events. Whatever comes, the answer is below 500 and the node stays up.
@Suite(.timeLimit(.minutes(2)))
struct HeaderValueFuzzTests {
    static let readHeaders = [
        "Last-Event-ID", "Cookie", "Accept-Language", "X-Forwarded-For", "X-Forwarded-Proto", "Origin", "Content-Type",
        "Sec-Fetch-Site",
    ]

    /// Integers near the edges of Int64/UInt64 and beyond, with and without signs and spaces, and short texts.
    static let values = Gen<String>.oneOf(
        Gen.uint64().map { String($0) },
        Gen.int64().map { String($0) },
        Gen.element(of: [
            "18446744073709551615", "18446744073709551616", "9223372036854775807", "9223372036854775808",
            "-9223372036854775808", "-1", "0", "00000000000000000000001", "+1", " 1", "1 ", "1e3", "0x10", "",
            "99999999999999999999999999999999999999",
        ]).map { $0 ?? "" },
        Gen.character(in: "\u{20}"..."\u{7E}").string(of: 0...24)
    )

    @Test func anyValueOfAnyReadHeaderIsAnsweredBelow500AndTheNodeStaysUp() async throws {
        try await withTandem({
            $0.sessionsPerMinute = 0
            $0.requestsPerMinute = 0
            $0.trustedProxies = "127.0.0.1"
        }) { _, client in
            await propertyCheck(count: 60, input: Gen.element(of: Self.readHeaders).map { $0 ?? "Cookie" }, Self.values) { name, value in
                do {
                    let id = SeedFlowTests.newSessionID()
                    let opener = try await client.openEventStream("/api/events?session=\(id)")
                    let cookie = opener.cookie ?? ""
                    var headers = [(name, value)]
                    if name != "Cookie" { headers.append(("Cookie", cookie)) }
                    let resumed = try await client.openEventStream("/api/events?session=\(id)", headers: headers)
                    #expect(resumed.head.status < 500, "\(name): \(value)")
                    for (method, target, body) in [
                        ("GET", "/api/validate-session?session=\(id)", nil),
                        ("POST", "/api/input-started", #"{"sessionId":"\#(id)"}"#),
                        ("POST", "/api/submit", #"{"sessionId":"\#(id)","name":"A","phone":"01"}"#),
                        ("GET", "/api/qr?session=\(id)", nil),
                        ("POST", "/api/sessions", ""),
                    ] as [(String, String, String?)] {
                        var sent = headers
                        if body != nil, name != "Content-Type" { sent.append(("Content-Type", "application/json")) }
                        let response = try await client.request(method, target, headers: sent, body: body)
                        #expect(response.status < 500, "\(method) \(target) with \(name): \(value) → \(response.status)")
                    }
                    await resumed.close()
                    await opener.close()
                    #expect(try await client.request("GET", "/healthz").status == 200, "the node died on \(name): \(value)")
                } catch {
                    Issue.record("\(name): \(value): \(error)")
                }
            }
        }
    }
}

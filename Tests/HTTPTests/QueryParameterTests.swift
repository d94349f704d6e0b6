import NIOHTTP1
import PropertyBased
import Testing

@testable import HTTP

/// `query` and `queryNames` on any query string built from the pieces that trip parsers (bad percent escapes, cut
/// UTF-8, `=` and `&` in odd places, an encoded name): a parameter `query` finds is one `queryNames` sees; one
/// `queryNames` does not see, `query` never finds; and a well-formed parameter added after the rest is found as sent.
@Suite struct QueryParameterTests {
    static let pieces = [
        "session", "sess%69on", "=", "&", "%zz", "%E3%81", "%E3%81%82", "%", "+", "%20", "a", "b=c", "session=",
        "%73ession", "s_1", "%00", "==", "&&", "ses", "sion",
    ]

    @Test func queryAndQueryNamesAgreeOnAnyQuery() async {
        await propertyCheck(count: 2000, input: Gen.int(in: 0...(Self.pieces.count - 1)).array(of: 0...12)) { indices in
            let query = indices.map { Self.pieces[$0] }.joined()
            let request = Request(method: .GET, uri: "/api/x?" + query)
            let named = request.queryNames("session")
            let value = request.query("session")
            #expect(value == nil || named, "\(query)")
            if !named {
                #expect(value == nil, "\(query)")
                let added = Request(method: .GET, uri: "/api/x?" + query + "&session=s%5F%E3%81%82")
                #expect(added.queryNames("session"), "\(query)")
                // No earlier pair is named `session`, so the added one is the first: found as sent.
                #expect(added.query("session") == "s_あ", "\(query)")
            }
        }
    }

    @Test func aValueThatDoesNotDecodeIsNamedButNotFound() {
        for query in ["session=%zz", "session=%E3%81", "x=1&session=%", "%73ession=%G0"] {
            let request = Request(method: .GET, uri: "/p?" + query)
            #expect(request.queryNames("session") && request.query("session") == nil, "\(query)")
        }
        #expect(!Request(method: .GET, uri: "/p?sessions=1&x=session").queryNames("session"))
        #expect(Request(method: .GET, uri: "/p?session").query("session") == "")
    }
}

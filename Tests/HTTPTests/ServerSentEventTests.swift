import JSON
import PropertyBased
import HTTP
import NIOCore
import Testing

@Suite struct ServerSentEventTests {
    private func wire(_ event: ServerSentEvent) -> String {
        var buffer = ByteBuffer()
        event.write(to: &buffer)
        return String(buffer: buffer)
    }

    @Test func namedEventWithIDAndOneLineOfData() {
        #expect(wire(ServerSentEvent(event: "complete", id: "3", data: #"{"name":"山田"}"#)) == "event: complete\nid: 3\ndata: {\"name\":\"山田\"}\n\n")
    }

    @Test func unnamedEventHasOnlyData() {
        #expect(wire(ServerSentEvent(data: "x")) == "data: x\n\n")
    }

    @Test(arguments: [
        ("a\nb", "data: a\ndata: b\n\n"),
        ("a\r\nb", "data: a\ndata: b\n\n"),
        ("a\rb", "data: a\ndata: b\n\n"),
        ("a\n", "data: a\ndata: \n\n"),
        ("", "data: \n\n"),
        ("\n\n", "data: \ndata: \ndata: \n\n"),
    ])
    func eachLineOfThePayloadGetsItsOwnDataField(data: String, expected: String) {
        #expect(wire(ServerSentEvent(data: data)) == expected)
    }

    /// Any payload (line breaks of every kind or none, any scalars, native or bridged-from-substring storage) is
    /// written as a model says: each line its own `data:` field, then the blank line; so the one-line shortcut and the
    /// line-by-line writer agree.
    @Test func anyPayloadIsWrittenAsTheLineModelSays() async {
        let pieces = Gen.oneOf(Gen.always("\n"), Gen.always("\r"), Gen.always("\r\n"), Gen.always("é"), Gen.always("山"), Gen.always("{\"a\":1}"), Gen.letterOrNumber.map { String($0) })
        await propertyCheck(count: 1000, input: pieces.array(of: 0...30)) { (parts: [String]) in
            let data = parts.joined()
            var lines: [String] = []
            var current = ""
            var index = data.unicodeScalars.startIndex
            let scalars = data.unicodeScalars
            while index != scalars.endIndex {
                let scalar = scalars[index]
                index = scalars.index(after: index)
                if scalar == "\r" || scalar == "\n" {
                    if scalar == "\r", index != scalars.endIndex, scalars[index] == "\n" { index = scalars.index(after: index) }
                    lines.append(current)
                    current = ""
                } else {
                    current.unicodeScalars.append(scalar)
                }
            }
            lines.append(current)
            let expected = lines.map { "data: \($0)\n" }.joined() + "\n"
            #expect(wire(ServerSentEvent(data: data)) == expected)
            #expect(wire(ServerSentEvent(data: String(("x" + data).dropFirst()))) == expected)
        }
    }

    @Test func lineBreaksCannotInjectFieldsThroughNameOrID() {
        let text = wire(ServerSentEvent(event: "x\ndata: injected", id: "1\r\nevent: evil", data: "ok"))
        #expect(text == "event: xdata: injected\nid: 1event: evil\ndata: ok\n\n")
    }

    @Test func anIDWithNULIsLeftOut() {
        #expect(wire(ServerSentEvent(id: "a\u{0}b", data: "ok")) == "data: ok\n\n")
    }

    @Test func commentsAndRetry() {
        var buffer = ByteBuffer()
        ServerSentEvent.writeComment("heartbeat", to: &buffer)
        ServerSentEvent.writeRetry(milliseconds: 2000, to: &buffer)
        #expect(String(buffer: buffer) == ": heartbeat\n\nretry: 2000\n\n")
    }
}

@Suite struct RequestTests {
    @Test func queryParametersArePercentDecoded() {
        let request = Request(method: .GET, uri: "/api/x?session=a%2Fb&name=%E5%B1%B1+%E7%94%B0&empty=&flag&session=second")
        #expect(request.path == "/api/x")
        #expect(request.query("session") == "a/b")
        #expect(request.query("name") == "山 田")
        #expect(request.query("empty") == "")
        #expect(request.query("flag") == "")
        #expect(request.query("missing") == nil)
    }

    @Test(arguments: [
        ("a=1; tandem_phone_x=KEY; b=2", "KEY"),
        ("tandem_phone_x=KEY", "KEY"),
        ("  tandem_phone_x = KEY  ;", "KEY"),
        ("tandem_phone_x=", ""),
        ("tandem_phone_x=a=b", "a=b"),
        ("xtandem_phone_x=1; tandem_phone_xy=2", nil),
        ("tandem_phone_x", nil),
        (";;;=;", nil),
        ("", nil),
        ("a=ü; tandem_phone_x=ä", "ä"),
        ("tandem_phone_x=first; tandem_phone_x=second", "first"),
    ] as [(String, String?)])
    func cookiesAreFoundByExactName(header: String, expected: String?) {
        var request = Request(method: .GET, uri: "/")
        request.headers.add(name: "Cookie", value: header)
        #expect(request.cookie("tandem_phone_x") == expected)
    }

    /// Whatever a Cookie header holds, finding a cookie never traps, and a value is found only where the name is.
    @Test func anyCookieHeaderIsScannedSafely() async {
        let characters = Gen<Character>.oneOf(
            Gen.character(in: "a"..."c"), Gen.character(in: ";"...";"), Gen.character(in: "="..."="), Gen.character(in: " "..." "),
            Gen.character(in: "é"..."é"), Gen.character(in: "\t"..."\t"))
        await propertyCheck(count: 3000, input: characters.string(of: 0...40)) { (header: String) in
            var request = Request(method: .GET, uri: "/")
            request.headers.add(name: "Cookie", value: header)
            if let value = request.cookie("ab") {
                // An empty value is found too (`ab=`); Foundation's `contains("")` is false, so it is not asked.
                #expect(header.contains("ab") && header.contains("=") && (value.isEmpty || header.contains(value)), "\(header)")
            }
        }
    }

    /// The byte scanner answers as a model written from the rule (split at `;`, then at the first `=`, spaces and
    /// tabs trimmed from name and value; the first pair of that name wins), for any header made of the pieces that
    /// matter, in one header or spread over two.
    @Test func cookieValuesEqualASplittingModel() async {
        let pieces = Gen<String?>.element(of: ["ab", "a", "b", "=", ";", " ", "\t", "é", "ab=", "; ab", "x=ab", "😀"]).map { $0 ?? "" }
        await propertyCheck(count: 3000, input: pieces.array(of: 0...12), pieces.array(of: 0...6)) { (first: [String], second: [String]) in
            let headers = [first.joined(), second.joined()]
            func model() -> String? {
                for header in headers {
                    for pair in header.split(separator: ";", omittingEmptySubsequences: false) {
                        guard let equals = pair.firstIndex(of: "=") else { continue }
                        let trim: (Substring) -> String = { String($0.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed()) }
                        if trim(pair[..<equals]) == "ab" { return trim(pair[pair.index(after: equals)...]) }
                    }
                }
                return nil
            }
            var request = Request(method: .GET, uri: "/")
            for header in headers where !header.isEmpty { request.headers.add(name: "Cookie", value: header) }
            let expected = headers.allSatisfy(\.isEmpty) ? nil : model()
            #expect(request.cookie("ab") == expected, "\(headers)")
        }
    }

    @Test func cookiesInSeveralHeadersAreAllRead() {
        var request = Request(method: .GET, uri: "/")
        request.headers.add(name: "Cookie", value: "a=1")
        request.headers.add(name: "Cookie", value: "b=2")
        #expect(request.cookie("b") == "2" && request.cookie("a") == "1" && request.cookie("c") == nil)
    }

    @Test func brokenPercentEncodingIsNil() {
        #expect(Request(method: .GET, uri: "/?a=%zz").query("a") == nil)
        #expect(Request(method: .GET, uri: "/?a=%ff").query("a") == nil)
        #expect(Request(method: .GET, uri: "/?a=%4").query("a") == nil)
    }

    @Test func mediaTypeIgnoresParametersAndCase() {
        let request = Request(method: .POST, uri: "/", headers: ["Content-Type": "Application/JSON; charset=utf-8"])
        #expect(request.mediaType == "application/json")
        #expect(request.hasMediaType("application/json"))
        #expect(!request.hasMediaType("application/jso"))
        #expect(Request(method: .POST, uri: "/", headers: ["Content-Type": " application/LD+JSON "]).hasMediaType("x", orSuffix: "+json"))
        #expect(!Request(method: .POST, uri: "/", headers: ["Content-Type": "text/plain"]).hasMediaType("x", orSuffix: "+json"))
        #expect(!Request(method: .POST, uri: "/").hasMediaType("application/json"))
    }

    @Test func jsonBodyRefusesOtherMediaTypesAndBadJSON() throws {
        var headers: HTTPHeadersLiteral = ["Content-Type": "text/plain"]
        #expect(throws: JSONBodyError.unsupportedMediaType("text/plain")) {
            try Request(method: .POST, uri: "/", headers: headers.value, body: ByteBuffer(string: "{}")).jsonBody()
        }
        headers = [:]
        #expect(throws: JSONBodyError.malformed) {
            try Request(method: .POST, uri: "/", headers: headers.value, body: ByteBuffer(bytes: [0x7B, 0xFF, 0x7D])).jsonBody()
        }
        let value = try Request(method: .POST, uri: "/", body: ByteBuffer(string: #"{"a":[1,2.5,"x",null,true]}"#)).jsonBody()
        #expect(value["a"] == .array([.integer(1), .number(2.5), .string("x"), .null, .bool(true)]))
    }
}

import NIOHTTP1

/// Lets a test write headers as a dictionary literal and change them.
struct HTTPHeadersLiteral: ExpressibleByDictionaryLiteral {
    var value: HTTPHeaders
    init(dictionaryLiteral elements: (String, String)...) { value = HTTPHeaders(elements) }
}

import Foundation

@Suite struct JSONWritingTests {
    @Test(arguments: [
        JSONValue.object(["b": .integer(1_795_616_820_877), "a": .string("山田 \"q\" \\ / \n\r\t\u{0}\u{1F}\u{7F} 😀"), "c": .null]),
        .array([.bool(true), .bool(false), .number(0.05), .number(10), .number(-1e-7), .integer(-42), .object([:]), .array([])]),
        .string("<script>alert(1)</script>"),
    ])
    func writesJSONThatReadsBackTheSame(value: JSONValue) throws {
        let text = value.compactText
        let decoded = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        #expect(decoded.compactText == text)
        #expect(!text.contains("\n"))
    }

    @Test func keysAreSortedAndNothingIsEscapedThatNeedNotBe() {
        let value = JSONValue.object(["type": .string("session-info"), "expiryTime": .integer(5), "ttlMinutes": .number(10)])
        #expect(value.compactText == #"{"expiryTime":5,"ttlMinutes":10,"type":"session-info"}"#)
        #expect(JSONValue.string("a/b é").compactText == "\"a/b é\"")
        #expect(JSONValue.number(.infinity).compactText == "null")
    }
}

@Suite struct JSONParsingTests {
    @Test(arguments: [
        #"{"sessionId":"sess_x","name":"山田","phone":"03"}"#, #"  [1, -2.5e3, true, false, null, "a\"b\\c\/d\n\u00e9\ud83d\ude00"] "#,
        "0", "-0", "123456789012345678", "1.5", "1E2", #""""#, "{}", "[]", #"{"a":{"b":[{"c":[]}]}}"#,
    ])
    func parsesWhatFoundationParses(text: String) throws {
        let ours = try #require(JSONValue(parsing: Array(text.utf8)))
        let foundation = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        #expect(ours.compactText == foundation.compactText)
    }

    @Test(arguments: [
        "", " ", "{", "}", "[1,]", #"{"a":1,}"#, "01", "1.", ".5", "+1", "1e", "--1", "tru", "nul", #""\x""#, #""\u12""#,
        #""\ud800""#, #""\udc00""#, "\"a\u{01}b\"", "1e999", "[1] [2]", #"{"a" 1}"#, #"{1:2}"#, "NaN", "Infinity",
        String(repeating: "[", count: 65) + String(repeating: "]", count: 65),
    ])
    func refusesWhatIsNotJSON(text: String) {
        #expect(JSONValue(parsing: Array(text.utf8)) == nil)
    }

    @Test func refusesInvalidUTF8InStrings() {
        #expect(JSONValue(parsing: [0x22, 0xC3, 0x28, 0x22]) == nil)
        #expect(JSONValue(parsing: [0x22, 0xED, 0xA0, 0x80, 0x22]) == nil)  // an encoded surrogate
        #expect(JSONValue(parsing: Array("\"é\"".utf8)) == .string("é"))
    }

    /// Any bytes between quotes (no escape, no control character, no quote) are a string exactly when they are UTF-8,
    /// and then that string: the stdlib's validator is the model. Overlong forms, surrogates, code points past U+10FFFF,
    /// cut sequences and stray continuation bytes among valid text, escapes mixed in too.
    @Test func stringsAreTakenExactlyWhenTheirBytesAreUTF8() async {
        let pieces = Gen<[UInt8]?>.element(of: [
            [0x61], [0x7E], [0xC3, 0xA9], [0xE3, 0x81, 0x82], [0xF0, 0x9F, 0x98, 0x80], [0xEF, 0xBF, 0xBD], [0xC3], [0xE3, 0x81],
            [0xF0, 0x9F, 0x98], [0x80], [0xBF], [0xC0, 0xAF], [0xE0, 0x80, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
            [0xF5], [0xFF], [0x5C, 0x6E],
        ]).map { $0 ?? [] }
        await propertyCheck(count: 3000, input: pieces.array(of: 0...10)) { (parts: [[UInt8]]) in
            let bytes = parts.flatMap { $0 }
            // The model: the escape `\n` stands for a newline; every other byte must be UTF-8 as it is.
            let unescaped = parts.flatMap { $0 == [0x5C, 0x6E] ? [0x0A] : $0 }
            let expected = String(validating: unescaped, as: UTF8.self).map { JSONValue.string($0) }
            #expect(JSONValue(parsing: [0x22] + bytes + [0x22]) == expected, "\(bytes)")
        }
    }

    @Test func roundTripsWhatItWrites() {
        var generator = SystemRandomNumberGenerator()
        func random(_ depth: Int) -> JSONValue {
            switch Int.random(in: 0..<(depth > 3 ? 5 : 7), using: &generator) {
            case 0: return .null
            case 1: return .bool(Bool.random(using: &generator))
            case 2: return .integer(Int64.random(in: -1_000_000_000_000...1_000_000_000_000, using: &generator))
            case 3: return .number(Double.random(in: -1e6...1e6, using: &generator))
            case 4: return .string(String((0..<Int.random(in: 0...12, using: &generator)).map { _ in "aZ9 \"\\/\n\u{1}é山😀".randomElement(using: &generator)! }))
            case 5: return .array((0..<Int.random(in: 0...4, using: &generator)).map { _ in random(depth + 1) })
            default: return .object(Dictionary((0..<Int.random(in: 0...4, using: &generator)).map { ("k\($0)", random(depth + 1)) }) { $1 })
            }
        }
        for _ in 0..<500 {
            let value = random(0)
            let parsed = JSONValue(parsing: Array(value.compactText.utf8))
            #expect(parsed?.compactText == value.compactText)
        }
    }
}

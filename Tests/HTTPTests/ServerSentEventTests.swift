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

    @Test func brokenPercentEncodingIsNil() {
        #expect(Request(method: .GET, uri: "/?a=%zz").query("a") == nil)
        #expect(Request(method: .GET, uri: "/?a=%ff").query("a") == nil)
        #expect(Request(method: .GET, uri: "/?a=%4").query("a") == nil)
    }

    @Test func mediaTypeIgnoresParametersAndCase() {
        let request = Request(method: .POST, uri: "/", headers: ["Content-Type": "Application/JSON; charset=utf-8"])
        #expect(request.mediaType == "application/json")
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

import Synchronization

/// The phone key cookies (`tandem_phone_<ID>`) one device was given: a client keeps them, as a phone's browser
/// does, and sends them with its later requests. Reader cookies are not kept: tests of the reader key send them
/// explicitly.
public final class PhoneCookieJar: Sendable {
    private let cookies = Mutex<[String: String]>([:])

    public init() {}

    /// `name=value; name2=value2` of every kept cookie, or nil.
    public var header: String? {
        let all = cookies.withLock { $0 }
        return all.isEmpty ? nil : all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")
    }

    public func keep(from response: RawResponse) {
        for (name, value) in response.headers where name == "set-cookie" {
            guard let pair = value.split(separator: ";").first, let equals = pair.firstIndex(of: "=") else { continue }
            let cookieName = String(pair[..<equals])
            guard cookieName.hasPrefix("tandem_phone_") else { continue }
            cookies.withLock { $0[cookieName] = String(pair[pair.index(after: equals)...]) }
        }
    }
}

/// Requests over fresh real sockets, for tests that do not care about the connection itself. A client is one
/// device: it keeps the phone key cookies it is given (see ``PhoneCookieJar``); ``anotherDevice()`` is a second one.
public struct TestClient: Sendable {
    public let port: Int
    public let host: String
    public let jar: PhoneCookieJar

    public init(host: String = "127.0.0.1", port: Int) {
        self.host = host
        self.port = port
        self.jar = PhoneCookieJar()
    }

    /// A client for another device: the same server, none of this one's cookies.
    public func anotherDevice() -> TestClient {
        TestClient(host: host, port: port)
    }

    /// The request's headers with this device's phone cookies added, unless the test sends its own `Cookie`.
    private func withCookies(_ headers: [(String, String)]) -> [(String, String)] {
        guard let cookie = jar.header, !headers.contains(where: { $0.0.lowercased() == "cookie" }) else { return headers }
        return headers + [("Cookie", cookie)]
    }

    /// Sends one request on a new connection and reads its response.
    public func request(
        _ method: String,
        _ target: String,
        headers: [(String, String)] = [],
        body: String? = nil,
        timeout: Duration = .seconds(10)
    ) async throws -> RawResponse {
        let connection = try await TestConnection.connect(host: host, port: port)
        defer { Task { await connection.close() } }
        try await connection.send(Self.requestText(method, target, headers: withCookies(headers), body: body))
        let response = try await connection.readResponse(timeout: timeout, headRequest: method == "HEAD")
        jar.keep(from: response)
        return response
    }

    /// `POST` with a JSON body.
    public func post(_ target: String, json: String, headers: [(String, String)] = []) async throws -> RawResponse {
        try await request("POST", target, headers: [("Content-Type", "application/json")] + headers, body: json)
    }

    /// Opens an event stream and returns once its response head has arrived.
    public func openEventStream(_ target: String, headers: [(String, String)] = []) async throws -> EventStream {
        let connection = try await TestConnection.connect(host: host, port: port)
        try await connection.send(Self.requestText("GET", target, headers: withCookies([("Accept", "text/event-stream")] + headers), body: nil))
        let head = try await connection.readStreamingHead()
        return EventStream(connection: connection, head: head)
    }

    public static func requestText(_ method: String, _ target: String, headers: [(String, String)], body: String?) -> String {
        var text = "\(method) \(target) HTTP/1.1\r\nHost: test\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if let body { text += "Content-Length: \(body.utf8.count)\r\n" }
        text += "\r\n"
        if let body { text += body }
        return text
    }
}

/// An open SSE response, read through the test's own parser of the event-stream format.
public final class EventStream: Sendable {
    public let connection: TestConnection
    public let head: RawResponse

    init(connection: TestConnection, head: RawResponse) {
        self.connection = connection
        self.head = head
    }

    /// Waits until `count` events (comments excluded unless `countingComments`) have arrived in total since the
    /// stream opened; returns all parsed so far and whether the stream ended.
    public func events(atLeast count: Int, timeout: Duration = .seconds(10)) async throws -> (events: [ParsedEvent], ended: Bool) {
        let (text, ended) = try await connection.readChunkedText(timeout: timeout) { text in
            EventStreamParser.parse(text).filter { !$0.isComment }.count >= count
        }
        return (EventStreamParser.parse(text).filter { !$0.isComment }, ended)
    }

    /// Everything received so far, comments included, waiting until `predicate` holds or the stream ends.
    public func all(timeout: Duration = .seconds(10), until predicate: @escaping @Sendable ([ParsedEvent]) -> Bool) async throws -> (events: [ParsedEvent], ended: Bool) {
        let (text, ended) = try await connection.readChunkedText(timeout: timeout) { predicate(EventStreamParser.parse($0)) }
        return (EventStreamParser.parse(text), ended)
    }

    public func close() async { await connection.close() }

    /// The `name=value` of the cookie the server set with this stream (the opener's reader key), or nil.
    public var cookie: String? {
        head.header("set-cookie")?.split(separator: ";").first.map(String.init)
    }
}

/// One dispatched event, or one comment, as the WHATWG parsing rules produce it.
public struct ParsedEvent: Sendable, Equatable {
    public var event: String
    public var data: String
    public var id: String?
    public var retry: Int?
    public var comment: String?

    public var isComment: Bool { comment != nil }
}

/// The event-stream parsing algorithm of the HTML standard, simplified to LF line ends (what Tandem sends) plus CR.
public enum EventStreamParser {
    public static func parse(_ text: String) -> [ParsedEvent] {
        var events: [ParsedEvent] = []
        var eventType = ""
        var data: [String] = []
        var id: String?
        var retry: Int?
        var hasData = false
        let normalized = text.replacing("\r\n", with: "\n").replacing("\r", with: "\n")
        var lines = normalized.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        // The text after the last line break is an incomplete line.
        lines.removeLast()
        for line in lines {
            if line.isEmpty {
                if hasData || retry != nil {
                    if hasData {
                        events.append(ParsedEvent(event: eventType.isEmpty ? "message" : eventType, data: data.joined(separator: "\n"), id: id, retry: retry))
                    } else if let retry {
                        events.append(ParsedEvent(event: "", data: "", id: nil, retry: retry, comment: nil))
                    }
                }
                eventType = ""
                data = []
                hasData = false
                id = nil
                retry = nil
                continue
            }
            if line.hasPrefix(":") {
                events.append(ParsedEvent(event: "", data: "", id: nil, retry: nil, comment: String(line.dropFirst()).trimmingLeadingSpace))
                continue
            }
            let name: String
            var value: String
            if let colon = line.firstIndex(of: ":") {
                name = String(line[..<colon])
                value = String(line[line.index(after: colon)...])
                if value.hasPrefix(" ") { value.removeFirst() }
            } else {
                name = line
                value = ""
            }
            switch name {
            case "event": eventType = value
            case "data":
                data.append(value)
                hasData = true
            case "id": if !value.contains("\0") { id = value }
            case "retry": retry = Int(value)
            default: break
            }
        }
        return events
    }
}

extension String {
    fileprivate var trimmingLeadingSpace: String { hasPrefix(" ") ? String(dropFirst()) : self }
}

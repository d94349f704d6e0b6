import NIOCore
import NIOHTTP1

/// One HTTP request with its body fully read (bodies are small and capped by `HTTPServer.Configuration`).
public struct Request: Sendable {
    /// Method as sent; `HEAD` is routed like `GET` by ``Router``.
    public var method: HTTPMethod
    /// The request target, path and query: as sent, or taken from an absolute-form target (`http://host/path?q`,
    /// whose host is then in `Host`).
    public var uri: String
    /// The path part of `uri`, percent-decoding left to the route.
    public var path: Substring
    /// The raw query string after `?`, empty when there is none.
    public var queryString: Substring
    public var headers: HTTPHeaders
    public var body: ByteBuffer
    /// The address of the peer that opened the socket (a proxy's address behind a load balancer).
    public var remoteAddress: SocketAddress?
    /// The client's IP address: the peer's, or from `X-Forwarded-For` when the peer is a trusted proxy.
    public var clientAddress: String

    public init(
        method: HTTPMethod,
        uri: String,
        headers: HTTPHeaders = [:],
        body: ByteBuffer = ByteBuffer(),
        remoteAddress: SocketAddress? = nil,
        clientAddress: String? = nil
    ) {
        self.method = method
        self.uri = uri
        if let mark = uri.firstIndex(of: "?") {
            self.path = uri[..<mark]
            self.queryString = uri[uri.index(after: mark)...]
        } else {
            self.path = uri[...]
            self.queryString = ""
        }
        self.headers = headers
        self.body = body
        self.remoteAddress = remoteAddress
        self.clientAddress = clientAddress ?? remoteAddress?.ipAddress ?? "unknown"
    }

    /// The first value of a query parameter, percent-decoded (`+` as space); nil when absent or not valid UTF-8.
    public func query(_ name: String) -> String? {
        guard let (_, value) = firstParameter(name) else { return nil }
        guard let value else { return "" }
        return PercentDecoding.decode(value)
    }

    /// Whether the query names `name` at all, even with a value that does not percent-decode (which `query` gives
    /// as nil, like a missing one): a malformed value is then told apart from none.
    public func queryNames(_ name: String) -> Bool {
        firstParameter(name) != nil
    }

    /// The first `name=value` pair of the query whose name decodes to `name`, and its raw value (nil for a bare
    /// `name` without `=`).
    private func firstParameter(_ name: String) -> (pair: Substring, value: Substring?)? {
        var rest = queryString
        while !rest.isEmpty {
            let end = rest.utf8.firstIndex(of: UInt8(ascii: "&")) ?? rest.endIndex
            let pair = rest[..<end]
            rest = end == rest.endIndex ? rest[end...] : rest[rest.utf8.index(after: end)...]
            guard !pair.isEmpty else { continue }
            let equals = pair.utf8.firstIndex(of: UInt8(ascii: "="))
            guard PercentDecoding.decode(equals.map { pair[..<$0] } ?? pair) == name else { continue }
            return (pair, equals.map { pair[pair.utf8.index(after: $0)...] })
        }
        return nil
    }

    /// The value of cookie `name` from the `Cookie` headers, or nil.
    public func cookie(_ name: String) -> String? {
        // Read on every phone step and stream open (three times a handoff): the headers are walked in place (no array
        // of their values) and each value scanned as contiguous bytes, allocating only the value it returns. Scanning
        // through `Substring.UTF8View` indices cost twice as much in a profile of the flow.
        for (field, value) in headers where ASCII.equalsIgnoringCase(field.utf8, lowercase: "cookie".utf8) {
            var value = value
            if let found = value.withUTF8({ Self.cookieValue(named: name, in: $0) }) { return found }
        }
        return nil
    }

    /// The value of the first pair in `bytes` (`name=value; ...`) whose name, spaces and tabs trimmed, is `name`.
    private static func cookieValue(named name: String, in bytes: UnsafeBufferPointer<UInt8>) -> String? {
        let semicolon = UInt8(ascii: ";")
        let equals = UInt8(ascii: "=")
        func isSpace(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        // `lower..<upper` without spaces and tabs at either end.
        func trimmed(_ lower: Int, _ upper: Int) -> Range<Int> {
            var (lower, upper) = (lower, upper)
            while lower < upper, isSpace(bytes[lower]) { lower += 1 }
            while upper > lower, isSpace(bytes[upper - 1]) { upper -= 1 }
            return lower..<upper
        }
        var start = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count, bytes[end] != semicolon { end += 1 }
            var separator = start
            while separator < end, bytes[separator] != equals { separator += 1 }
            if separator < end, name.utf8.elementsEqual(UnsafeBufferPointer(rebasing: bytes[trimmed(start, separator)])) {
                return String(decoding: UnsafeBufferPointer(rebasing: bytes[trimmed(separator + 1, end)]), as: UTF8.self)
            }
            start = end + 1
        }
        return nil
    }

    /// The body as `application/x-www-form-urlencoded` fields (first value of each name), or nil when it is not
    /// valid UTF-8 after decoding.
    public func formFields() -> [String: String]? {
        let text = String(decoding: body.readableBytesView, as: UTF8.self)
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = PercentDecoding.decode(parts[0]), let value = parts.count > 1 ? PercentDecoding.decode(parts[1]) : "" else {
                return nil
            }
            if fields[key] == nil { fields[key] = value }
        }
        return fields
    }

    /// The media type of the body without parameters, lowercased (`application/json`), or nil.
    public var mediaType: String? {
        guard let value = headers.first(name: "content-type") else { return nil }
        let type = Self.mediaType(in: value)
        return type.isEmpty ? nil : String(decoding: type.map(ASCII.lowercased), as: UTF8.self)
    }

    /// Whether the body's media type, without parameters and ignoring ASCII case, is `type` (given in lowercase) or
    /// ends with `suffix`. Compares bytes in place: every POST asks, and `mediaType` allocates.
    public func hasMediaType(_ type: String, orSuffix suffix: String? = nil) -> Bool {
        guard let value = headers.first(name: "content-type") else { return false }
        let found = Self.mediaType(in: value)
        if ASCII.equalsIgnoringCase(found, lowercase: type.utf8) { return true }
        guard let suffix, found.count >= suffix.utf8.count else { return false }
        return ASCII.equalsIgnoringCase(found.suffix(suffix.utf8.count), lowercase: suffix.utf8)
    }

    /// The bytes of a Content-Type value before any `;`, without surrounding spaces and tabs.
    static func mediaType(in value: String) -> Substring.UTF8View {
        var type = value[...].utf8
        if let semicolon = type.firstIndex(of: UInt8(ascii: ";")) { type = type[..<semicolon] }
        while let first = type.first, first == 0x20 || first == 0x09 { type = type.dropFirst() }
        while let last = type.last, last == 0x20 || last == 0x09 { type = type.dropLast() }
        return type
    }
}

/// application/x-www-form-urlencoded style decoding for query strings.
package enum PercentDecoding {
    package static func decode(_ text: Substring) -> String? {
        // Nothing encoded (IDs, names of parameters): the text as it is.
        if !text.utf8.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "+") }) { return String(text) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "+"):
                bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                    return nil
                }
                bytes.append(high << 4 | low)
            default:
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces and tabs (HTTP's optional whitespace).
    package func trimmingSpaces() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}

import NIOCore
import NIOHTTP1

/// The head of one HTTP/1.x request, as parsed by ``HTTP1RequestParser``.
struct HTTP1RequestHead {
    var method: HTTPMethod
    /// The target in origin form (path and query): an absolute-form target is reduced to it, its authority
    /// becoming the `Host` (RFC 9112 §3.2.2). `*` for `OPTIONS *`, the authority for `CONNECT`.
    var uri: String
    var version: HTTPVersion
    var headers: HTTPHeaders
    /// Whether the connection stays open after the response (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only
    /// with `Connection: keep-alive`; never after a request with `Upgrade`).
    var isKeepAlive: Bool
    /// `Expect: 100-continue`: the client waits for a `100 Continue` before it sends the body.
    var expectsContinue: Bool
    /// The body's declared length; nil for a chunked body.
    var contentLength: Int?
    /// The request carries `Upgrade`. The upgrade is never granted (no 101; RFC 9110 §7.8 lets a server ignore it),
    /// but the client may already be sending the other protocol: nothing after this request is parsed.
    var asksUpgrade: Bool
}

/// Why a request could not be parsed. The connection cannot be read any further after one of these.
enum HTTP1ParseError: Error, Equatable {
    /// Not valid HTTP/1.x (answered 400).
    case malformed
    /// Request line and headers larger than the limit, or too many headers (431).
    case headTooLarge
    /// A major version other than 1 (505).
    case unsupportedVersion
    /// A transfer coding other than `chunked` (501).
    case unsupportedTransferCoding
}

/// An incremental, strict HTTP/1.1 request parser over the connection's received bytes. It replaces NIO's
/// decoder chain so a request costs one pass over its bytes and no per-part messages between handlers.
///
/// Strict where leniency lets requests be smuggled or confused: no whitespace before a header's colon, no folded
/// header lines, no control characters (trailer lines are held to the same rules), `Content-Length` digits only
/// (repeats must agree), chunk sizes in hex with only RFC 9112 chunk extensions after them, no request with both
/// `Content-Length` and `Transfer-Encoding`, exactly one `Host` in an HTTP/1.1 request, and nothing parsed after a
/// request with `Upgrade`.
struct HTTP1RequestParser {
    enum Part {
        case head(HTTP1RequestHead)
        /// A piece of the body, a slice of the received bytes.
        case body(ByteBuffer)
        case end
    }

    private enum State {
        case head
        case fixedBody(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers(bytesSeen: Int, fields: Int)
        /// The body is complete; `.end` comes next.
        case ending
        /// The connection carries no more requests (after one with `Upgrade`): nothing more is parsed.
        case finished
    }

    let maximumHeadBytes: Int
    let maximumHeaderCount: Int
    private var state = State.head
    /// How far into the buffered bytes the search for the head's end has already looked (a head arriving in pieces
    /// is not rescanned from its start).
    private var scannedHeadBytes = 0
    /// The request being read asked for an upgrade: after its `.end` the parser is finished.
    private var upgradeAsked = false

    init(maximumHeadBytes: Int, maximumHeaderCount: Int = 100) {
        self.maximumHeadBytes = maximumHeadBytes
        self.maximumHeaderCount = maximumHeaderCount
    }

    /// Whether the parser is between requests (the last one's `.end` given, nothing of the next one parsed yet).
    var isBetweenRequests: Bool {
        if case .head = state { return true }
        return false
    }

    /// Whether the parser reads no more requests from this connection (the last one carried `Upgrade`).
    var isFinished: Bool {
        if case .finished = state { return true }
        return false
    }

    /// The next part from `buffer`, consuming what it parsed; nil when more bytes are needed.
    mutating func next(from buffer: inout ByteBuffer) throws(HTTP1ParseError) -> Part? {
        switch state {
        case .head:
            return try nextHead(from: &buffer).map(Part.head)
        case .fixedBody(let remaining):
            guard buffer.readableBytes > 0 else { return nil }
            let length = min(remaining, buffer.readableBytes)
            guard let slice = buffer.readSlice(length: length) else { return nil }
            state = remaining == length ? .ending : .fixedBody(remaining: remaining - length)
            return .body(slice)
        case .chunkSize:
            guard let line = try Self.readLine(from: &buffer, limit: 1024, tooLong: .malformed) else { return nil }
            let size = try Self.chunkSize(line)
            state = size == 0 ? .trailers(bytesSeen: 0, fields: 0) : .chunkData(remaining: size)
            return try next(from: &buffer)
        case .chunkData(let remaining):
            guard buffer.readableBytes > 0 else { return nil }
            let length = min(remaining, buffer.readableBytes)
            guard let slice = buffer.readSlice(length: length) else { return nil }
            state = remaining == length ? .chunkDataEnd : .chunkData(remaining: remaining - length)
            return .body(slice)
        case .chunkDataEnd:
            guard buffer.readableBytes >= 2 else { return nil }
            guard buffer.readInteger(as: UInt16.self) == 0x0D0A else { throw .malformed }
            state = .chunkSize
            return try next(from: &buffer)
        case .trailers(let seen, let fields):
            // Trailer fields are dropped (nothing here needs them) but checked like header lines, within the same
            // limits: a lenient reader here would swallow whatever follows the last chunk, a request included.
            guard let line = try Self.readLine(from: &buffer, limit: maximumHeadBytes - seen, tooLong: .headTooLarge) else { return nil }
            if line.readableBytes == 0 {
                state = .ending
                return try next(from: &buffer)
            }
            guard fields < maximumHeaderCount else { throw .headTooLarge }
            try line.withUnsafeReadableBytes { bytes throws(HTTP1ParseError) in _ = try Self.fieldParts(bytes) }
            state = .trailers(bytesSeen: seen + line.readableBytes + 2, fields: fields + 1)
            return try next(from: &buffer)
        case .ending:
            state = upgradeAsked ? .finished : .head
            upgradeAsked = false
            return .end
        case .finished:
            return nil
        }
    }

    // MARK: Head

    private mutating func nextHead(from buffer: inout ByteBuffer) throws(HTTP1ParseError) -> HTTP1RequestHead? {
        // Empty lines before a request line are ignored (RFC 9112 §2.2): some clients send one after a body.
        while buffer.readableBytes >= 2, buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) == 0x0D0A {
            buffer.moveReaderIndex(forwardBy: 2)
            scannedHeadBytes = 0
        }
        guard let headLength = try findHeadEnd(in: buffer) else {
            // The limit is on the head without its blank line, which may be what has not arrived yet.
            if buffer.readableBytes > maximumHeadBytes + 3 { throw .headTooLarge }
            return nil
        }
        guard headLength <= maximumHeadBytes else { throw .headTooLarge }
        scannedHeadBytes = 0
        let head = try buffer.withUnsafeReadableBytes { bytes throws(HTTP1ParseError) in
            try parseHead(UnsafeRawBufferPointer(rebasing: bytes[..<headLength]))
        }
        buffer.moveReaderIndex(forwardBy: headLength + 4)
        upgradeAsked = head.asksUpgrade
        if let length = head.contentLength {
            state = length > 0 ? .fixedBody(remaining: length) : .ending
        } else {
            state = .chunkSize
        }
        return head
    }

    /// The length of the head before its blank line, or nil when the blank line has not arrived.
    /// The offset of the blank line that ends the head, or nil until it has arrived. A line of the head ended by a
    /// bare LF is refused (RFC 9112 §2.2 lets a server accept or refuse it; waiting for a CRLF that never comes
    /// would leave such a client without an answer until the idle timeout).
    private mutating func findHeadEnd(in buffer: ByteBuffer) throws(HTTP1ParseError) -> Int? {
        try buffer.withUnsafeReadableBytes { bytes throws(HTTP1ParseError) -> Int? in
            var index = scannedHeadBytes
            while index < bytes.count {
                if bytes[index] == 0x0A {
                    guard index > 0, bytes[index - 1] == 0x0D else { throw .malformed }
                    if index >= 3, bytes[index - 2] == 0x0A, bytes[index - 3] == 0x0D { return index - 3 }
                }
                index += 1
            }
            scannedHeadBytes = bytes.count
            return nil
        }
    }

    private func parseHead(_ bytes: UnsafeRawBufferPointer) throws(HTTP1ParseError) -> HTTP1RequestHead {
        var lines = LineIterator(bytes: bytes)
        guard let requestLine = lines.next() else { throw .malformed }
        let (method, uri, version, authority) = try Self.parseRequestLine(requestLine)

        var fields: [(String, String)] = []
        // One allocation for the usual head (a browser's sends a dozen fields), not one per doubling.
        fields.reserveCapacity(min(maximumHeaderCount, 16))
        var contentLength: Int?
        var transferEncoding: [Substring] = []
        var sawTransferEncoding = false
        var connectionClose = false
        var connectionKeepAlive = false
        var expectsContinue = false
        var hostCount = 0
        var hostIndex = 0
        var asksUpgrade = false
        while let line = lines.next() {
            guard fields.count < maximumHeaderCount else { throw .headTooLarge }
            let (name, value) = try Self.parseField(line)
            fields.append((name, value))
            switch name.count {
            case 14 where ASCII.equalsIgnoringCase(name.utf8, lowercase: "content-length".utf8):
                let length = try Self.contentLength(value)
                if let earlier = contentLength, earlier != length { throw .malformed }
                contentLength = length
            case 17 where ASCII.equalsIgnoringCase(name.utf8, lowercase: "transfer-encoding".utf8):
                sawTransferEncoding = true
                transferEncoding += value.split(separator: ",").map { $0.trimmingSpaces()[...] }
            case 10 where ASCII.equalsIgnoringCase(name.utf8, lowercase: "connection".utf8):
                for token in value.split(separator: ",") {
                    let token = token.trimmingSpaces()
                    if ASCII.equalsIgnoringCase(token.utf8, lowercase: "close".utf8) { connectionClose = true }
                    if ASCII.equalsIgnoringCase(token.utf8, lowercase: "keep-alive".utf8) { connectionKeepAlive = true }
                }
            case 4 where ASCII.equalsIgnoringCase(name.utf8, lowercase: "host".utf8):
                hostCount += 1
                hostIndex = fields.count - 1
            case 7 where ASCII.equalsIgnoringCase(name.utf8, lowercase: "upgrade".utf8):
                asksUpgrade = true
            case 6 where ASCII.equalsIgnoringCase(name.utf8, lowercase: "expect".utf8):
                // Any other expectation is ignored: the request is answered as if none was sent.
                if ASCII.equalsIgnoringCase(value.utf8, lowercase: "100-continue".utf8) { expectsContinue = true }
            default:
                break
            }
        }
        // An HTTP/1.1 request names exactly one host (RFC 9112 §3.2).
        if version.minor == 1 ? hostCount != 1 : hostCount > 1 { throw .malformed }
        // An absolute-form target's authority is the host, whatever `Host` says (RFC 9112 §3.2.2).
        if let authority {
            if hostCount == 1 { fields[hostIndex].1 = authority } else { fields.append(("Host", authority)) }
        }
        if sawTransferEncoding {
            // Both framings at once is how requests are smuggled past a proxy: refused (RFC 9112 §6.3).
            guard contentLength == nil, version.minor == 1 else { throw .malformed }
            guard let last = transferEncoding.last, ASCII.equalsIgnoringCase(last.utf8, lowercase: "chunked".utf8) else { throw .malformed }
            guard transferEncoding.count == 1 else {
                throw transferEncoding.dropLast().contains { ASCII.equalsIgnoringCase($0.utf8, lowercase: "chunked".utf8) } ? .malformed : .unsupportedTransferCoding
            }
        }
        return HTTP1RequestHead(
            method: method,
            uri: uri,
            version: version,
            headers: HTTPHeaders(fields),
            isKeepAlive: !asksUpgrade && (version.minor == 1 ? !connectionClose : (connectionKeepAlive && !connectionClose)),
            expectsContinue: expectsContinue && version.minor == 1,
            contentLength: sawTransferEncoding ? nil : (contentLength ?? 0),
            asksUpgrade: asksUpgrade
        )
    }

    /// Method, target in origin form (see ``HTTP1RequestHead/uri``), version, and the authority of an absolute-form
    /// target (nil for the other forms).
    private static func parseRequestLine(
        _ line: UnsafeRawBufferPointer
    ) throws(HTTP1ParseError) -> (HTTPMethod, String, HTTPVersion, String?) {
        guard let firstSpace = line.firstIndex(of: 0x20), firstSpace > 0 else { throw .malformed }
        guard let secondSpace = line[(firstSpace + 1)...].firstIndex(of: 0x20), secondSpace > firstSpace + 1 else { throw .malformed }
        let methodBytes = line[..<firstSpace]
        let targetBytes = line[(firstSpace + 1)..<secondSpace]
        let versionBytes = line[(secondSpace + 1)...]
        guard methodBytes.allSatisfy(isTokenByte) else { throw .malformed }
        // Visible ASCII only: a client must percent-encode anything else.
        guard targetBytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { throw .malformed }
        let version = try parseVersion(versionBytes)
        let method = HTTPMethod(rawValue: String(decoding: methodBytes, as: UTF8.self))
        // Origin form first: nearly every request has it, and it costs one comparison.
        if targetBytes.first == UInt8(ascii: "/"), method != .CONNECT {
            return (method, String(decoding: targetBytes, as: UTF8.self), version, nil)
        }
        // The other three forms (RFC 9112 §3.2), each only where it belongs; any other target is refused.
        switch method {
        case .CONNECT:
            // Authority form, host and port, for CONNECT only (then routed like any method without a route).
            guard let port = try? splitAuthority(targetBytes).port, !port.isEmpty else { throw .malformed }
            return (method, String(decoding: targetBytes, as: UTF8.self), version, nil)
        case .OPTIONS where targetBytes.elementsEqual("*".utf8):
            return (method, "*", version, nil)
        default:
            let (uri, authority) = try absoluteForm(targetBytes)
            return (method, uri, version, authority)
        }
    }

    /// An absolute-form target: `http` or `https` (any case), `://`, an authority, then path and query. Returns the
    /// path and query (the path `/` when empty, RFC 9112 §3.2.1) and the authority.
    private static func absoluteForm(_ target: Slice<UnsafeRawBufferPointer>) throws(HTTP1ParseError) -> (String, String) {
        guard let colon = target.firstIndex(of: UInt8(ascii: ":")) else { throw .malformed }
        let scheme = target[..<colon]
        guard ASCII.equalsIgnoringCase(scheme, lowercase: "http".utf8) || ASCII.equalsIgnoringCase(scheme, lowercase: "https".utf8),
            target[(colon + 1)...].starts(with: "//".utf8)
        else { throw .malformed }
        let rest = target[(colon + 3)...]
        let authorityEnd = rest.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        _ = try splitAuthority(authority)
        let path = String(decoding: rest[authorityEnd...], as: UTF8.self)
        return (path.utf8.first == UInt8(ascii: "/") ? path : "/" + path, String(decoding: authority, as: UTF8.self))
    }

    /// The host and port (nil without a colon) of an authority (RFC 3986 §3.2.2–3). The host must not be empty
    /// (RFC 9110 §4.2.1), and userinfo is refused (RFC 9110 §4.2.4 says to treat it as an error).
    private static func splitAuthority(
        _ authority: Slice<UnsafeRawBufferPointer>
    ) throws(HTTP1ParseError) -> (host: Slice<UnsafeRawBufferPointer>, port: Slice<UnsafeRawBufferPointer>?) {
        let hostEnd: Int
        if authority.first == UInt8(ascii: "[") {
            // IP-literal: an IPv6 address (or IPvFuture), checked only for its characters.
            guard let close = authority.firstIndex(of: UInt8(ascii: "]")), close > authority.startIndex + 1,
                authority[(authority.startIndex + 1)..<close].allSatisfy({ isRegNameByte($0) || $0 == UInt8(ascii: ":") })
            else { throw .malformed }
            hostEnd = close + 1
        } else {
            hostEnd = authority.firstIndex(of: UInt8(ascii: ":")) ?? authority.endIndex
            guard hostEnd > authority.startIndex, isRegName(authority[..<hostEnd]) else { throw .malformed }
        }
        let host = authority[..<hostEnd]
        guard hostEnd < authority.endIndex else { return (host, nil) }
        let port = authority[(hostEnd + 1)...]
        guard authority[hostEnd] == UInt8(ascii: ":"), port.allSatisfy(isDigit) else { throw .malformed }
        return (host, port)
    }

    /// reg-name of RFC 3986: unreserved, sub-delims and percent-encoded bytes.
    private static func isRegName(_ bytes: Slice<UnsafeRawBufferPointer>) -> Bool {
        var index = bytes.startIndex
        while index < bytes.endIndex {
            if bytes[index] == UInt8(ascii: "%") {
                guard index + 2 < bytes.endIndex, PercentDecoding.hexValue(bytes[index + 1]) != nil,
                    PercentDecoding.hexValue(bytes[index + 2]) != nil
                else { return false }
                index += 3
            } else {
                guard isRegNameByte(bytes[index]) else { return false }
                index += 1
            }
        }
        return true
    }

    private static func isRegNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"),
            UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="):
            true
        default:
            false
        }
    }

    private static func parseVersion(_ bytes: Slice<UnsafeRawBufferPointer>) throws(HTTP1ParseError) -> HTTPVersion {
        // "HTTP/" DIGIT "." DIGIT
        guard bytes.count == 8, bytes.starts(with: "HTTP/".utf8) else { throw .malformed }
        let major = bytes[bytes.startIndex + 5], dot = bytes[bytes.startIndex + 6], minor = bytes[bytes.startIndex + 7]
        guard dot == UInt8(ascii: "."), isDigit(major), isDigit(minor) else { throw .malformed }
        guard major == UInt8(ascii: "1") else { throw .unsupportedVersion }
        // A later 1.x is served as 1.1, the highest this server speaks (RFC 9110 §2.5).
        return HTTPVersion(major: 1, minor: minor == UInt8(ascii: "0") ? 0 : 1)
    }

    private static func parseField(_ line: UnsafeRawBufferPointer) throws(HTTP1ParseError) -> (String, String) {
        let (name, value) = try fieldParts(line)
        return (String(decoding: name, as: UTF8.self), commonValue(value) ?? String(decoding: value, as: UTF8.self))
    }

    /// Values too long for a small (inline) string that most requests carry, so a request that has one allocates no
    /// string for it; ``commonValue(_:)`` finds them by exact bytes.
    static let commonValues: [String] = ["application/json", "text/event-stream", "application/json; charset=utf-8"]

    /// The shared string of a common value, when `value` is one.
    private static func commonValue(_ value: Slice<UnsafeRawBufferPointer>) -> String? {
        guard value.count >= 16 else { return nil }  // shorter ones are small strings: no allocation anyway
        return commonValues.first { $0.utf8.count == value.count && $0.utf8.elementsEqual(value) }
    }

    /// The name and the value (without surrounding whitespace) of a header or trailer line, checked.
    private static func fieldParts(
        _ line: UnsafeRawBufferPointer
    ) throws(HTTP1ParseError) -> (Slice<UnsafeRawBufferPointer>, Slice<UnsafeRawBufferPointer>) {
        // A line starting with whitespace continues the one before (obsolete folding): refused, as RFC 9112 allows.
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > 0 else { throw .malformed }
        let name = line[..<colon]
        guard name.allSatisfy(isTokenByte) else { throw .malformed }
        var value = line[(colon + 1)...]
        while let first = value.first, first == 0x20 || first == 0x09 { value = value.dropFirst() }
        while let last = value.last, last == 0x20 || last == 0x09 { value = value.dropLast() }
        // Field values: visible characters, spaces, tabs and obs-text; no NUL, CR, LF or other controls.
        guard value.allSatisfy({ $0 >= 0x20 ? $0 != 0x7F : $0 == 0x09 }) else { throw .malformed }
        return (name, value)
    }

    private static func contentLength(_ value: String) throws(HTTP1ParseError) -> Int {
        // Digits only (no sign, no spaces inside); a list of equal values is allowed (RFC 9110 §8.6). Read in place:
        // every request with a body comes here.
        var length: Int?
        var rest = value.utf8[...]
        while true {
            let comma = rest.firstIndex(of: UInt8(ascii: ",")) ?? rest.endIndex
            var digits = rest[..<comma]
            while let first = digits.first, first == 0x20 || first == 0x09 { digits = digits.dropFirst() }
            while let last = digits.last, last == 0x20 || last == 0x09 { digits = digits.dropLast() }
            guard !digits.isEmpty, digits.allSatisfy(isDigit) else { throw .malformed }
            // Leading zeros do not count; past 18 digits a length could overflow, and no body is that long: refused
            // rather than trapping (RFC 9110 §8.6 warns of exactly this).
            let significant = digits.drop(while: { $0 == UInt8(ascii: "0") })
            guard significant.count <= 18 else { throw .malformed }
            let parsed = significant.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
            if let length, length != parsed { throw .malformed }
            length = parsed
            guard comma < rest.endIndex else { break }
            rest = rest[rest.index(after: comma)...]
        }
        guard let length else { throw .malformed }
        return length
    }

    /// `chunk-size [ chunk-ext ]` (RFC 9112 §7.1.1): hex digits, then only `;name`, `;name=token` or
    /// `;name="quoted"` with optional whitespace around `;` and `=`. The extensions are checked and ignored.
    private static func chunkSize(_ line: ByteBuffer) throws(HTTP1ParseError) -> Int {
        try line.withUnsafeReadableBytes { bytes throws(HTTP1ParseError) -> Int in
            var index = 0
            while index < bytes.count, bytes[index] == UInt8(ascii: "0") { index += 1 }
            let significantStart = index
            var size = 0
            while index < bytes.count, let value = PercentDecoding.hexValue(bytes[index]) {
                // 15 hex digits fit in an Int with room to spare; more is no size a body here can have.
                guard index - significantStart < 15 else { throw .malformed }
                size = size << 4 | Int(value)
                index += 1
            }
            guard index > 0 else { throw .malformed }
            while index < bytes.count {
                skipWhitespace(bytes, &index)
                guard index < bytes.count, bytes[index] == UInt8(ascii: ";") else { throw .malformed }
                index += 1
                skipWhitespace(bytes, &index)
                try skipToken(bytes, &index)
                // BWS before "=" only when "=" follows: trailing whitespace is not in the grammar.
                var afterSpace = index
                skipWhitespace(bytes, &afterSpace)
                guard afterSpace < bytes.count, bytes[afterSpace] == UInt8(ascii: "=") else { continue }
                index = afterSpace + 1
                skipWhitespace(bytes, &index)
                if index < bytes.count, bytes[index] == UInt8(ascii: "\"") {
                    try skipQuotedString(bytes, &index)
                } else {
                    try skipToken(bytes, &index)
                }
            }
            return size
        }
    }

    private static func skipWhitespace(_ bytes: UnsafeRawBufferPointer, _ index: inout Int) {
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x09 { index += 1 }
    }

    /// One or more tchars.
    private static func skipToken(_ bytes: UnsafeRawBufferPointer, _ index: inout Int) throws(HTTP1ParseError) {
        let start = index
        while index < bytes.count, isTokenByte(bytes[index]) { index += 1 }
        guard index > start else { throw .malformed }
    }

    /// quoted-string of RFC 9110 §5.6.4, from its opening quote to past its closing one.
    private static func skipQuotedString(_ bytes: UnsafeRawBufferPointer, _ index: inout Int) throws(HTTP1ParseError) {
        index += 1
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                return
            case UInt8(ascii: "\\"):
                // quoted-pair: a backslash and any of HTAB, SP, VCHAR, obs-text.
                guard index + 1 < bytes.count, bytes[index + 1] == 0x09 || (bytes[index + 1] >= 0x20 && bytes[index + 1] != 0x7F) else {
                    throw .malformed
                }
                index += 2
            default:
                // qdtext: HTAB, SP, VCHAR except the quote and backslash, obs-text.
                guard byte == 0x09 || (byte >= 0x20 && byte != 0x7F) else { throw .malformed }
                index += 1
            }
        }
        throw .malformed
    }

    /// One CRLF-terminated line (without its CRLF), or nil when it has not all arrived.
    private static func readLine(from buffer: inout ByteBuffer, limit: Int, tooLong: HTTP1ParseError) throws(HTTP1ParseError) -> ByteBuffer? {
        let view = buffer.readableBytesView
        guard let lf = view.firstIndex(of: 0x0A) else {
            if view.count > limit { throw tooLong }
            return nil
        }
        let length = lf - view.startIndex
        guard length - 1 <= limit else { throw tooLong }
        guard length >= 1, view[lf - 1] == 0x0D else { throw .malformed }
        guard let line = buffer.readSlice(length: length - 1) else { return nil }
        buffer.moveReaderIndex(forwardBy: 2)
        return line
    }

    // MARK: Bytes

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    /// tchar of RFC 9110 §5.6.2.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
            UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            true
        default:
            false
        }
    }
}

/// The CRLF-separated lines of a head (which ends before its blank line). A bare LF or CR inside a line is refused
/// by the field checks that follow, since they are control characters.
private struct LineIterator {
    let bytes: UnsafeRawBufferPointer
    var position = 0

    mutating func next() -> UnsafeRawBufferPointer? {
        guard position < bytes.count else { return nil }
        var index = position
        while index + 1 < bytes.count, !(bytes[index] == 0x0D && bytes[index + 1] == 0x0A) { index += 1 }
        let end = index + 1 < bytes.count ? index : bytes.count
        let line = UnsafeRawBufferPointer(rebasing: bytes[position..<end])
        position = end + 2
        return line
    }
}

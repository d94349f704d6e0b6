import NIOCore
import HTTP

/// The head of an HTTP/1.1 response, read byte by byte until the blank line. Only what the bench needs: the status,
/// `Content-Length`, whether the body is chunked, and the phone key cookie a claim sets. Its buffer lives only while a head is being read.
struct ResponseHeadParser {
    private var bytes: [UInt8] = []
    private var matched = 0  // how much of "\r\n\r\n" was just seen

    struct Head {
        var status: Int
        var contentLength: Int?
        var chunked: Bool
        /// `tandem_phone_<ID>=<key>` from `Set-Cookie`: the phone's later steps must carry it (first scan wins).
        var phoneCookie: String?
    }

    /// Consumes bytes from `p` starting at `i` until the head is complete; returns it then, nil when more is needed.
    mutating func feed(_ p: UnsafeRawBufferPointer, _ i: inout Int) -> Head? {
        while i < p.count {
            let b = p[i]
            i += 1
            bytes.append(b)
            switch (matched, b) {
            case (0, 13), (2, 13): matched += 1
            case (1, 10): matched = 2
            case (3, 10):
                let head = Self.parse(bytes)
                bytes.removeAll(keepingCapacity: true)
                matched = 0
                return head
            default: matched = b == 13 ? 1 : 0
            }
        }
        return nil
    }

    /// Gives the buffer back (for streams, whose head is read once).
    mutating func release() { bytes = [] }

    /// Reads the three headers the client needs straight from the bytes: the client shares the machine's cores with
    /// the server it measures, so every header turned into lowercased strings was CPU taken from the server.
    private static func parse(_ bytes: [UInt8]) -> Head {
        var head = Head(status: 0, contentLength: nil, chunked: false)
        // "HTTP/1.1 200 OK"
        if bytes.count >= 12 {
            head.status = Int(bytes[9] &- 48) * 100 + Int(bytes[10] &- 48) * 10 + Int(bytes[11] &- 48)
        }
        var lineStart = 0
        for index in bytes.indices where bytes[index] == 10 {
            let line = bytes[lineStart..<index]
            lineStart = index + 1
            guard let colon = line.firstIndex(of: 58) else { continue }
            let name = line[line.startIndex..<colon]
            var value = line[(colon + 1)...]
            while let first = value.first, first == 32 || first == 9 { value = value.dropFirst() }
            while let last = value.last, last == 32 || last == 9 || last == 13 { value = value.dropLast() }
            if ASCII.equalsIgnoringCase(name, lowercase: "content-length".utf8) {
                var length = 0
                var valid = !value.isEmpty
                for digit in value {
                    guard (48...57).contains(digit), length < Int.max / 10 - 9 else { valid = false; break }
                    length = length * 10 + Int(digit - 48)
                }
                head.contentLength = valid ? length : nil
            } else if ASCII.equalsIgnoringCase(name, lowercase: "transfer-encoding".utf8) {
                if contains(value, "chunked".utf8) { head.chunked = true }
            } else if ASCII.equalsIgnoringCase(name, lowercase: "set-cookie".utf8), value.starts(with: "tandem_phone_".utf8) {
                head.phoneCookie = String(decoding: value.prefix { $0 != 59 }, as: UTF8.self)
            }
        }
        return head
    }

    /// Whether `bytes` contain the lowercase `word`, ignoring ASCII case.
    private static func contains(_ bytes: ArraySlice<UInt8>, _ word: String.UTF8View) -> Bool {
        guard bytes.count >= word.count else { return false }
        return (bytes.startIndex...(bytes.endIndex - word.count)).contains { start in
            ASCII.equalsIgnoringCase(bytes[start..<(start + word.count)], lowercase: word)
        }
    }
}

/// `Transfer-Encoding: chunked`, decoded without copying: hands each piece of chunk data to `sink`.
struct ChunkedDecoder {
    private enum State { case size, sizeExtension, sizeLF, data(Int), dataCR, dataLF, trailer }
    private var state = State.size
    private var size = 0
    private(set) var finished = false

    /// Returns when `p` is used up or the last chunk has ended (then `finished`).
    mutating func feed(_ p: UnsafeRawBufferPointer, _ i: inout Int, sink: (UnsafeRawBufferPointer) -> Void) {
        while i < p.count, !finished {
            switch state {
            case .size:
                let b = p[i]
                i += 1
                switch b {
                case 48...57: size = size * 16 + Int(b - 48)
                case 97...102: size = size * 16 + Int(b - 87)
                case 65...70: size = size * 16 + Int(b - 55)
                case 13: state = .sizeLF
                case 10: state = size == 0 ? .trailer : .data(size)
                default: state = .sizeExtension
                }
            case .sizeExtension:
                let b = p[i]
                i += 1
                if b == 10 { state = size == 0 ? .trailer : .data(size) }
            case .sizeLF:
                i += 1
                state = size == 0 ? .trailer : .data(size)
            case .data(let remaining):
                let take = min(remaining, p.count - i)
                sink(UnsafeRawBufferPointer(rebasing: p[i..<(i + take)]))
                i += take
                state = remaining == take ? .dataCR : .data(remaining - take)
            case .dataCR:
                let b = p[i]
                i += 1
                size = 0
                state = b == 13 ? .dataLF : .size
            case .dataLF:
                i += 1
                state = .size
            case .trailer:
                // Expect the final CRLF (no trailers are sent by the servers measured here).
                let b = p[i]
                i += 1
                if b == 10 { finished = true }
            }
        }
    }
}

/// What an SSE parser reports.
protocol SSESink: AnyObject {
    /// A dispatched event with its `id:` (nil when it had none or a non-numeric one, as nchan's `id: 1700000000:0`).
    func sseEvent(id: Int?)
    /// A comment line (`: heartbeat`, nchan's ping `:`).
    func sseComment()
}

/// The WHATWG event-stream format, parsed with no buffer: it keeps the field name packed in an integer and the
/// numeric value of `id:`, which is all the bench needs to match events to publishes.
struct SSEParser {
    private var atLineStart = true
    private var inName = false
    private var name: UInt64 = 0
    private var nameLength = 0
    private var skippedSpace = false
    private var idValue = 0
    private var idNumeric = true
    private var field = Field.other
    private var hasID = false
    private var hasData = false
    private var sawCR = false

    private enum Field { case id, data, comment, other }

    private static let idName: UInt64 = 0x6964  // "id"
    private static let dataName: UInt64 = 0x6461_7461  // "data"

    mutating func feed(_ p: UnsafeRawBufferPointer, sink: some SSESink) {
        for b in p {
            if sawCR {
                sawCR = false
                if b == 10 { continue }  // CRLF counts as one line end
            }
            if b == 10 || b == 13 {
                sawCR = b == 13
                endLine(sink: sink)
                continue
            }
            if atLineStart {
                atLineStart = false
                if b == 58 {  // ':' at line start: a comment
                    field = .comment
                    inName = false
                    continue
                }
                inName = true
                name = 0
                nameLength = 0
            }
            if inName {
                if b == 58 {
                    inName = false
                    skippedSpace = false
                    field = name == Self.idName ? .id : (name == Self.dataName ? .data : .other)
                    if field == .id { idValue = 0; idNumeric = true; hasID = true }
                    if field == .data { hasData = true }
                } else if nameLength < 8 {
                    name = name << 8 | UInt64(b)
                    nameLength += 1
                } else {
                    name = UInt64.max
                }
                continue
            }
            if field == .id {
                if !skippedSpace, b == 32 { skippedSpace = true; continue }
                skippedSpace = true
                if b >= 48, b <= 57 { idValue = idValue &* 10 &+ Int(b - 48) } else { idNumeric = false }
            }
        }
    }

    private mutating func endLine(sink: some SSESink) {
        if atLineStart {
            // A blank line dispatches the event, if it had an id or data (a lone `retry:` block does not).
            if hasID || hasData { sink.sseEvent(id: hasID && idNumeric ? idValue : nil) }
            hasID = false
            hasData = false
        } else {
            if field == .comment { sink.sseComment() }
            if inName {
                // A field with no colon: the whole line is the name ("data" alone counts as data).
                if name == Self.dataName { hasData = true }
            }
        }
        atLineStart = true
        inName = false
        field = .other
    }
}

import CHiredis

/// hiredis's RESP parser: bytes go in as they arrive, whole replies come out. It never touches a socket.
/// Owned by one channel handler, used on that channel's event loop only.
final class HiredisReader {
    struct ParseError: Error, CustomStringConvertible {
        var description: String
    }

    private let reader: UnsafeMutablePointer<redisReader>
    /// Bytes fed but not yet parsed into replies, capped so a misbehaving server cannot grow memory without bound.
    private let maximumBufferedBytes: Int

    init(maximumBufferedBytes: Int = 64 << 20) throws {
        guard let reader = redisReaderCreate() else { throw ParseError(description: "hiredis could not allocate a reader") }
        self.reader = reader
        self.maximumBufferedBytes = maximumBufferedBytes
    }

    deinit {
        redisReaderFree(reader)
    }

    func feed(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        guard redisReaderFeed(reader, base.assumingMemoryBound(to: CChar.self), bytes.count) == REDIS_OK else {
            throw ParseError(description: errorText)
        }
        if reader.pointee.len - reader.pointee.pos > maximumBufferedBytes {
            throw ParseError(description: "reply larger than \(maximumBufferedBytes) bytes")
        }
    }

    /// The next whole reply, or nil until more bytes arrive.
    func nextReply() throws -> RESPValue? {
        var raw: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &raw) == REDIS_OK else { throw ParseError(description: errorText) }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        return Self.value(of: raw.assumingMemoryBound(to: redisReply.self))
    }

    private var errorText: String {
        withUnsafeBytes(of: reader.pointee.errstr) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    private static func value(of reply: UnsafeMutablePointer<redisReply>) -> RESPValue {
        let reply = reply.pointee
        func bytes() -> [UInt8] {
            guard let text = reply.str else { return [] }
            return Array(UnsafeRawBufferPointer(start: text, count: reply.len))
        }
        switch reply.type {
        case REDIS_REPLY_STRING: return .bulkString(bytes())
        case REDIS_REPLY_STATUS: return .simpleString(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_ERROR: return .error(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_INTEGER: return .integer(Int64(reply.integer))
        case REDIS_REPLY_ARRAY:
            guard let elements = reply.element else { return .array([]) }
            return .array((0..<reply.elements).compactMap { index in elements[index].map(value(of:)) })
        default: return .null
        }
    }
}

/// Writes a command as Redis reads it: a RESP array of bulk strings. Hand-written rather than hiredis's
/// `redisFormatCommandArgv` (which the reader's tests still check it against): that needed four arrays to call it,
/// a `sprintf` per argument and a copy out of its own buffer, about 2 % of a node's CPU in the Redis flow
/// (BENCHMARKS.md); this is one exactly sized array.
enum RESPCommandFormatter {
    static func format(_ arguments: [String]) -> [UInt8] {
        var count = 1 + decimalDigits(arguments.count) + 2
        for argument in arguments {
            let length = argument.utf8.count
            count += 1 + decimalDigits(length) + 2 + length + 2
        }
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var at = 0
            func put(_ byte: UInt8) {
                buffer[at] = byte
                at += 1
            }
            func putDecimal(_ value: Int) {
                let digits = decimalDigits(value)
                var rest = value
                for index in stride(from: at + digits - 1, through: at, by: -1) {
                    buffer[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest % 10)
                    rest /= 10
                }
                at += digits
            }
            put(UInt8(ascii: "*"))
            putDecimal(arguments.count)
            put(UInt8(ascii: "\r"))
            put(UInt8(ascii: "\n"))
            for var argument in arguments {
                let length = argument.utf8.count
                put(UInt8(ascii: "$"))
                putDecimal(length)
                put(UInt8(ascii: "\r"))
                put(UInt8(ascii: "\n"))
                argument.withUTF8 { utf8 in
                    // Checked before the copy, not only by the total below: a write past the buffer must never happen.
                    precondition(utf8.count == length && at + length <= buffer.count, "RESP command length miscounted")
                    if let source = utf8.baseAddress, length > 0 {
                        UnsafeMutableRawPointer(buffer.baseAddress! + at).copyMemory(from: source, byteCount: length)
                    }
                }
                at += length
                put(UInt8(ascii: "\r"))
                put(UInt8(ascii: "\n"))
            }
            precondition(at == count, "RESP command length miscounted")
            initialized = at
        }
    }

    /// Digits of a count (never negative: a collection's count or a string's length).
    private static func decimalDigits(_ value: Int) -> Int {
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        return digits
    }
}

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

/// Formats a command with hiredis's `redisFormatCommandArgv` (the variadic `redisCommand` is not callable from Swift).
enum RESPCommandFormatter {
    static func format(_ arguments: [String]) -> [UInt8] {
        var storage: [UInt8] = []
        var offsets: [Int] = []
        var lengths: [Int] = []
        for argument in arguments {
            offsets.append(storage.count)
            lengths.append(argument.utf8.count)
            storage.append(contentsOf: argument.utf8)
        }
        storage.append(0)  // never empty, so the base address exists
        return storage.withUnsafeBufferPointer { buffer -> [UInt8] in
            guard let base = buffer.baseAddress else { return [] }
            var pointers: [UnsafePointer<CChar>?] = offsets.map {
                UnsafeRawPointer(base + $0).assumingMemoryBound(to: CChar.self)
            }
            var command: UnsafeMutablePointer<CChar>?
            let length = pointers.withUnsafeMutableBufferPointer { argv in
                lengths.withUnsafeBufferPointer { argvlen in
                    redisFormatCommandArgv(&command, Int32(arguments.count), argv.baseAddress, argvlen.baseAddress)
                }
            }
            guard let command, length > 0 else { return [] }
            defer { redisFreeCommand(command) }
            return Array(UnsafeRawBufferPointer(start: command, count: Int(length)))
        }
    }
}

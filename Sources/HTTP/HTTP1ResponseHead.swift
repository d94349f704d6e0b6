import NIOCore
import NIOHTTP1

/// Writes HTTP/1.1 response heads and body framing straight into byte buffers.
enum HTTP1ResponseHead {
    /// How the body that follows a head is delimited.
    enum Framing {
        case contentLength(Int)
        /// `Transfer-Encoding: chunked` (HTTP/1.1 clients).
        case chunked
        /// Until the connection closes (a streamed body to an HTTP/1.0 client), or no body at all (1xx, 204, 304).
        case none
    }

    /// A response header that cannot be written: a name that is not a token, or a value with CR, LF or NUL.
    struct InvalidHeader: Error {
        let name: String
    }

    /// Writes the status line, `headers` (without any Content-Length, Transfer-Encoding or Connection of their own:
    /// those come from `framing` and `keepAlive`), and the blank line.
    /// `defaults` follow `headers`, but for those whose name `headers` has too.
    static func write(
        status: HTTPResponseStatus, headers: HTTPHeaders, defaults: DefaultResponseHeaders = .none, framing: Framing,
        keepAlive: Bool, requestMinorVersion: Int, into buffer: inout ByteBuffer
    ) throws(InvalidHeader) {
        buffer.writeStaticString("HTTP/1.1 ")
        buffer.writeString(String(status.code))
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(status.reasonPhrase)
        buffer.writeStaticString("\r\n")
        var overridden: UInt64 = 0
        for (name, value) in headers where !isFraming(name) {
            guard isValid(name: name, value: value) else { throw InvalidHeader(name: name) }
            overridden |= defaults.bit(of: name)
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        defaults.write(except: overridden, into: &buffer)
        switch framing {
        case .contentLength(let length):
            buffer.writeStaticString("Content-Length: ")
            buffer.writeString(String(length))
            buffer.writeStaticString("\r\n")
        case .chunked:
            buffer.writeStaticString("Transfer-Encoding: chunked\r\n")
        case .none:
            break
        }
        if !keepAlive {
            buffer.writeStaticString("Connection: close\r\n")
        } else if requestMinorVersion == 0 {
            buffer.writeStaticString("Connection: keep-alive\r\n")
        }
        buffer.writeStaticString("\r\n")
    }

    /// `100 Continue`, the interim answer to `Expect: 100-continue`.
    static let continueHead = ByteBuffer(string: "HTTP/1.1 100 Continue\r\n\r\n")

    /// The last chunk of a chunked body.
    static let lastChunk = ByteBuffer(string: "0\r\n\r\n")

    /// `data` framed as one chunk, in one buffer (one write, one `iovec`).
    static func chunk(_ data: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        var framed = bufferWithSizeLineRoom(capacity: data.readableBytes, allocator: allocator)
        framed.writeImmutableBuffer(data)
        frameChunkInPlace(&framed)
        return framed
    }

    /// Room in front of a chunk's data for its size line: a ByteBuffer holds at most 2^32 - 1 bytes, eight hex
    /// digits, then CRLF.
    static let chunkSizeLineRoom = 10

    /// An empty buffer for `capacity` bytes of chunk data, with ``chunkSizeLineRoom`` in front of its reader index
    /// and room for the closing CRLF.
    static func bufferWithSizeLineRoom(capacity: Int, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: chunkSizeLineRoom + max(0, capacity) + 2)
        buffer.moveWriterIndex(forwardBy: chunkSizeLineRoom)
        buffer.moveReaderIndex(forwardBy: chunkSizeLineRoom)
        return buffer
    }

    /// Frames `buffer`'s readable bytes as one chunk without moving them: the size line goes into the
    /// ``chunkSizeLineRoom`` bytes left in front of the reader index, the CRLF after them. A buffer without that
    /// room is framed into a copy.
    static func frameChunkInPlace(_ buffer: inout ByteBuffer) {
        guard buffer.readerIndex >= chunkSizeLineRoom else {
            buffer = chunk(buffer, allocator: ByteBufferAllocator())
            return
        }
        var size = buffer.readableBytes
        var start = buffer.readerIndex - 2
        buffer.setInteger(UInt16(0x0D0A), at: start)  // CRLF, big-endian
        repeat {
            start -= 1
            let digit = UInt8(truncatingIfNeeded: size & 0xF)
            buffer.setInteger(digit < 10 ? UInt8(ascii: "0") + digit : UInt8(ascii: "a") - 10 + digit, at: start)
            size >>= 4
        } while size > 0
        buffer.moveReaderIndex(to: start)
        buffer.writeStaticString("\r\n")
    }

    /// Whether `name` is one of the headers the server writes itself from the framing (any case).
    static func isFraming(_ name: String) -> Bool {
        switch name.utf8.count {
        case 10: ASCII.equalsIgnoringCase(name.utf8, lowercase: "connection".utf8)
        case 14: ASCII.equalsIgnoringCase(name.utf8, lowercase: "content-length".utf8)
        case 17: ASCII.equalsIgnoringCase(name.utf8, lowercase: "transfer-encoding".utf8)
        default: false
        }
    }

    static func isValid(name: String, value: String) -> Bool {
        !name.isEmpty
            && name.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ":") }
            && value.utf8.allSatisfy { $0 != 0x0D && $0 != 0x0A && $0 != 0x00 }
    }
}

/// Headers every response carries unless it sets a header of the same name itself (a site's security headers).
/// Checked once, when the server is configured, and written as prepared bytes: adding them to each response's
/// `HTTPHeaders` and checking them again in every head was a few percent of a small request's CPU.
public struct DefaultResponseHeaders: Sendable {
    /// Each header's name, lowercased, and its whole line (`Name: value\r\n`).
    private let headers: [(lowercasedName: [UInt8], line: ByteBuffer)]
    /// Every line, in order: what a response that sets none of them gets.
    private let block: ByteBuffer

    /// No default headers.
    public static let none = DefaultResponseHeaders(checked: [])

    /// A header that is not a token name with a value free of CR, LF and NUL, or more than 64 headers.
    public struct Invalid: Error, CustomStringConvertible {
        public let name: String
        public var description: String { "invalid default response header: \(name)" }
    }

    /// - Parameter headers: names and values, in the order they are written; at most 64, names distinct. The framing
    ///   headers (`Content-Length`, `Transfer-Encoding`, `Connection`) are refused: the server writes its own, and a
    ///   second one would let a client read the body differently than the server meant (response smuggling).
    public init(_ headers: [(name: String, value: String)]) throws(Invalid) {
        guard headers.count <= 64 else { throw Invalid(name: "(more than 64)") }
        for (name, value) in headers {
            guard HTTP1ResponseHead.isValid(name: name, value: value), !HTTP1ResponseHead.isFraming(name) else { throw Invalid(name: name) }
        }
        self.init(checked: headers)
    }

    private init(checked: [(name: String, value: String)]) {
        var block = ByteBuffer()
        var prepared: [(lowercasedName: [UInt8], line: ByteBuffer)] = []
        for (name, value) in checked where !prepared.contains(where: { ASCII.equalsIgnoringCase(name.utf8, lowercase: $0.lowercasedName) }) {
            var line = ByteBuffer()
            line.writeString(name)
            line.writeStaticString(": ")
            line.writeString(value)
            line.writeStaticString("\r\n")
            block.writeImmutableBuffer(line)
            prepared.append((name.utf8.map(ASCII.lowercased), line))
        }
        self.headers = prepared
        self.block = block
    }

    /// The bytes of every default header.
    var byteCount: Int { block.readableBytes }

    /// The bit of the default header named `name` (any case); 0 when there is none.
    func bit(of name: String) -> UInt64 {
        guard !headers.isEmpty else { return 0 }
        let count = name.utf8.count
        for (index, header) in headers.enumerated()
        where header.lowercasedName.count == count && ASCII.equalsIgnoringCase(name.utf8, lowercase: header.lowercasedName) {
            return 1 << UInt64(index)
        }
        return 0
    }

    /// Writes every default header but those whose bits are in `overridden`.
    func write(except overridden: UInt64, into buffer: inout ByteBuffer) {
        guard overridden != 0 else {
            buffer.writeImmutableBuffer(block)
            return
        }
        for (index, header) in headers.enumerated() where overridden & (1 << UInt64(index)) == 0 {
            buffer.writeImmutableBuffer(header.line)
        }
    }
}

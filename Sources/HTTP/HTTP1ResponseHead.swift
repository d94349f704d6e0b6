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
    static func write(
        status: HTTPResponseStatus, headers: HTTPHeaders, framing: Framing, keepAlive: Bool, requestMinorVersion: Int,
        into buffer: inout ByteBuffer
    ) throws(InvalidHeader) {
        buffer.writeStaticString("HTTP/1.1 ")
        buffer.writeString(String(status.code))
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(status.reasonPhrase)
        buffer.writeStaticString("\r\n")
        for (name, value) in headers {
            switch name.utf8.count {
            case 10 where ASCII.equalsIgnoringCase(name.utf8, lowercase: "connection".utf8): continue
            case 14 where ASCII.equalsIgnoringCase(name.utf8, lowercase: "content-length".utf8): continue
            case 17 where ASCII.equalsIgnoringCase(name.utf8, lowercase: "transfer-encoding".utf8): continue
            default: break
            }
            guard isValid(name: name, value: value) else { throw InvalidHeader(name: name) }
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
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
        var framed = allocator.buffer(capacity: data.readableBytes + 20)
        framed.writeString(String(data.readableBytes, radix: 16))
        framed.writeStaticString("\r\n")
        framed.writeImmutableBuffer(data)
        framed.writeStaticString("\r\n")
        return framed
    }

    private static func isValid(name: String, value: String) -> Bool {
        !name.isEmpty
            && name.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ":") }
            && value.utf8.allSatisfy { $0 != 0x0D && $0 != 0x0A && $0 != 0x00 }
    }
}

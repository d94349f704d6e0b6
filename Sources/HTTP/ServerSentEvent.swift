import NIOCore

/// One event of a `text/event-stream`, framed as the WHATWG HTML standard's "Server-sent events" section parses it.
public struct ServerSentEvent: Sendable, Equatable {
    /// The `event:` field; nil dispatches as `message`.
    public var event: String?
    /// The `id:` field, which the browser sends back as `Last-Event-ID` when it reconnects.
    public var id: String?
    /// The payload; each of its lines becomes one `data:` line.
    public var data: String

    public init(event: String? = nil, id: String? = nil, data: String) {
        self.event = event
        self.id = id
        self.data = data
    }

    /// Appends the event's wire form. Line breaks inside `event` and `id` would end the field early and let the rest
    /// be read as other fields, so they are dropped; an `id` containing NUL is ignored by browsers and is dropped too.
    public func write(to buffer: inout ByteBuffer) {
        if let event {
            buffer.writeStaticString("event: ")
            buffer.writeString(Self.singleLine(event))
            buffer.writeStaticString("\n")
        }
        if let id, !id.utf8.contains(0) {
            buffer.writeStaticString("id: ")
            buffer.writeString(Self.singleLine(id))
            buffer.writeStaticString("\n")
        }
        // The usual payload (compact JSON) has no line break: one `data:` line, written at once.
        let singleLineWritten = data.utf8.withContiguousStorageIfAvailable { bytes -> Bool in
            guard !bytes.contains(where: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) else { return false }
            buffer.writeStaticString("data: ")
            buffer.writeBytes(UnsafeRawBufferPointer(bytes))
            buffer.writeStaticString("\n\n")
            return true
        }
        if singleLineWritten == true { return }
        // CRLF, CR and LF all end a line in the format; each line of the payload gets its own `data:` field so the
        // client rejoins them with LF.
        var lineStart = data.utf8.startIndex
        var index = lineStart
        let utf8 = data.utf8
        while index != utf8.endIndex {
            let byte = utf8[index]
            if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
                Self.writeDataLine(utf8[lineStart..<index], to: &buffer)
                var next = utf8.index(after: index)
                if byte == UInt8(ascii: "\r"), next != utf8.endIndex, utf8[next] == UInt8(ascii: "\n") {
                    next = utf8.index(after: next)
                }
                index = next
                lineStart = next
            } else {
                index = utf8.index(after: index)
            }
        }
        Self.writeDataLine(utf8[lineStart..<utf8.endIndex], to: &buffer)
        buffer.writeStaticString("\n")
    }

    /// Appends a comment line (`: text`), which clients ignore; used for heartbeats that keep proxies from timing out.
    public static func writeComment(_ text: String, to buffer: inout ByteBuffer) {
        buffer.writeStaticString(": ")
        buffer.writeString(singleLine(text))
        buffer.writeStaticString("\n\n")
    }

    /// Appends a `retry:` field: the reconnection delay the client should use.
    public static func writeRetry(milliseconds: Int, to buffer: inout ByteBuffer) {
        buffer.writeStaticString("retry: ")
        buffer.writeString(String(max(0, milliseconds)))
        buffer.writeStaticString("\n\n")
    }

    private static func writeDataLine(_ line: Substring.UTF8View, to buffer: inout ByteBuffer) {
        buffer.writeStaticString("data: ")
        buffer.writeBytes(line)
        buffer.writeStaticString("\n")
    }

    private static func singleLine(_ text: String) -> String {
        guard text.utf8.contains(where: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) else { return text }
        return String(text.unicodeScalars.filter { $0 != "\n" && $0 != "\r" })
    }
}

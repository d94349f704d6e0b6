import NIOCore

/// Any JSON value, for bodies whose fields are checked one by one (so that a missing field and a field of the wrong
/// type each get their own error instead of one decoding failure).
public enum JSONValue: Sendable, Equatable, Codable {
    case null
    case bool(Bool)
    /// A number without a fraction that fits 64 bits, written without exponent (millisecond timestamps).
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// The member `key` of an object; nil for a missing key or a value that is not an object.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members[key]
    }
}

extension JSONValue {
    /// Parses JSON text (UTF-8) strictly; nil when it is not exactly one well-formed JSON value.
    public init?(parsing bytes: some Collection<UInt8>) {
        let array = Array(bytes)
        guard let value = try? array.withUnsafeBytes({ bytes throws(JSONParser.Failure) in try JSONParser.parse(bytes) }) else { return nil }
        self = value
    }

    /// Parses JSON text (UTF-8) strictly, or says where it stopped being JSON: for messages meant for people.
    package static func parse(_ bytes: some Collection<UInt8>) throws(JSONParser.Failure) -> JSONValue {
        let result = Array(bytes).withUnsafeBytes { bytes in Result { () throws(JSONParser.Failure) in try JSONParser.parse(bytes) } }
        return try result.get()
    }

    /// Compact JSON text with sorted keys, `/` unescaped and non-ASCII as UTF-8.
    public var compactText: String {
        var buffer = ByteBufferAllocator().buffer(capacity: 128)
        write(to: &buffer)
        return String(buffer: buffer)
    }

    /// Compact JSON text of an object whose members are given in the order to write them: for the hot paths that know
    /// their keys (every event's data), which then build no dictionary and sort nothing. Give them sorted, so the text
    /// is the one ``compactText`` of the same object gives.
    public static func objectText(_ members: KeyValuePairs<String, JSONValue>) -> String {
        objectText(members: members)
    }

    /// ``objectText(_:)`` for members known only at run time (a configured form's fields), in their order.
    public static func objectText<Members: Sequence>(members: Members) -> String where Members.Element == (key: String, value: JSONValue) {
        var buffer = ByteBufferAllocator().buffer(capacity: 128)
        buffer.writeInteger(UInt8(ascii: "{"))
        for (index, member) in members.enumerated() {
            if index > 0 { buffer.writeInteger(UInt8(ascii: ",")) }
            writeString(member.key, to: &buffer)
            buffer.writeInteger(UInt8(ascii: ":"))
            member.value.write(to: &buffer)
        }
        buffer.writeInteger(UInt8(ascii: "}"))
        return String(buffer: buffer)
    }

    /// Appends compact JSON (RFC 8259) with sorted keys: written straight into the buffer, since every response
    /// and event is one of these and a general-purpose encoder costs several times as much.
    public func write(to buffer: inout ByteBuffer) {
        switch self {
        case .null:
            buffer.writeStaticString("null")
        case .bool(let value):
            buffer.writeStaticString(value ? "true" : "false")
        case .integer(let value):
            buffer.writeString(String(value))
        case .number(let value):
            // Swift prints the shortest text that reads back as the same Double, which is valid JSON when finite.
            if value.isFinite { buffer.writeString(value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : "\(value)") } else {
                buffer.writeStaticString("null")
            }
        case .string(let value):
            Self.writeString(value, to: &buffer)
        case .array(let values):
            buffer.writeInteger(UInt8(ascii: "["))
            for (index, value) in values.enumerated() {
                if index > 0 { buffer.writeInteger(UInt8(ascii: ",")) }
                value.write(to: &buffer)
            }
            buffer.writeInteger(UInt8(ascii: "]"))
        case .object(let members):
            buffer.writeInteger(UInt8(ascii: "{"))
            for (index, key) in members.keys.sorted().enumerated() {
                if index > 0 { buffer.writeInteger(UInt8(ascii: ",")) }
                Self.writeString(key, to: &buffer)
                buffer.writeInteger(UInt8(ascii: ":"))
                members[key]?.write(to: &buffer)
            }
            buffer.writeInteger(UInt8(ascii: "}"))
        }
    }

    /// A JSON string literal with the escapes above; `package` so that the bench's ordered lines write theirs alike.
    package static func writeString(_ text: String, to buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "\""))
        // Most strings (keys, IDs, names) need no escape: one copy instead of a write per byte.
        guard text.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") || $0 == 0x7F }) else {
            buffer.writeString(text)
            buffer.writeInteger(UInt8(ascii: "\""))
            return
        }
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): buffer.writeStaticString("\\\"")
            case UInt8(ascii: "\\"): buffer.writeStaticString("\\\\")
            case 0x0A: buffer.writeStaticString("\\n")
            case 0x0D: buffer.writeStaticString("\\r")
            case 0x09: buffer.writeStaticString("\\t")
            case 0x00..<0x20, 0x7F:
                let hex = String(byte, radix: 16)
                buffer.writeStaticString("\\u00")
                buffer.writeString(hex.count == 1 ? "0" + hex : hex)
            default: buffer.writeInteger(byte)
            }
        }
        buffer.writeInteger(UInt8(ascii: "\""))
    }

}

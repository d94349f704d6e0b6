/// One Redis reply (RESP2), as hiredis's reader parses it.
public enum RESPValue: Sendable, Equatable {
    case simpleString(String)
    case error(String)
    case integer(Int64)
    case bulkString([UInt8])
    case null
    case array([RESPValue])

    /// The text of a simple or bulk string.
    var string: String? {
        switch self {
        case .simpleString(let text): text
        case .bulkString(let bytes): String(decoding: bytes, as: UTF8.self)
        default: nil
        }
    }

    var integer: Int64? {
        if case .integer(let value) = self { value } else { nil }
    }

    var array: [RESPValue]? {
        if case .array(let values) = self { values } else { nil }
    }
}

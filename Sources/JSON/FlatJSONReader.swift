/// Reads one JSON object whose values are strings, integers, booleans or null (what cjson makes of a flat Lua table).
/// Anything else, or malformed input, sets `failed`. Used where a whole ``JSONValue`` tree would be wasted (the Redis
/// broker decodes every event it receives with it); strings go through ``JSONParser``'s decoder.
package struct FlatJSONReader {
    private let bytes: [UInt8]
    private var index = 0
    package private(set) var failed = false
    private var closed = false
    private var pairsRead = 0

    package init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// True once the object's closing brace was read and only whitespace follows.
    package var endedCleanly: Bool {
        var copy = self
        copy.skipWhitespace()
        return closed && !failed && copy.index == bytes.count
    }

    package mutating func beginObject() -> Bool {
        skipWhitespace()
        return consume(UInt8(ascii: "{"))
    }

    /// The next key, or nil at the end of the object (or on an error).
    package mutating func nextKey() -> String? {
        guard !failed, !closed else { return nil }
        skipWhitespace()
        if consume(UInt8(ascii: "}")) {
            closed = true
            return nil
        }
        if pairsRead > 0 {
            guard consume(UInt8(ascii: ",")) else { return fail() }
            skipWhitespace()
        }
        guard let key = string() else { return fail() }
        skipWhitespace()
        guard consume(UInt8(ascii: ":")) else { return fail() }
        skipWhitespace()
        pairsRead += 1
        return key
    }

    package mutating func string() -> String? {
        var position = index
        let text = bytes.withUnsafeBytes { JSONParser.string(in: $0, at: &position) }
        index = position
        return text ?? fail()
    }

    /// A `true` or `false` here, or nil (nothing consumed) when the value is something else.
    package mutating func boolean() -> Bool? {
        guard !failed, index < bytes.count else { return nil }
        switch bytes[index] {
        case UInt8(ascii: "t"): return literal("true") ? true : nil
        case UInt8(ascii: "f"): return literal("false") ? false : nil
        default: return nil
        }
    }

    package mutating func unsignedInteger() -> UInt64? {
        var value: UInt64 = 0
        var digits = 0
        while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(bytes[index] - UInt8(ascii: "0")))
            guard !overflow1, !overflow2 else { return fail() }
            value = sum
            digits += 1
            index += 1
        }
        guard digits > 0 else { return fail() }
        return value
    }

    /// Skips a string, number, boolean or null.
    package mutating func skipValue() -> Bool {
        guard index < bytes.count else { return refuse() }
        switch bytes[index] {
        case UInt8(ascii: "\""): return string() != nil
        case UInt8(ascii: "t"): return literal("true")
        case UInt8(ascii: "f"): return literal("false")
        case UInt8(ascii: "n"): return literal("null")
        default:
            let start = index
            while index < bytes.count, "-+.eE0123456789".utf8.contains(bytes[index]) { index += 1 }
            return index > start || (refuse())
        }
    }

    private mutating func literal(_ word: String) -> Bool {
        for byte in word.utf8 {
            guard consume(byte) else { return refuse() }
        }
        return true
    }

    private mutating func consume(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    private mutating func skipWhitespace() {
        while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
    }

    private mutating func fail<T>() -> T? {
        failed = true
        return nil
    }

    private mutating func refuse() -> Bool {
        failed = true
        return false
    }
}


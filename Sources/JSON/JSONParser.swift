/// A strict RFC 8259 parser into ``JSONValue``, reading UTF-8 bytes directly: request bodies are small and parsed
/// on every POST, and a general-purpose decoder costs several times as much. Nesting is capped, so a hostile body of
/// ten thousand `[` cannot exhaust the stack.
package struct JSONParser {
    /// Where the text stopped being JSON: the byte offset of the first byte that does not fit.
    package struct Failure: Error {
        package var offset: Int
    }

    private let bytes: UnsafeRawBufferPointer
    private var index = 0
    private let maximumDepth: Int

    /// Parses one JSON value that makes up all of `bytes` (surrounding whitespace allowed).
    package static func parse(_ bytes: UnsafeRawBufferPointer, maximumDepth: Int = 64) throws(Failure) -> JSONValue {
        var parser = JSONParser(bytes: bytes, maximumDepth: maximumDepth)
        parser.skipWhitespace()
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.index == bytes.count else { throw Failure(offset: parser.index) }
        return value
    }

    /// Reads the JSON string that starts at `index` (its opening quote) and moves `index` past it; nil, with `index`
    /// anywhere, when it is not a well-formed string (bad escapes, control characters, invalid UTF-8, a lone
    /// surrogate). The one string decoder of the code base, for readers that walk JSON themselves.
    package static func string(in bytes: UnsafeRawBufferPointer, at index: inout Int) -> String? {
        guard index >= 0, index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        var parser = JSONParser(bytes: bytes, maximumDepth: 0)
        parser.index = index
        defer { index = parser.index }
        return try? parser.string()
    }

    private init(bytes: UnsafeRawBufferPointer, maximumDepth: Int) {
        self.bytes = bytes
        self.maximumDepth = maximumDepth
    }

    private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func skipWhitespace() {
        while let byte = current, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { index += 1 }
    }

    private mutating func expect(_ literal: StaticString) throws(Failure) {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw Failure(offset: index) }
        for offset in 0..<count where bytes[index + offset] != literal.utf8Start[offset] { throw Failure(offset: index) }
        index += count
    }

    private mutating func value(depth: Int) throws(Failure) -> JSONValue {
        guard depth < maximumDepth, let byte = current else { throw Failure(offset: index) }
        switch byte {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"):
            try expect("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expect("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expect("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw Failure(offset: index)
        }
    }

    private mutating func object(depth: Int) throws(Failure) -> JSONValue {
        index += 1
        var members: [String: JSONValue] = [:]
        skipWhitespace()
        if current == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard current == UInt8(ascii: "\"") else { throw Failure(offset: index) }
            let key = try string()
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw Failure(offset: index) }
            index += 1
            skipWhitespace()
            // A repeated name is refused: parsers disagree on which one wins, and a body that means two things is
            // bad input, not a puzzle to guess at.
            guard members[key] == nil else { throw Failure(offset: index) }
            members[key] = try value(depth: depth + 1)
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                return .object(members)
            default: throw Failure(offset: index)
            }
        }
    }

    private mutating func array(depth: Int) throws(Failure) -> JSONValue {
        index += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if current == UInt8(ascii: "]") {
            index += 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try value(depth: depth + 1))
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"):
                index += 1
                return .array(elements)
            default: throw Failure(offset: index)
            }
        }
    }

    private mutating func string() throws(Failure) -> String {
        index += 1  // the opening quote
        var scalars = String.UnicodeScalarView()
        var runStart = index
        /// The bytes since the last escape, as text; invalid UTF-8 is refused, not repaired.
        func run(_ parser: JSONParser) throws(Failure) -> String {
            // `String(decoding:as:)` repairs what is not UTF-8, so the text equals its bytes exactly when they were
            // valid. `String(validating:as:)` says so directly but goes through the runtime's unspecialized generic
            // `_validate`, whose metadata lookups were 15 µs of a Redis flow's handoff (decoding log entries).
            let run = UnsafeRawBufferPointer(rebasing: parser.bytes[runStart..<parser.index])
            let text = run.withMemoryRebound(to: UInt8.self) { String(decoding: $0, as: UTF8.self) }
            guard text.utf8.elementsEqual(run) else {
                throw Failure(offset: runStart)
            }
            return text
        }
        func flushRun(_ parser: JSONParser, to scalars: inout String.UnicodeScalarView) throws(Failure) {
            guard runStart < parser.index else { return }
            scalars.append(contentsOf: try run(parser).unicodeScalars)
        }
        while true {
            guard let byte = current else { throw Failure(offset: index) }
            switch byte {
            case UInt8(ascii: "\""):
                // No escape in the string (nearly all of them): the run is the string, made in one step.
                let text: String
                if scalars.isEmpty {
                    text = try run(self)
                } else {
                    try flushRun(self, to: &scalars)
                    text = String(scalars)
                }
                index += 1
                return text
            case UInt8(ascii: "\\"):
                try flushRun(self, to: &scalars)
                index += 1
                guard let escaped = current else { throw Failure(offset: index) }
                index += 1
                switch escaped {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"): scalars.append(try unicodeEscape())
                default: throw Failure(offset: index)
                }
                runStart = index
            case 0x00..<0x20:
                throw Failure(offset: index)  // control characters must be escaped
            default:
                index += 1
            }
        }
    }

    /// The scalar of `\uXXXX` (the `\u` already read), joining a surrogate pair.
    private mutating func unicodeEscape() throws(Failure) -> Unicode.Scalar {
        let first = try hex4()
        if (0xD800...0xDBFF).contains(first) {
            try expect("\\u")
            let second = try hex4()
            guard (0xDC00...0xDFFF).contains(second),
                let scalar = Unicode.Scalar(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
            else { throw Failure(offset: index) }
            return scalar
        }
        guard let scalar = Unicode.Scalar(first) else { throw Failure(offset: index) }  // a lone low surrogate
        return scalar
    }

    private mutating func hex4() throws(Failure) -> UInt32 {
        guard index + 4 <= bytes.count else { throw Failure(offset: index) }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw Failure(offset: index)
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    private mutating func number() throws(Failure) -> JSONValue {
        let start = index
        if current == UInt8(ascii: "-") { index += 1 }
        guard let first = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else { throw Failure(offset: index) }
        if first == UInt8(ascii: "0") {
            index += 1
        } else {
            while let byte = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { index += 1 }
        }
        var isInteger = true
        if current == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            guard let byte = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { throw Failure(offset: index) }
            while let byte = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { index += 1 }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            isInteger = false
            index += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
            guard let byte = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { throw Failure(offset: index) }
            while let byte = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { index += 1 }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        if isInteger, let integer = Int64(text) { return .integer(integer) }
        guard let double = Double(text), double.isFinite else { throw Failure(offset: index) }
        return .number(double)
    }
}

import HTTP
import JSON

/// Where a setting's value came from, for `check-config` style reports and error messages.
enum ConfigurationOrigin: String, Sendable {
    case defaultValue = "default"
    case file = "config.json"
    case environment = "environment"
    case commandLine = "command line"
}

/// A configuration problem found at start, naming the key, where the value came from, and what is expected.
struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    var description: String
}

/// Reads settings by dotted key: a command-line override first, then the environment variable derived from the key
/// (`session.ttlSeconds` → `SESSION_TTL_SECONDS`), then the JSON file, then the default in code. Records where each
/// value came from.
struct ConfigurationReader {
    private let file: [String: JSONValue]
    /// The file's text, to say on which line a structured setting (`form.fields`) is wrong.
    private let fileText: ArraySlice<UInt8>
    private let fileName: String
    private let environment: [String: String]
    private let overrides: [String: String]
    private(set) var origins: [(key: String, environmentName: String, origin: ConfigurationOrigin)] = []
    private var readKeys: Set<String> = []

    /// - Parameter fileContents: the JSON file's bytes, or nil when there is no file.
    init(fileContents: [UInt8]?, fileName: String, environment: [String: String], overrides: [String: String] = [:]) throws(ConfigurationError) {
        self.environment = environment
        self.overrides = overrides
        self.fileName = fileName
        guard let fileContents else {
            self.file = [:]
            self.fileText = []
            return
        }
        // The one strict JSON parser: a key written twice is refused, not resolved by guessing. A UTF-8 byte order mark
        // (editors on Windows write one) is not part of the JSON: skipped.
        let text = fileContents.starts(with: [0xEF, 0xBB, 0xBF]) ? fileContents.dropFirst(3) : fileContents[...]
        self.fileText = text
        let root: JSONValue
        do throws(JSONParser.Failure) {
            root = try JSONValue.parse(text)
        } catch {
            let (line, column) = Self.lineAndColumn(of: error.offset, in: text)
            throw ConfigurationError(
                description: "\(fileName) is not valid JSON (UTF-8, each key once): stops at line \(line), column \(column)")
        }
        guard case .object = root else {
            throw ConfigurationError(description: "\(fileName) must hold a JSON object")
        }
        var flat: [String: JSONValue] = [:]
        var repeated: Set<String> = []
        Self.flatten(root, prefix: "", into: &flat, repeated: &repeated)
        guard repeated.isEmpty else {
            // `{"limits": {"maxBodyBytes": 1}, "limits.maxBodyBytes": 2}`: one setting given twice.
            throw ConfigurationError(description: "\(fileName) gives \(repeated.sorted().joined(separator: ", ")) more than once")
        }
        self.file = flat
    }

    /// The environment variable name for a dotted key.
    static func environmentName(for key: String) -> String {
        var name = ""
        let characters = Array(key)
        for (index, character) in characters.enumerated() {
            if character == "." {
                name.append("_")
                continue
            }
            if character.isUppercase, index > 0 {
                let previous = characters[index - 1]
                let next = index + 1 < characters.count ? characters[index + 1] : nil
                if previous.isLowercase || previous.isNumber || (previous.isUppercase && next?.isLowercase == true) {
                    name.append("_")
                }
            }
            name.append(contentsOf: character.uppercased())
        }
        return name
    }

    mutating func integer(_ key: String, default defaultValue: Int, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        let (raw, origin) = lookUp(key)
        let value: Int?
        switch raw {
        case nil: value = defaultValue
        case .text(let text)?: value = Int(text.trimmingSpaces())
        case .json(.integer(let number))?: value = Int(exactly: number)
        case .json(.number(let number))?: value = number.rounded() == number && abs(number) < 1e15 ? Int(number) : nil
        case .json?: value = nil
        }
        guard let value, range.contains(value) else {
            throw invalid(key, origin: origin, raw: raw, expected: "an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    mutating func string(_ key: String, default defaultValue: String) throws(ConfigurationError) -> String {
        let (raw, origin) = lookUp(key)
        switch raw {
        case nil: return defaultValue
        case .text(let text)?: return text
        case .json(.string(let text))?: return text
        case .json(.null)?: return ""
        case .json?: throw invalid(key, origin: origin, raw: raw, expected: "a string")
        }
    }

    mutating func choice(_ key: String, default defaultValue: String, from choices: [String]) throws(ConfigurationError) -> String {
        let value = try string(key, default: defaultValue)
        guard choices.contains(value) else {
            throw invalid(key, origin: origin(of: key), raw: .text(value), expected: "one of \(choices.joined(separator: ", "))")
        }
        return value
    }

    mutating func choice<Choice: RawRepresentable & CaseIterable>(_ key: String, default defaultValue: Choice) throws(ConfigurationError) -> Choice
    where Choice.RawValue == String {
        let names = Choice.allCases.map(\.rawValue)
        let name = try choice(key, default: defaultValue.rawValue, from: names)
        return Choice(rawValue: name) ?? defaultValue
    }

    /// A setting whose value is JSON (an array or object): from the file as written, or from the environment or the
    /// command line as JSON text. Nil when not given.
    mutating func json(_ key: String) throws(ConfigurationError) -> JSONValue? {
        let (raw, origin) = lookUp(key)
        switch raw {
        case nil: return nil
        case .json(let value)?: return value
        case .text(let text)?:
            do throws(JSONParser.Failure) {
                return try JSONValue.parse(Array(text.utf8))
            } catch {
                throw invalid(key, origin: origin, raw: raw, expected: "JSON (it stops at character \(error.offset + 1))")
            }
        }
    }

    /// What is wrong with a structured setting, and where: the line of the file where the named entry (`"name":
    /// "<entryName>"`) is written when it comes from the file and can be found there, else the setting alone.
    func invalid(_ key: String, problem: String, entryName: String?, occurrence: Int = 1) -> ConfigurationError {
        let source =
            switch origin(of: key) {
            case .environment: "environment variable \(Self.environmentName(for: key))"
            case .commandLine: "command-line option for \"\(key)\""
            case .file: "\(fileName) key \"\(key)\""
            case .defaultValue: "default of \"\(key)\""
            }
        var place = ""
        if origin(of: key) == .file, let entryName, let offset = Self.offset(ofNameEntry: entryName, occurrence: occurrence, in: fileText) {
            place = " (line \(Self.lineAndColumn(of: offset, in: fileText).line))"
        }
        return ConfigurationError(description: "\(source)\(place): \(problem)")
    }

    /// Where the `occurrence`th `"name": "<entryName>"` is written (whitespace allowed around the colon), or nil.
    static func offset(ofNameEntry entryName: String, occurrence: Int = 1, in text: ArraySlice<UInt8>) -> Int? {
        var seen = 0
        let key = Array(#""name""#.utf8)
        let value = Array(("\"" + entryName + "\"").utf8)
        let bytes = Array(text)
        var index = 0
        while index + key.count <= bytes.count {
            if bytes[index..<(index + key.count)].elementsEqual(key) {
                var cursor = index + key.count
                while cursor < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[cursor]) { cursor += 1 }
                if cursor < bytes.count, bytes[cursor] == UInt8(ascii: ":") {
                    cursor += 1
                    while cursor < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[cursor]) { cursor += 1 }
                    if cursor + value.count <= bytes.count, bytes[cursor..<(cursor + value.count)].elementsEqual(value) {
                        seen += 1
                        if seen == occurrence { return index }
                    }
                }
            }
            index += 1
        }
        return nil
    }

    /// Throws for keys in the file that no setting read: a typo there should not be silently ignored.
    func rejectUnknownFileKeys() throws(ConfigurationError) {
        let unknown = file.keys.filter { !readKeys.contains($0) }.sorted()
        guard unknown.isEmpty else {
            throw ConfigurationError(description: "\(fileName) has unknown key(s): \(unknown.joined(separator: ", "))")
        }
    }

    func invalid(_ key: String, expected: String, value: String) -> ConfigurationError {
        invalid(key, origin: origin(of: key), raw: .text(value), expected: expected)
    }

    private enum RawValue {
        case text(String)
        case json(JSONValue)
    }

    private mutating func lookUp(_ key: String) -> (RawValue?, ConfigurationOrigin) {
        readKeys.insert(key)
        let environmentName = Self.environmentName(for: key)
        let result: (RawValue?, ConfigurationOrigin)
        if let text = overrides[key] {
            result = (.text(text), .commandLine)
        } else if let text = environment[environmentName] {
            result = (.text(text), .environment)
        } else if let value = file[key] {
            result = (.json(value), .file)
        } else {
            result = (nil, .defaultValue)
        }
        origins.removeAll { $0.key == key }
        origins.append((key, environmentName, result.1))
        return result
    }

    private func origin(of key: String) -> ConfigurationOrigin {
        origins.first { $0.key == key }?.origin ?? .defaultValue
    }

    private func invalid(_ key: String, origin: ConfigurationOrigin, raw: RawValue?, expected: String) -> ConfigurationError {
        let shown: String
        switch raw {
        case .text(let text)?: shown = "'\(text)'"
        case .json(let value)?: shown = value.compactText
        case nil: shown = "nothing"
        }
        let source =
            switch origin {
            case .environment: "environment variable \(Self.environmentName(for: key))"
            case .commandLine: "command-line option for \"\(key)\""
            case .file: "\(fileName) key \"\(key)\""
            case .defaultValue: "default of \"\(key)\""
            }
        return ConfigurationError(description: "\(source) must be \(expected), got \(shown)")
    }

    /// 1-based line and column (in characters) of byte `offset`: where an editor shows it.
    static func lineAndColumn(of offset: Int, in text: ArraySlice<UInt8>) -> (line: Int, column: Int) {
        let end = text.index(text.startIndex, offsetBy: min(max(offset, 0), text.count))
        let before = text[..<end]
        let line = before.count(where: { $0 == UInt8(ascii: "\n") }) + 1
        let lineStart = before.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? before.startIndex
        return (line, String(decoding: text[lineStart..<end], as: UTF8.self).count + 1)
    }

    private static func flatten(_ value: JSONValue, prefix: String, into flat: inout [String: JSONValue], repeated: inout Set<String>) {
        if case .object(let members) = value {
            for (name, member) in members {
                flatten(member, prefix: prefix.isEmpty ? name : prefix + "." + name, into: &flat, repeated: &repeated)
            }
        } else if flat.updateValue(value, forKey: prefix) != nil {
            repeated.insert(prefix)
        }
    }
}

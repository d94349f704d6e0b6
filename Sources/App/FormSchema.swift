import Broker
import JSON

/// The form the phone fills: its fields in order, each with a type, labels in Japanese and English, and the rules a
/// submission is checked by (`form.fields` in config.json). The default is the article's form, a name of at most 20
/// characters and a phone number of at most 15, checked exactly as the article's pages expect.
struct FormSchema: Sendable, Equatable {
    enum FieldType: String, Sendable, CaseIterable {
        case text, tel, email, number, checkbox, select
    }

    struct Labels: Sendable, Equatable {
        var japanese: String
        var english: String

        func text(in language: Language) -> String {
            language == .japanese ? japanese : english
        }
    }

    struct Option: Sendable, Equatable {
        var value: String
        var label: Labels
    }

    struct Field: Sendable, Equatable {
        var name: String
        var type: FieldType
        var label: Labels
        var required: Bool
        /// Characters as people see them (grapheme clusters); for a select or checkbox, unused.
        var maxLength: Int
        /// A regular expression the whole value must match (text, tel, email, number), as written in the config.
        var pattern: String?
        var options: [Option]

        /// The compiled pattern. Compiled once when the configuration is read; `Regex` is not `Sendable`, so it is
        /// kept behind a box that is only ever read.
        var compiled: CompiledPattern?
    }

    var fields: [Field]

    /// The article's form.
    static let article = FormSchema(fields: [
        Field(
            name: "name", type: .text, label: Labels(japanese: "お名前", english: "Name"), required: true,
            maxLength: SubmissionRules.maximumNameLength, pattern: nil, options: [], compiled: nil),
        Field(
            name: "phone", type: .tel, label: Labels(japanese: "電話番号", english: "Phone number"), required: true,
            maxLength: SubmissionRules.maximumPhoneLength, pattern: nil, options: [], compiled: nil),
    ])

    /// Whether submissions are checked by the article's own rules (and stored and sent as `{"name","phone"}`).
    var isArticleForm: Bool { self == .article }

    /// Limits on what a config may ask for: a form is a handful of fields a phone fills by hand.
    static let maximumFields = Submission.maximumFields
    static let maximumLength = 1000
    static let maximumOptions = 50
    /// A field's name: what the API and the events call it. Short, ASCII, and none of the names events already use.
    static let reservedNames = Submission.reservedFieldNames

    /// The schema `form.fields` describes (a JSON array; `nil` or `[]` for the article's form), or what is wrong
    /// with it, naming the field by its position and name.
    static func parse(_ value: JSONValue?) -> Result<FormSchema, SchemaError> {
        guard let value, value != .null else { return .success(.article) }
        guard case .array(let entries) = value else { return .failure(SchemaError(field: nil, problem: "must be an array of fields")) }
        if entries.isEmpty { return .success(.article) }
        guard entries.count <= maximumFields else {
            return .failure(SchemaError(field: nil, problem: "has \(entries.count) fields; at most \(maximumFields)"))
        }
        var fields: [Field] = []
        for (index, entry) in entries.enumerated() {
            switch field(entry, at: index) {
            case .success(let field):
                guard !fields.contains(where: { $0.name == field.name }) else {
                    // Its line is that of the second entry of the name, not the first.
                    return .failure(SchemaError(field: (index, field.name), problem: "a second field named \"\(field.name)\"", occurrence: 2))
                }
                fields.append(field)
            case .failure(let error): return .failure(error)
            }
        }
        let schema = FormSchema(fields: fields)
        // Written out in full, the article's form is the article's form.
        return .success(schema == .article ? .article : schema)
    }

    private static func field(_ entry: JSONValue, at index: Int) -> Result<Field, SchemaError> {
        guard case .object(let members) = entry else { return .failure(SchemaError(field: (index, nil), problem: "must be an object")) }
        let known: Set<String> = ["name", "type", "label", "required", "maxLength", "pattern", "options"]
        let nameText: String? = if case .string(let text)? = members["name"] { text } else { nil }
        func failure(_ problem: String) -> Result<Field, SchemaError> { .failure(SchemaError(field: (index, nameText), problem: problem)) }
        if let unknown = members.keys.sorted().first(where: { !known.contains($0) }) { return failure("has an unknown key \"\(unknown)\"") }
        guard let name = nameText, Submission.hasFieldNameShape(name) else {
            return failure("\"name\" must be 1 to \(Submission.maximumFieldNameBytes) ASCII letters, digits or _, starting with a letter")
        }
        guard !reservedNames.contains(name) else { return failure("\"name\" \"\(name)\" is used by the events; choose another") }
        guard case .string(let typeName)? = members["type"], let type = FieldType(rawValue: typeName) else {
            return failure("\"type\" must be one of \(FieldType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let label = labels(members["label"]) else {
            return failure("\"label\" must be {\"ja\": \"…\", \"en\": \"…\"}, each 1 to 100 characters")
        }
        var required = false
        switch members["required"] {
        case nil: break
        case .bool(let value)?: required = value
        default: return failure("\"required\" must be true or false")
        }
        var maxLength = type == .tel ? 20 : 100
        switch members["maxLength"] {
        case nil: break
        case .integer(let value)? where (1...Int64(maximumLength)).contains(value): maxLength = Int(value)
        default: return failure("\"maxLength\" must be an integer from 1 to \(maximumLength)")
        }
        var pattern: String?
        var compiled: CompiledPattern?
        switch members["pattern"] {
        case nil: break
        case .string(let text)? where [.text, .tel, .email, .number].contains(type):
            switch CompiledPattern.make(text) {
            case .success(let made): compiled = made
            case .failure(let problem): return failure("\"pattern\" \(problem)")
            }
            pattern = text
        case .string?: return failure("\"pattern\" applies to text, tel, email and number fields only")
        default: return failure("\"pattern\" must be a string (a regular expression the whole value must match)")
        }
        if pattern != nil, maxLength > CompiledPattern.maximumPatternedLength {
            return failure("\"maxLength\" is at most \(CompiledPattern.maximumPatternedLength) for a field with a pattern")
        }
        var options: [Option] = []
        switch (type, members["options"]) {
        case (.select, .array(let entries)?) where (1...maximumOptions).contains(entries.count):
            for entry in entries {
                guard case .object(let option) = entry, Set(option.keys).isSubset(of: ["value", "label"]),
                    case .string(let value)? = option["value"], (1...100).contains(value.count), let label = labels(option["label"]),
                    !options.contains(where: { $0.value == value })
                else { return failure("each option must be {\"value\": \"…\", \"label\": {\"ja\": \"…\", \"en\": \"…\"}}, values distinct") }
                options.append(Option(value: value, label: label))
            }
        case (.select, _): return failure("a select needs \"options\": 1 to \(maximumOptions) of {\"value\", \"label\"}")
        case (_, nil): break
        case (_, _?): return failure("\"options\" applies to select fields only")
        }
        return .success(Field(name: name, type: type, label: label, required: required, maxLength: maxLength, pattern: pattern, options: options, compiled: compiled))
    }

    private static func labels(_ value: JSONValue?) -> Labels? {
        guard case .object(let members)? = value, Set(members.keys) == ["ja", "en"], case .string(let japanese)? = members["ja"],
            case .string(let english)? = members["en"], (1...100).contains(japanese.count), (1...100).contains(english.count),
            SubmissionRules.firstRefusedScalar(in: japanese) == nil, SubmissionRules.firstRefusedScalar(in: english) == nil
        else { return nil }
        return Labels(japanese: japanese, english: english)
    }

    /// The form as the pages read it (`GET /api/form`): each field's name, type, labels and rules.
    var json: JSONValue {
        .object([
            "fields": .array(
                fields.map { field in
                    var members: [String: JSONValue] = [
                        "name": .string(field.name), "type": .string(field.type.rawValue),
                        "label": .object(["ja": .string(field.label.japanese), "en": .string(field.label.english)]),
                        "required": .bool(field.required),
                    ]
                    if field.type != .checkbox && field.type != .select { members["maxLength"] = .integer(Int64(field.maxLength)) }
                    if let pattern = field.pattern { members["pattern"] = .string(pattern) }
                    if !field.options.isEmpty {
                        members["options"] = .array(
                            field.options.map { .object(["value": .string($0.value), "label": .object(["ja": .string($0.label.japanese), "en": .string($0.label.english)])]) })
                    }
                    return .object(members)
                })
        ])
    }
}

/// What is wrong with `form.fields`: which field (its position from 0, and its name when it has one) and how.
struct SchemaError: Error, Equatable {
    var field: (index: Int, name: String?)?
    var problem: String
    /// Which entry of the field's name in the file is the wrong one (2 for a name given twice).
    var occurrence = 1

    static func == (lhs: SchemaError, rhs: SchemaError) -> Bool {
        lhs.problem == rhs.problem && lhs.field?.index == rhs.field?.index && lhs.field?.name == rhs.field?.name
    }

    var description: String {
        guard let field else { return problem }
        let name = field.name.map { " (\"\($0)\")" } ?? ""
        return "field \(field.index + 1)\(name) \(problem)"
    }
}

/// A field's pattern, compiled once. A value is matched whole. Patterns come from the operator, values from phones,
/// and matching runs on the event loop: so only patterns whose matching time is bounded are taken. A pattern is a
/// sequence of atoms (a character, an escape like `\d` or `\p{L}`, `.`, or a class `[...]`), each optionally
/// followed by `?`, `{n}`, `{n,}`, `{n,m}`, `*` or `+`; no groups, no alternation, no backreferences or lookarounds,
/// and at most two unbounded repetitions (`*`, `+`, `{n,}`). A backtracking matcher then needs at most about n²
/// steps for a value of n characters, and values of patterned fields are bounded (``maximumPatternedLength``).
/// Groups and `|` are where the exponential cases live (`(a|a)*`, `(a+)+`); three unbounded repetitions in a row
/// are polynomial (`[ab]*[ab]*[ab]*c`).
final class CompiledPattern: @unchecked Sendable, Equatable {
    // Only read after init, from any thread: `Regex` matching does not mutate it.
    private let regex: Regex<AnyRegexOutput>

    /// The longest value a patterned field may take (its `maxLength` is capped to this).
    static let maximumPatternedLength = 200

    private init(_ regex: Regex<AnyRegexOutput>) {
        self.regex = regex
    }

    static func make(_ text: String) -> Result<CompiledPattern, PatternProblem> {
        guard (1...200).contains(text.count) else { return .failure(PatternProblem("must be 1 to 200 characters")) }
        if let problem = unsafeShape(text) { return .failure(PatternProblem(problem)) }
        do {
            return .success(CompiledPattern(try Regex(text)))
        } catch {
            return .failure(PatternProblem("is not a regular expression: \(error)"))
        }
    }

    func matches(_ value: String) -> Bool {
        (try? regex.wholeMatch(in: value)) != nil
    }

    static func == (lhs: CompiledPattern, rhs: CompiledPattern) -> Bool { lhs === rhs }

    /// Why `text` is outside the patterns taken (see the type), or nil when it is inside.
    static func unsafeShape(_ text: String) -> String? {
        let characters = Array(text)
        var index = 0
        var unbounded = 0
        var atoms = 0
        func digits() -> Int? {
            var value = 0
            var count = 0
            while index < characters.count, let digit = characters[index].wholeNumberValue, characters[index].isASCII {
                value = min(value * 10 + digit, 100_000)
                count += 1
                index += 1
            }
            return count > 0 ? value : nil
        }
        while index < characters.count {
            // One atom.
            switch characters[index] {
            case "(", ")", "|": return "uses a group or | (a pattern here is characters, classes and repetitions only)"
            case "*", "+", "?", "{": return "repeats nothing at character \(index + 1)"
            case "\\":
                index += 1
                guard index < characters.count else { return "ends with \\" }
                let escaped = characters[index]
                if escaped.isNumber || escaped == "k" || escaped == "g" { return "uses a backreference" }
                index += 1
                // `\p{L}`, `\P{Lu}`, `\u{41}`, `\x{41}`: the braces belong to the escape.
                if "pPux".contains(escaped), index < characters.count, characters[index] == "{" {
                    while index < characters.count, characters[index] != "}" { index += 1 }
                    index += 1
                }
            case "[":
                index += 1
                if index < characters.count, characters[index] == "^" { index += 1 }
                if index < characters.count, characters[index] == "]" { index += 1 }
                while index < characters.count, characters[index] != "]" {
                    if characters[index] == "[" { return "nests a class in a class" }
                    index += characters[index] == "\\" ? 2 : 1
                }
                guard index < characters.count else { return "has a [ without its ]" }
                index += 1
            default:
                index += 1
            }
            atoms += 1
            // Its repetition, if any.
            guard index < characters.count else { break }
            switch characters[index] {
            case "*", "+":
                unbounded += 1
                index += 1
            case "?":
                index += 1
            case "{":
                index += 1
                guard let low = digits() else { return "has a { that is not a count" }
                var high: Int? = low
                if index < characters.count, characters[index] == "," {
                    index += 1
                    high = digits()
                }
                guard index < characters.count, characters[index] == "}" else { return "has a { that is not a count" }
                index += 1
                if let high {
                    guard low <= high, high <= maximumPatternedLength else { return "counts up to \(maximumPatternedLength) at most" }
                } else {
                    unbounded += 1
                }
            default:
                continue
            }
            // A lazy or possessive mark after a repetition changes nothing here.
            if index < characters.count, characters[index] == "?" || characters[index] == "+" { index += 1 }
        }
        if unbounded > 2 { return "has \(unbounded) unbounded repetitions (*, +, {n,}); at most 2" }
        return atoms == 0 ? "is empty" : nil
    }
}

struct PatternProblem: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

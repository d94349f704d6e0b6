import Broker
import HTTP
import JSON

/// The seed's form rules: name and phone required, at most 20 and 15 characters. Characters are counted as people
/// see them (grapheme clusters), so 山田太郎 is four, whatever its UTF-8 or UTF-16 length.
///
/// On top of the seed's rules, what is counted must also be what is shown, in a bounded number of bytes:
/// - Both fields are trimmed of leading and trailing white space (U+3000 included) before they are counted, so a
///   name of spaces is missing, as the phone page's own check (`trim()`) says. Names are stored in NFC.
/// - One character of a name holds at most ``maximumScalarsPerCharacter`` Unicode scalars: a letter with thousands of
///   combining marks is one grapheme cluster, and without this bound 20 of them are hundreds of kilobytes of text.
/// - No field holds control or format characters (Cc, Cf) or line and paragraph separators (Zl, Zp): bidi
///   overrides and isolates could reorder what the PC shows, and zero-width characters make two names look alike.
///   The one exception is U+200D ZERO WIDTH JOINER between two emoji, as in 👩‍💻 or 👨‍👩‍👧: an emoji ZWJ sequence
///   renders as one visible picture, and people put those in names. Tag characters (flags of subdivisions) and
///   ZWNJ are refused: they are invisible, and a name loses no meaning without them.
/// - A phone number is digits, an optional leading `+`, and the separators space, `-`, `(`, `)` and `.`, with at
///   least ``minimumPhoneDigits`` digits. Japanese phones often type full-width forms, so digits of any script
///   (０-９ included) become ASCII digits, and the full-width separators, U+3000 and the dashes an IME produces
///   (ー, −, ‐, –) become their ASCII forms: the stored number is ASCII.
enum SubmissionRules {
    static let maximumNameLength = 20
    static let maximumPhoneLength = 15
    /// Scalars in one character of a name: enough for 👨‍👩‍👧‍👦 (seven) and for letters with a few marks.
    static let maximumScalarsPerCharacter = 8
    static let minimumPhoneDigits = 2

    typealias FieldErrors = [(path: String, code: String, message: Message)]

    /// The submission in `body` for `form`, or every field error found, in the form's order (sessionId first).
    static func submission(from body: JSONValue, form: FormSchema) -> Result<(SessionID?, Submission), APIError> {
        guard !form.isArticleForm else { return submission(from: body) }
        var errors: FieldErrors = []
        let sessionID = sessionIDField(body["sessionId"], errors: &errors)
        var fields: [Submission.Field] = []
        for field in form.fields {
            if let value = value(of: field, in: body[field.name], errors: &errors) { fields.append(Submission.Field(field.name, value)) }
        }
        // A field the form does not have is refused: the PC would show nothing for it, so the phone would lose it.
        // Each named by its key when it looks like a field's name (a few at most); keys that do not are not echoed back:
        // one error for the body says there are some.
        if case .object(let members) = body {
            var named = 0
            var unnamed = false
            for name in members.keys.sorted() where name != "sessionId" && !form.fields.contains(where: { $0.name == name }) {
                if Submission.hasFieldNameShape(name), named < maximumUnknownFieldsNamed {
                    errors.append((name, "field_unknown", .fieldUnknown))
                    named += 1
                } else {
                    unnamed = true
                }
            }
            if unnamed { errors.append(("body", "field_unknown", .fieldUnknown)) }
        }
        guard errors.isEmpty else { return .failure(.invalidFields(errors)) }
        return .success((sessionID, Submission(fields: fields)))
    }

    /// Unknown fields named one by one in an answer, at most.
    static let maximumUnknownFieldsNamed = 8

    /// One configured field's value, checked by its type and rules; nil (with its error, or none for an empty
    /// optional field, which is left out) otherwise.
    static func value(of field: FormSchema.Field, in value: JSONValue?, errors: inout FieldErrors) -> Submission.Value? {
        let path = field.name
        let label = field.label
        if field.type == .checkbox {
            switch value {
            case nil, .null?, .bool(false)?:
                if field.required { errors.append((path, "field_must_be_checked", .fieldMustBeChecked(label))) }
                return field.required ? nil : .flag(false)
            case .bool(true)?: return .flag(true)
            default:
                errors.append((path, "field_not_boolean", .fieldNotBoolean(label)))
                return nil
            }
        }
        let raw: String
        switch value {
        case nil, .null?: raw = ""
        case .string(let text)?: raw = text
        case .integer(let number)? where field.type == .number || field.type == .tel: raw = String(number)
        // The parser gives finite doubles only; a decimal keeps its text (1.5), a large one an exponent, which
        // the number check then refuses.
        case .number(let number)? where field.type == .number: raw = number.rounded() == number && abs(number) < 1e15 ? String(Int64(number)) : String(number)
        default:
            errors.append((path, "field_not_text", .fieldNotText(label)))
            return nil
        }
        var text = normalized(trimmed(field.type == .tel || field.type == .number ? asciiPhoneForms(raw) : raw))
        if text.isEmpty {
            if field.required { errors.append((path, "field_required", .fieldRequired(label))) }
            return nil
        }
        // Bounded before any pattern runs: a pattern only ever sees a value of at most maxLength characters. A select's
        // value is one of its options, whatever their length.
        guard field.type == .select || text.count <= field.maxLength, text.unicodeScalars.count <= field.maxLength * maximumScalarsPerCharacter else {
            errors.append((path, "field_too_long", .fieldTooLong(label, maximum: field.maxLength)))
            return nil
        }
        guard firstRefusedScalar(in: text) == nil else {
            errors.append((path, "field_invalid_characters", .fieldHasControlCharacters))
            return nil
        }
        switch field.type {
        case .select:
            guard field.options.contains(where: { $0.value == text }) else {
                errors.append((path, "field_not_an_option", .fieldNotAnOption(label)))
                return nil
            }
        case .email:
            text = text.lowercasedDomain
            guard isEmailAddress(text) else {
                errors.append((path, "field_invalid_email", .fieldInvalidEmail(label)))
                return nil
            }
        case .number:
            guard isDecimalNumber(text) else {
                errors.append((path, "field_not_a_number", .fieldNotANumber(label)))
                return nil
            }
        case .tel:
            var phoneErrors: FieldErrors = []
            guard phoneShape(text, path: path, errors: &phoneErrors) else {
                errors.append((path, "field_invalid_phone", .fieldInvalidPhone(label)))
                return nil
            }
        case .text, .checkbox:
            if text.contains(where: { $0.unicodeScalars.count > maximumScalarsPerCharacter }) {
                errors.append((path, "field_character_too_complex", .fieldCharacterTooComplex(label)))
                return nil
            }
        }
        if let pattern = field.compiled, !pattern.matches(text) {
            errors.append((path, "field_pattern_mismatch", .fieldPatternMismatch(label)))
            return nil
        }
        return .text(text)
    }

    /// An e-mail address as forms check one (the WHATWG `type=email` rule): a local part of the allowed ASCII
    /// characters, `@`, and dot-separated labels of letters, digits and hyphens; at most 254 bytes.
    static func isEmailAddress(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count <= 254, let at = bytes.firstIndex(of: UInt8(ascii: "@")), at > 0, at < bytes.count - 1 else { return false }
        let local = bytes[..<at]
        let domain = bytes[(at + 1)...]
        let localAllowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!#$%&'*+/=?^_`{|}~-".utf8)
        guard local.count <= 64, local.allSatisfy({ localAllowed.contains($0) }) else { return false }
        let labels = domain.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        return labels.allSatisfy { label in
            (1...63).contains(label.count) && label.first != UInt8(ascii: "-") && label.last != UInt8(ascii: "-")
                && label.allSatisfy { ($0 | 0x20) >= UInt8(ascii: "a") && ($0 | 0x20) <= UInt8(ascii: "z") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "-") }
        }
    }

    /// A decimal number as people type one: an optional sign, digits, an optional fraction (ASCII, after
    /// ``asciiPhoneForms`` turned full-width digits into ASCII).
    static func isDecimalNumber(_ text: String) -> Bool {
        var bytes = Array(text.utf8)[...]
        if bytes.first == UInt8(ascii: "-") || bytes.first == UInt8(ascii: "+") { bytes = bytes.dropFirst() }
        let parts = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count) else { return false }
        return parts.allSatisfy { !$0.isEmpty && $0.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) } }
    }

    /// The submission in `body`, or every field error found, in the seed's order (sessionId, name, phone).
    static func submission(from body: JSONValue) -> Result<(SessionID?, Submission), APIError> {
        var errors: FieldErrors = []
        let sessionID = sessionIDField(body["sessionId"], errors: &errors)
        let name = nameField(body["name"], errors: &errors)
        let phone = phoneField(body["phone"], errors: &errors)
        guard errors.isEmpty, let name, let phone else {
            return .failure(.invalidFields(errors))
        }
        return .success((sessionID, Submission(name: name, phone: phone)))
    }

    /// The `sessionId` member of a POST body: nil with an error when missing, empty, not text or malformed.
    static func sessionIDField(_ value: JSONValue?, errors: inout FieldErrors) -> SessionID? {
        switch value {
        case nil, .null?, .string("")?:
            errors.append(("sessionId", "session_id_required", .sessionIDRequired))
            return nil
        case .string(let text)?:
            guard let id = SessionID(text) else { break }
            return id
        default:
            // A number, boolean, array or object is there, but is no ID.
            break
        }
        errors.append(("sessionId", "session_id_malformed", .sessionIDMalformed))
        return nil
    }

    /// The name, trimmed and in NFC, or nil with its error.
    static func nameField(_ value: JSONValue?, errors: inout FieldErrors) -> String? {
        guard let raw = text(of: value, path: "name", notText: .nameNotText, errors: &errors) else { return nil }
        let name = normalized(trimmed(raw))
        guard checkLength(name, path: "name", maximum: maximumNameLength, messages: (.nameRequired, .nameTooLong), errors: &errors),
            checkCharacters(name, path: "name", errors: &errors)
        else { return nil }
        if name.contains(where: { $0.unicodeScalars.count > maximumScalarsPerCharacter }) {
            errors.append(("name", "name_character_too_complex", .nameCharacterTooComplex))
            return nil
        }
        return name
    }

    /// The phone number with its digits and separators in ASCII, trimmed, or nil with its error.
    static func phoneField(_ value: JSONValue?, errors: inout FieldErrors) -> String? {
        guard let raw = text(of: value, path: "phone", notText: .phoneNotText, errors: &errors) else { return nil }
        let phone = trimmed(asciiPhoneForms(raw))
        guard checkLength(phone, path: "phone", maximum: maximumPhoneLength, messages: (.phoneRequired, .phoneTooLong), errors: &errors),
            checkCharacters(phone, path: "phone", errors: &errors), phoneShape(phone, path: "phone", errors: &errors)
        else { return nil }
        return phone
    }

    /// Whether `phone` (ASCII forms, trimmed) is digits with an optional leading `+` and the separators; its error
    /// otherwise.
    static func phoneShape(_ phone: String, path: String, errors: inout FieldErrors) -> Bool {
        var digits = 0
        // At most one pair of parentheses, in order, around an area code: `(03) 1234-5678`, not `((((12`.
        var opened = 0
        var closed = 0
        for (offset, byte) in phone.utf8.enumerated() {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digits += 1
            case UInt8(ascii: "+") where offset == 0: continue
            case UInt8(ascii: "(") where opened == 0: opened = 1
            case UInt8(ascii: ")") where opened == 1 && closed == 0: closed = 1
            case UInt8(ascii: " "), UInt8(ascii: "-"), UInt8(ascii: "."): continue
            default:
                errors.append((path, "phone_invalid_format", .phoneInvalidFormat))
                return false
            }
        }
        guard opened == closed else {
            errors.append((path, "phone_invalid_format", .phoneInvalidFormat))
            return false
        }
        guard digits >= minimumPhoneDigits else {
            errors.append((path, "phone_too_few_digits", .phoneTooFewDigits))
            return false
        }
        return true
    }

    /// The text of a field: strings as they are, numbers by their text (express-validator, which the seed used,
    /// checks numbers by their text, so a phone sent as a number works); nil with an error for anything else.
    private static func text(of value: JSONValue?, path: String, notText: Message, errors: inout FieldErrors) -> String? {
        switch value {
        case nil, .null?:
            errors.append((path, "\(path)_required", path == "name" ? .nameRequired : .phoneRequired))
            return nil
        case .string(let string)?:
            return string
        case .integer(let number)?:
            return String(number)
        case .number(let number)?:
            // The parser gives finite doubles only; whole ones below 1e15 convert to Int64 exactly.
            return number.rounded() == number && abs(number) < 1e15 ? String(Int64(number)) : String(number)
        default:
            errors.append((path, "\(path)_not_text", notText))
            return nil
        }
    }

    private static func checkLength(
        _ text: String, path: String, maximum: Int, messages: (required: Message, tooLong: Message), errors: inout FieldErrors
    ) -> Bool {
        if text.isEmpty {
            errors.append((path, "\(path)_required", messages.required))
            return false
        }
        if text.count > maximum {
            errors.append((path, "\(path)_too_long", messages.tooLong))
            return false
        }
        return true
    }

    private static func checkCharacters(_ text: String, path: String, errors: inout FieldErrors) -> Bool {
        guard firstRefusedScalar(in: text) != nil else { return true }
        errors.append((path, "\(path)_invalid_characters", .fieldHasControlCharacters))
        return false
    }

    /// The first scalar of `text` that no field may hold (see the type's comment), or nil.
    static func firstRefusedScalar(in text: String) -> Unicode.Scalar? {
        let scalars = Array(text.unicodeScalars)
        for (index, scalar) in scalars.enumerated() {
            switch scalar.properties.generalCategory {
            case .control, .lineSeparator, .paragraphSeparator, .surrogate:
                return scalar
            case .format:
                if scalar == "\u{200D}", index > 0, index + 1 < scalars.count, isEmojiPart(scalars[index - 1]), isEmoji(scalars[index + 1]) {
                    continue
                }
                return scalar
            default:
                // Invisible letters and marks that render as nothing (the combining grapheme joiner, the Hangul
                // fillers) would let two different names look the same.
                if invisibleScalars.contains(scalar.value) { return scalar }
                continue
            }
        }
        return nil
    }

    /// Scalars outside the control and format categories that show nothing.
    private static let invisibleScalars: Set<UInt32> = [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0]

    /// An emoji that can start or continue a ZWJ sequence. ASCII digits, `#` and `*` count as emoji in Unicode
    /// (keycaps), but a joiner between them is no picture.
    private static func isEmoji(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value > 0x7F && scalar.properties.isEmoji
    }

    /// What may come right before a joiner in an emoji sequence: an emoji, a skin tone, or the emoji presentation
    /// selector U+FE0F (as in 🏳️‍🌈).
    private static func isEmojiPart(_ scalar: Unicode.Scalar) -> Bool {
        isEmoji(scalar) || scalar.properties.isEmojiModifier || scalar == "\u{FE0F}"
    }

    /// `text` without leading and trailing white space (Unicode White_Space: spaces, U+3000, line breaks).
    static func trimmed(_ text: String) -> String {
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        if first == scalars.startIndex, scalars.index(after: last) == scalars.endIndex { return text }
        return String(scalars[first...last])
    }

    /// `text` in Unicode Normalization Form C, so that a name typed with combining marks and the same name typed
    /// precomposed are stored, counted and shown alike. The standard library's own NFC (what String comparison
    /// uses): Foundation's would bring ICU into the binary.
    static func normalized(_ text: String) -> String {
        if text.utf8.allSatisfy({ $0 < 0x80 }) { return text }
        return String(decoding: text._nfcCodeUnits, as: UTF8.self)
    }

    /// Digits of every script as ASCII digits, and the full-width and IME forms of the phone separators as ASCII.
    static func asciiPhoneForms(_ text: String) -> String {
        guard !text.utf8.allSatisfy({ $0 < 0x80 }) else { return text }
        var result = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0xFF0B: result.append("+")
            case 0xFF08: result.append("(")
            case 0xFF09: result.append(")")
            case 0xFF0E: result.append(".")
            case 0x3000: result.append(" ")
            // Full-width hyphen-minus, hyphen, non-breaking hyphen, figure dash, en dash, minus sign, and the
            // prolonged sound marks (ー, ｰ) that Japanese IMEs give for "-".
            case 0xFF0D, 0x2010, 0x2011, 0x2012, 0x2013, 0x2212, 0x30FC, 0xFF70: result.append("-")
            default:
                if scalar.properties.generalCategory == .decimalNumber, let value = scalar.properties.numericValue,
                    (0...9).contains(value)
                {
                    result.append(Unicode.Scalar(UInt8(ascii: "0") + UInt8(value)))
                } else {
                    result.append(scalar)
                }
            }
        }
        return String(result)
    }
}

extension String {
    /// An e-mail address with its domain in lower case (domains are case-insensitive; the local part may not be).
    fileprivate var lowercasedDomain: String {
        guard let at = lastIndex(of: "@") else { return self }
        return String(self[..<at]) + self[at...].lowercased()
    }
}

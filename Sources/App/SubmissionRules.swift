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
            checkCharacters(phone, path: "phone", errors: &errors)
        else { return nil }
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
                errors.append(("phone", "phone_invalid_format", .phoneInvalidFormat))
                return nil
            }
        }
        guard opened == closed else {
            errors.append(("phone", "phone_invalid_format", .phoneInvalidFormat))
            return nil
        }
        guard digits >= minimumPhoneDigits else {
            errors.append(("phone", "phone_too_few_digits", .phoneTooFewDigits))
            return nil
        }
        return phone
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

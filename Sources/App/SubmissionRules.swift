import Broker
import HTTP

/// The seed's form rules: name and phone required, at most 20 and 15 characters. Characters are counted as people
/// see them (grapheme clusters), so 山田太郎 is four, whatever its UTF-8 or UTF-16 length.
enum SubmissionRules {
    static let maximumNameLength = 20
    static let maximumPhoneLength = 15

    /// The submission in `body`, or every field error found, in the seed's order (sessionId, name, phone).
    static func submission(from body: JSONValue) -> Result<(SessionID?, Submission), APIError> {
        var errors: [(path: String, code: String, message: Message)] = []
        let sessionID = sessionIDField(body["sessionId"], errors: &errors)
        let name = textField(
            body["name"], path: "name", maximumLength: maximumNameLength,
            messages: (.nameRequired, .nameTooLong, .nameNotText), errors: &errors)
        let phone = textField(
            body["phone"], path: "phone", maximumLength: maximumPhoneLength,
            messages: (.phoneRequired, .phoneTooLong, .phoneNotText), errors: &errors)
        guard errors.isEmpty, let name, let phone else {
            return .failure(.invalidFields(errors))
        }
        return .success((sessionID, Submission(name: name, phone: phone)))
    }

    /// The `sessionId` member of a POST body: nil with an error when missing, empty or malformed.
    static func sessionIDField(_ value: JSONValue?, errors: inout [(path: String, code: String, message: Message)]) -> SessionID? {
        guard case .string(let text)? = value, !text.isEmpty else {
            errors.append(("sessionId", "session_id_required", .sessionIDRequired))
            return nil
        }
        guard let id = SessionID(text) else {
            errors.append(("sessionId", "session_id_malformed", .sessionIDMalformed))
            return nil
        }
        return id
    }

    private static func textField(
        _ value: JSONValue?,
        path: String,
        maximumLength: Int,
        messages: (required: Message, tooLong: Message, notText: Message),
        errors: inout [(path: String, code: String, message: Message)]
    ) -> String? {
        let text: String
        switch value {
        case nil, .null?:
            errors.append((path, "\(path)_required", messages.required))
            return nil
        case .string(let string)?:
            text = string
        case .integer(let number)?:
            text = String(number)
        case .number(let number)?:
            // express-validator, which the seed used, checks numbers by their text; a phone sent as a number works.
            text = number.rounded() == number && abs(number) < 1e15 ? String(Int64(number)) : String(number)
        default:
            errors.append((path, "\(path)_not_text", messages.notText))
            return nil
        }
        if text.isEmpty {
            errors.append((path, "\(path)_required", messages.required))
            return nil
        }
        if text.count > maximumLength {
            errors.append((path, "\(path)_too_long", messages.tooLong))
            return nil
        }
        // Line breaks, NUL and other control characters have no place in a name or phone number.
        if text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            errors.append((path, "\(path)_invalid_characters", .fieldHasControlCharacters))
            return nil
        }
        return text
    }
}

import Foundation

/// JSON as the tests read it back, decoded with Foundation's JSONDecoder.
enum JSONAny: Equatable, CustomStringConvertible, Decodable {
    case string(String), number(Double), bool(Bool), null, array([JSONAny]), object([String: JSONAny])

    struct NotAnObject: Error {
        var text: String
    }

    static func object(from text: String) throws -> [String: JSONAny] {
        guard case .object(let members) = try JSONDecoder().decode(JSONAny.self, from: Data(text.utf8)) else {
            throw NotAnObject(text: text)
        }
        return members
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONAny].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONAny].self))
        }
    }

    var string: String? { if case .string(let value) = self { value } else { nil } }
    var number: Double? { if case .number(let value) = self { value } else { nil } }
    var bool: Bool? { if case .bool(let value) = self { value } else { nil } }
    var array: [JSONAny]? { if case .array(let value) = self { value } else { nil } }
    subscript(key: String) -> JSONAny? { if case .object(let members) = self { members[key] } else { nil } }

    var description: String {
        switch self {
        case .string(let value): "\"\(value)\""
        case .number(let value): "\(value)"
        case .bool(let value): "\(value)"
        case .null: "null"
        case .array(let value): "\(value)"
        case .object(let value): "\(value)"
        }
    }
}

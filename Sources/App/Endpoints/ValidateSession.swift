import Broker
import HTTP
import Logging
import NIOHTTP1

extension API {
    /// `GET /api/validate-session?session=ID`: whether the phone's session is usable. The first successful call
    /// announces the phone to the main device (`connected`); the phone's later polls only check.
    @Sendable func validateSession(_ request: Request, logger: Logger) async throws -> Response {
        let id = try sessionIDQuery(of: request, shape: .validation)
        guard let record = try await broker.publish(.connected, to: id).record else {
            throw APIError.sessionNotFound(.validation)
        }
        let language = request.language(default: configuration.defaultLanguage)
        return .json(
            JSONValue.object([
                "valid": .bool(true),
                "message": .string(Message.sessionValid.text(in: language)),
                "expiryTime": .integer(record.expiresAt),
                "ttlMinutes": ttlMinutes,
            ]))
    }
}

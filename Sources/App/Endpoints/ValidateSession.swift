import Broker
import HTTP
import Logging
import NIOHTTP1

extension API {
    /// `GET /api/validate-session?session=ID`: whether the phone's session is usable. The first successful call
    /// announces the phone to the main device (`connected`); the phone's later polls only check.
    ///
    /// As the article meant it: 404 when the PC is gone (past the grace; the session is cancelled then, in the same
    /// step) or ended the session, or the session expired or never was; 409 once it is completed, so a second phone
    /// learns before it types.
    @Sendable func validateSession(_ request: Request, logger: Logger) async throws -> Response {
        let id = try sessionIDQuery(of: request, shape: .validation)
        let record: SessionRecord
        switch try await broker.publish(.connected, to: id) {
        case .sessionNotFound: throw APIError.sessionNotFound(.validation)
        case .cancelled: throw APIError.sessionCancelled(.validation)
        case .alreadyCompleted: throw APIError.alreadySubmittedValidation
        case .published(_, let current), .unchanged(let current): record = current
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

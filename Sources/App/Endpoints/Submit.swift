import Broker
import HTTP
import Logging
import NIOHTTP1

extension API {
    /// `POST /api/submit` `{"sessionId","name","phone"}`: stores the form and tells the main device (`complete`).
    /// A session takes one submission; a second gets 409 and changes nothing.
    @Sendable func submit(_ request: Request, logger: Logger) async throws -> Response {
        let body = try jsonObject(of: request)
        let (sessionID, submission) = try SubmissionRules.submission(from: body).get()
        guard let id = sessionID else { throw APIError.missingSessionID(.action) }
        switch try await broker.publish(.complete(submission), to: id) {
        case .sessionNotFound: throw APIError.sessionNotFound(.action)
        case .alreadyCompleted, .unchanged: throw APIError.alreadySubmitted
        case .published:
            let language = request.language(default: configuration.defaultLanguage)
            return .json(JSONValue.object(["success": .bool(true), "message": .string(Message.submitted.text(in: language))]))
        }
    }
}

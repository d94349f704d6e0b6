import Broker
import HTTP
import JSON
import Logging
import NIOHTTP1

extension API {
    /// `POST /api/input-started` `{"sessionId"}`: the phone started typing. Only the phone that claimed the session
    /// (409 `already_claimed` for any other); the first phone step of an article-made session claims it.
    /// With an `Idempotency-Key`, a retry of the call that moved the session to `inputting` gets its original 200
    /// even after the session was completed.
    @Sendable func inputStarted(_ request: Request, logger: Logger) async throws -> Response {
        let key = try Self.idempotencyKey(of: request)
        let body = try jsonObject(of: request)
        let id = try sessionIDField(of: body)
        let (outcome, claim) = try await publishPhoneStep(.inputStarted, to: id, request: request, mayClaim: !id.isServerMade, idempotencyKey: key)
        switch outcome {
        case .sessionNotFound: throw APIError.sessionNotFound(.action)
        case .cancelled: throw APIError.sessionCancelled(.action)
        case .claimedByAnother: throw APIError.alreadyClaimed(.action)
        case .notClaimed: throw APIError.qrStale(.action)
        case .alreadyCompleted(let record) where !Self.isClaimant(request, of: record): throw APIError.alreadyClaimed(.action)
        case .alreadyCompleted(let record) where key != nil && record.idempotencyKeys[.inputting] == key: return Self.inputStartedResponse
        case .alreadyCompleted: throw APIError.alreadySubmitted
        case .published, .unchanged:
            return settingPhoneCookie(Self.inputStartedResponse, claim: claim, session: outcome.summary, request: request)
        }
    }

    /// Always the same answer, so it is made once.
    private static let inputStartedResponse = Response.json(JSONValue.object(["success": .bool(true)]))
}

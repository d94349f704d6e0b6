import Broker
import HTTP
import Logging
import NIOHTTP1

extension API {
    /// `POST /api/input-started` `{"sessionId"}`: the phone started typing.
    /// With an `Idempotency-Key`, a retry of the call that moved the session to `inputting` gets its original 200
    /// even after the session was completed.
    @Sendable func inputStarted(_ request: Request, logger: Logger) async throws -> Response {
        let key = try Self.idempotencyKey(of: request)
        let body = try jsonObject(of: request)
        let id = try sessionIDField(of: body)
        switch try await broker.publish(.inputStarted, to: id, idempotencyKey: key) {
        case .sessionNotFound: throw APIError.sessionNotFound(.action)
        case .cancelled: throw APIError.sessionCancelled(.action)
        case .alreadyCompleted(let record) where key != nil && record.idempotencyKeys[.inputting] == key: return Self.inputStartedResponse
        case .alreadyCompleted: throw APIError.alreadySubmitted
        case .published, .unchanged: return Self.inputStartedResponse
        }
    }

    /// Always the same answer, so it is made once.
    private static let inputStartedResponse = Response.json(JSONValue.object(["success": .bool(true)]))
}

import Broker
import HTTP
import Logging
import NIOHTTP1

extension API {
    /// `POST /api/cancel` `{"sessionId"}` (or `?session=ID`): the PC ends its session, when it starts a new one or its
    /// page goes away. Only the PC may: the reader key (its cookie) is required. The phone learns it at its next call
    /// (404 `session_cancelled`, the article's "invalid session") and on the stream, as a `cancelled` event.
    ///
    /// Cancelling twice is a success; a completed session cannot be cancelled (409).
    @Sendable func cancel(_ request: Request, logger: Logger) async throws -> Response {
        let id: SessionID
        if request.query("session") != nil {
            id = try sessionIDQuery(of: request, shape: .action)
        } else {
            id = try sessionIDField(of: jsonObject(of: request))
        }
        guard let record = try await broker.session(id) else { throw APIError.sessionNotFound(.action) }
        guard let readerKey = record.readerKey, constantTimeEquals(request.cookie(Self.readerCookieName(of: id)) ?? "", readerKey) else {
            throw APIError.readerKeyRequired
        }
        switch try await broker.publish(.cancelled(.pcCancelled), to: id) {
        case .sessionNotFound: throw APIError.sessionNotFound(.action)
        case .alreadyCompleted: throw APIError.alreadySubmitted
        case .published, .cancelled, .unchanged: return Self.cancelledResponse
        }
    }

    private static let cancelledResponse = Response.json(JSONValue.object(["success": .bool(true)]))
}

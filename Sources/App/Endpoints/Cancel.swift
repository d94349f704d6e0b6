import Broker
import HTTP
import JSON
import Logging
import NIOCore
import NIOHTTP1

extension API {
    /// `POST /api/cancel` `{"sessionId"}` (or `?session=ID`): the PC ends its session, when it starts a new one or its
    /// page goes away. Only the PC may: the reader key (its cookie, or `?key=`) is required. The phone learns it at its next call
    /// (404 `session_cancelled`, the article's "invalid session") and on the stream, as a `cancelled` event.
    ///
    /// `reason=not-my-phone` (or `"reason"` in the body): the PC's user says the phone that claimed the session is
    /// not theirs; the session is cancelled with reason `phone-rejected`, and that phone is told so.
    ///
    /// Cancelling twice is a success; a completed session cannot be cancelled (409).
    @Sendable func cancel(_ request: Request, logger: Logger) async throws -> Response {
        let id: SessionID
        var reasonText = request.query("reason")
        // A JSON body, when there is one, is read whichever place the ID comes from, so a reason in it is never
        // ignored. With the ID in the query, a body that is not JSON (`navigator.sendBeacon(url, data)` sends
        // text/plain) is not read: the query says everything.
        let idInQuery = request.queryNames("session")
        let body = !idInQuery || (request.body.readableBytes > 0 && request.hasMediaType("application/json")) ? try jsonObject(of: request) : nil
        if idInQuery {
            id = try sessionIDQuery(of: request, shape: .action)
        } else {
            id = try sessionIDField(of: body ?? .object([:]))
        }
        switch body?["reason"] {
        case nil, .null?: break
        case .string(let text)?:
            // Two reasons that disagree are not guessed between.
            guard reasonText == nil || reasonText == text else { throw APIError.cancelReasonInvalid }
            reasonText = text
        default: throw APIError.cancelReasonInvalid
        }
        let reason: CancelReason
        switch reasonText {
        case nil: reason = .pcCancelled
        case "not-my-phone"?: reason = .phoneRejected
        default: throw APIError.cancelReasonInvalid
        }
        guard let record = try await broker.session(id) else { throw APIError.sessionNotFound(.action) }
        guard let readerKey = record.readerKey, Self.presentsReaderKey(request, of: id, readerKey: readerKey) else {
            throw APIError.readerKeyRequired
        }
        switch try await broker.publish(.cancelled(reason), to: id) {
        case .sessionNotFound: throw APIError.sessionNotFound(.action)
        case .alreadyCompleted: throw APIError.alreadySubmitted
        case .published, .cancelled, .unchanged, .claimedByAnother, .notClaimed: return Self.cancelledResponse
        }
    }

    private static let cancelledResponse = Response.json(JSONValue.object(["success": .bool(true)]))
}

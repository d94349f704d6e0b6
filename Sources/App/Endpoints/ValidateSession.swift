import Broker
import HTTP
import JSON
import Logging
import NIOHTTP1

extension API {
    /// `GET /api/validate-session?session=ID[&t=TOKEN]`: whether the phone's session is usable. The first successful
    /// call claims the session for this phone (first scan wins: the answer sets the phone key cookie and carries the
    /// pairing code) and announces the phone to the main device (`connected`); the phone's later calls only check.
    ///
    /// As the article meant it: 404 when the PC is gone (past the grace; the session is cancelled then, in the same
    /// step) or ended the session, or the session expired or never was; 409 once it is completed, so a second phone
    /// learns before it types, and 409 `already_claimed` to any device but the one that claimed it. A server-made
    /// session is claimed only with a good QR token (`t`): 410 `qr_stale` otherwise.
    @Sendable func validateSession(_ request: Request, logger: Logger) async throws -> Response {
        let id = try sessionIDQuery(of: request, shape: .validation)
        var (outcome, claim) = try await publishPhoneStep(.connected(), to: id, request: request, mayClaim: !id.isServerMade, idempotencyKey: nil)
        if case .notClaimed(let record) = outcome {
            // Nobody claimed this server-made session yet: the phone must show a QR token the PC made lately.
            guard QRToken.isGood(request.query("t"), for: id, readerKey: record.readerKey, now: time.now() / 1000, lifetime: qrTokenLifetime) else {
                throw APIError.qrStale(.validation)
            }
            claim = Self.freshClaim(mayClaim: true)
            outcome = try await broker.publish(.connected(), to: id, from: claim, idempotencyKey: nil)
        }
        let session: SessionSummary
        switch outcome {
        case .sessionNotFound: throw APIError.sessionNotFound(.validation)
        case .cancelled: throw APIError.sessionCancelled(.validation)
        case .alreadyCompleted(let current):
            throw Self.isClaimant(request, of: current) ? APIError.alreadySubmittedValidation : APIError.alreadyClaimed(.validation)
        case .claimedByAnother: throw APIError.alreadyClaimed(.validation)
        case .notClaimed: throw APIError.qrStale(.validation)
        case .published(_, let current): session = current
        case .unchanged(let current): session = current
        }
        let language = request.language(default: configuration.defaultLanguage)
        var body: [String: JSONValue] = [
            "valid": .bool(true),
            "message": .string(Message.sessionValid.text(in: language)),
            "expiryTime": .integer(session.expiresAt),
            "serverTime": .integer(time.now()),
            "ttlMinutes": ttlMinutes,
        ]
        if let code = session.pairingCode { body["pairingCode"] = .string(code) }
        var response = Response.json(JSONValue.object(body))
        response.headers.add(name: "Cache-Control", value: "no-store")
        return settingPhoneCookie(response, claim: claim, session: session, request: request)
    }
}

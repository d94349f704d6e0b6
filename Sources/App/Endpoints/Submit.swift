import Broker
import HTTP
import JSON
import Logging
import NIOHTTP1

extension API {
    /// `POST /api/submit` `{"sessionId","name","phone"}`: stores the form and tells the main device (`complete`).
    /// A session takes one submission; a different second one gets 409 and changes nothing. The same submission again
    /// gets 200: it is the phone retrying after an answer it never saw (a dropped connection, a 503 while Redis
    /// stalled but still stored it), and the PC has it.
    ///
    /// With an `Idempotency-Key`, a retry is recognised by its key: the same key and body get the original 200, the
    /// same key with a different body 422 `idempotency_key_reused`.
    ///
    /// Only the phone that claimed the session (409 `already_claimed` for any other); the first phone step of an
    /// article-made session claims it.
    @Sendable func submit(_ request: Request, logger: Logger) async throws -> Response {
        let key = try Self.idempotencyKey(of: request)
        let body = try jsonObject(of: request)
        let (sessionID, submission) = try SubmissionRules.submission(from: body, form: configuration.form).get()
        guard let id = sessionID else { throw APIError.missingSessionID(.action) }
        let (outcome, claim) = try await publishPhoneStep(.complete(submission), to: id, request: request, mayClaim: !id.isServerMade, idempotencyKey: key)
        switch outcome {
        case .sessionNotFound: throw APIError.sessionNotFound(.action)
        case .cancelled: throw APIError.sessionCancelled(.action)
        case .claimedByAnother: throw APIError.alreadyClaimed(.action)
        case .notClaimed: throw APIError.qrStale(.action)
        case .alreadyCompleted(let record) where !Self.isClaimant(request, of: record): throw APIError.alreadyClaimed(.action)
        case .alreadyCompleted(let record) where key != nil && record.idempotencyKeys[.completed] == key:
            guard record.submission == submission else { throw APIError.idempotencyKeyReused }
        case .alreadyCompleted(let record) where record.submission == submission: break
        case .alreadyCompleted, .unchanged: throw APIError.alreadySubmitted
        case .published: break
        }
        let response =
            switch request.language(default: configuration.defaultLanguage) {
            case .japanese: Self.submittedInJapanese
            case .english: Self.submittedInEnglish
            }
        return settingPhoneCookie(response, claim: claim, session: outcome.summary, request: request)
    }

    /// The success answers, one per language, made once.
    private static let submittedInJapanese = submitted(in: .japanese)
    private static let submittedInEnglish = submitted(in: .english)

    private static func submitted(in language: Language) -> Response {
        .json(JSONValue.object(["success": .bool(true), "message": .string(Message.submitted.text(in: language))]))
    }
}

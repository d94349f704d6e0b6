import HTTP
import JSON
import NIOHTTP1

/// Every failure an endpoint answers, in one place: its HTTP status, its stable machine-readable `code`, its
/// message (Japanese or English by `Accept-Language`) and the JSON shape of the endpoint that answers it.
struct APIError: HTTPResponseError, Equatable {
    /// The JSON shape of the error body.
    enum Shape: Sendable, Equatable {
        /// `{"valid":false,"message","code"}`: `validate-session`.
        case validation
        /// `{"success":false,"message","code"}` (plus `errors` for field errors): the POST endpoints and the rest.
        case action
    }

    var status: HTTPResponseStatus
    var code: String
    var message: Message
    var shape: Shape = .action
    /// Field errors, first one first; the first one's message is also the top-level `message`, as in the seed.
    var fieldErrors: [(path: String, code: String, message: Message)] = []

    static func missingSessionID(_ shape: Shape) -> APIError {
        APIError(status: .badRequest, code: "session_id_required", message: shape == .validation ? .sessionIDMissing : .sessionIDRequired, shape: shape)
    }
    static func malformedSessionID(_ shape: Shape) -> APIError {
        APIError(status: .badRequest, code: "session_id_malformed", message: .sessionIDMalformed, shape: shape)
    }
    static func sessionNotFound(_ shape: Shape) -> APIError {
        APIError(status: .notFound, code: "session_not_found", message: shape == .validation ? .sessionInvalid : .sessionNotFound, shape: shape)
    }
    /// The session was cancelled: its PC ended it or has been gone past the grace. The phone is told the article's
    /// "invalid session" words: the QR code screen was refreshed (or closed).
    static func sessionCancelled(_ shape: Shape) -> APIError {
        APIError(status: .notFound, code: "session_cancelled", message: .sessionInvalid, shape: shape)
    }
    /// `validate-session` of a completed session: the phone learns before it types.
    static let alreadySubmittedValidation = APIError(status: .conflict, code: "already_submitted", message: .alreadySubmitted, shape: .validation)
    /// Another device claimed the session first (first scan wins); nothing changed.
    static func alreadyClaimed(_ shape: Shape) -> APIError {
        APIError(status: .conflict, code: "already_claimed", message: .alreadyClaimed, shape: shape)
    }
    /// A server-made session's QR token is missing, malformed or older than its lifetime: a photo of an old code.
    static func qrStale(_ shape: Shape) -> APIError {
        APIError(status: .gone, code: "qr_stale", message: .qrStale, shape: shape)
    }
    /// The phone's channel of a session that no phone claimed yet.
    static let phoneKeyRequired = APIError(status: .forbidden, code: "phone_key_required", message: .phoneKeyRequired)
    static let cancelReasonInvalid = APIError(status: .badRequest, code: "reason_invalid", message: .cancelReasonInvalid)
    static let readerKeyRequired = APIError(status: .forbidden, code: "reader_key_required", message: .readerKeyRequired)
    static func tooManyRequests(_ shape: Shape) -> APIError {
        APIError(status: .tooManyRequests, code: "rate_limited", message: .tooManyRequests, shape: shape)
    }
    static let alreadySubmitted = APIError(status: .conflict, code: "already_submitted", message: .alreadySubmitted)
    static let malformedJSON = APIError(status: .badRequest, code: "malformed_json", message: .malformedJSON)
    static let bodyNotObject = APIError(status: .badRequest, code: "body_not_object", message: .bodyNotObject)
    static let unsupportedMediaType = APIError(status: .unsupportedMediaType, code: "unsupported_media_type", message: .unsupportedMediaType)
    static let notFound = APIError(status: .notFound, code: "not_found", message: .notFound)
    static let methodNotAllowed = APIError(status: .methodNotAllowed, code: "method_not_allowed", message: .methodNotAllowed)
    static let serverError = APIError(status: .internalServerError, code: "server_error", message: .serverError)
    static func serviceUnavailable(_ shape: Shape) -> APIError {
        APIError(status: .serviceUnavailable, code: "service_unavailable", message: .serviceUnavailable, shape: shape)
    }
    static func invalidFields(_ errors: [(path: String, code: String, message: Message)]) -> APIError {
        APIError(status: .badRequest, code: errors.first?.code ?? "validation_failed", message: errors.first?.message ?? .serverError, fieldErrors: errors)
    }
    /// The operators' page without its token, or with a wrong one (both look the same to the caller).
    static let opsTokenRequired = APIError(status: .unauthorized, code: "ops_token_required", message: .opsTokenRequired)
    /// A state-changing request from a page of another site (CSRF), refused before it changes anything.
    static let crossSiteRequest = APIError(status: .forbidden, code: "cross_site_request", message: .crossSiteRequest)
    static let idempotencyKeyInvalid = APIError(status: .badRequest, code: "idempotency_key_invalid", message: .idempotencyKeyInvalid)
    /// The same `Idempotency-Key` with a different body (RFC draft "The Idempotency-Key HTTP Header Field": 422).
    static let idempotencyKeyReused = APIError(status: .unprocessableEntity, code: "idempotency_key_reused", message: .idempotencyKeyReused)

    /// The response in the request's language; Japanese, the seed's language, when it names none we have.
    func response(for request: Request) -> Response {
        response(for: request, defaultLanguage: .japanese)
    }

    func response(for request: Request, defaultLanguage: Language) -> Response {
        response(in: request.language(default: defaultLanguage))
    }

    /// The response in `language` (for a request whose headers could not be read).
    func response(in language: Language) -> Response {
        var body: [String: JSONValue] = [
            "code": .string(code),
            "message": .string(message.text(in: language)),
        ]
        switch shape {
        case .validation: body["valid"] = .bool(false)
        case .action: body["success"] = .bool(false)
        }
        if !fieldErrors.isEmpty {
            body["errors"] = .array(
                fieldErrors.map { error in
                    .object([
                        "type": .string("field"), "location": .string("body"), "path": .string(error.path),
                        "code": .string(error.code), "msg": .string(error.message.text(in: language)),
                    ])
                })
        }
        return .json(JSONValue.object(body), status: status)
    }

    static func == (lhs: APIError, rhs: APIError) -> Bool {
        lhs.status == rhs.status && lhs.code == rhs.code && lhs.shape == rhs.shape
            && lhs.fieldErrors.map(\.code) == rhs.fieldErrors.map(\.code)
    }
}

extension Request {
    /// The language for this request's messages, set by `Accept-Language`, else `fallback`.
    func language(default fallback: Language) -> Language {
        Language.preferred(byAcceptLanguage: headers.first(name: "accept-language"), fallback: fallback)
    }
}

extension APIError {
    /// A request the HTTP layer refused before routing: its status and code are the refusal's, its words ours.
    init(_ refusal: HTTPRefusal) {
        let message: Message =
            switch refusal {
            case .malformed: .malformedRequest
            case .headersTooLarge: .headersTooLarge
            case .unsupportedVersion: .httpVersionNotSupported
            case .unsupportedTransferCoding: .transferCodingNotImplemented
            case .timedOut: .requestTimeout
            case .bodyTooLarge: .bodyTooLarge
            }
        self.init(status: refusal.status, code: refusal.code, message: message)
    }
}

import NIOCore
import NIOHTTP1

/// Why the server refused a request before any route saw it. Each refusal has its status and stable `code` here;
/// the responder words the answer (``HTTPResponder/refused(_:request:)``), so these answers speak the language of
/// every other answer.
public enum HTTPRefusal: Sendable, Equatable, CaseIterable {
    /// Not valid HTTP/1.x.
    case malformed
    /// The request line and headers are over the limit, or there are too many headers.
    case headersTooLarge
    /// A major version other than 1.
    case unsupportedVersion
    /// A transfer coding other than `chunked`.
    case unsupportedTransferCoding
    /// The request did not arrive whole in time.
    case timedOut
    /// The body is over the limit (its head was read: the responder sees that request).
    case bodyTooLarge

    public var status: HTTPResponseStatus {
        switch self {
        case .malformed: .badRequest
        case .headersTooLarge: .requestHeaderFieldsTooLarge
        case .unsupportedVersion: .httpVersionNotSupported
        case .unsupportedTransferCoding: .notImplemented
        case .timedOut: .requestTimeout
        case .bodyTooLarge: .payloadTooLarge
        }
    }

    /// The stable machine-readable code of the answer's `code` field.
    public var code: String {
        switch self {
        case .malformed: "malformed_request"
        case .headersTooLarge: "headers_too_large"
        case .unsupportedVersion: "http_version_not_supported"
        case .unsupportedTransferCoding: "transfer_coding_not_implemented"
        case .timedOut: "request_timeout"
        case .bodyTooLarge: "body_too_large"
        }
    }

    /// English wording, for a responder that words nothing itself.
    public var defaultMessage: String {
        switch self {
        case .malformed: "The request is not valid HTTP/1.1."
        case .headersTooLarge: "Request headers are too large."
        case .unsupportedVersion: "Only HTTP/1.0 and HTTP/1.1 are served."
        case .unsupportedTransferCoding: "Only the chunked transfer coding is accepted."
        case .timedOut: "The request did not arrive in time."
        case .bodyTooLarge: "The request body is too large."
        }
    }

    init(_ error: HTTP1ParseError) {
        switch error {
        case .malformed: self = .malformed
        case .headTooLarge: self = .headersTooLarge
        case .unsupportedVersion: self = .unsupportedVersion
        case .unsupportedTransferCoding: self = .unsupportedTransferCoding
        }
    }

    /// `{"code","message","success":false}` with ``defaultMessage``.
    public var defaultResponse: Response {
        Response(
            status: status, contentType: "application/json; charset=utf-8",
            body: ByteBuffer(string: #"{"code":"\#(code)","message":"\#(defaultMessage)","success":false}"#))
    }
}

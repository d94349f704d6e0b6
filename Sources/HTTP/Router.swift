import Logging
import NIOCore
import NIOHTTP1

/// Answers requests. The server calls it once per request; it must not throw, so errors are turned into responses here.
public protocol HTTPResponder: Sendable {
    func respond(to request: Request, logger: Logger) async -> Response
    /// The 413 answer for a request whose body is over the limit (`request.body` is empty: it was never read).
    func bodyTooLarge(_ request: Request) -> Response
}

extension HTTPResponder {
    public func bodyTooLarge(_ request: Request) -> Response {
        Response(
            status: .payloadTooLarge,
            contentType: "application/json; charset=utf-8",
            body: ByteBuffer(string: #"{"code":"body_too_large","message":"The request body is too large."}"#)
        )
    }
}

/// Routes by method and exact path; answers 404 for unknown paths and 405 (with `Allow`) for a known path with an
/// unsupported method. `HEAD` is served by the `GET` route. Thrown ``HTTPResponseError``s become their response,
/// anything else a logged 500.
public struct Router: HTTPResponder {
    public typealias Handler = @Sendable (Request, Logger) async throws -> Response

    private var routes: [String: [String: Handler]] = [:]  // path → method → handler
    private var fallback: Handler?
    private var notFound: @Sendable (Request) -> Response
    private var methodNotAllowed: @Sendable (Request, [HTTPMethod]) -> Response
    private var internalError: @Sendable (Request) -> Response
    private var payloadTooLarge: (@Sendable (Request) -> Response)?

    /// - Parameters:
    ///   - notFound: the response for a path no route or fallback serves.
    ///   - methodNotAllowed: the response for a known path and another method; `Allow` is added here.
    ///   - internalError: the response for an error that is not an ``HTTPResponseError``.
    ///   - bodyTooLarge: the response for a body over the server's limit; a generic JSON 413 when nil.
    public init(
        notFound: @escaping @Sendable (Request) -> Response,
        methodNotAllowed: @escaping @Sendable (Request, [HTTPMethod]) -> Response,
        internalError: @escaping @Sendable (Request) -> Response,
        bodyTooLarge: (@Sendable (Request) -> Response)? = nil
    ) {
        self.notFound = notFound
        self.methodNotAllowed = methodNotAllowed
        self.internalError = internalError
        self.payloadTooLarge = bodyTooLarge
    }

    public func bodyTooLarge(_ request: Request) -> Response {
        var response = payloadTooLarge?(request) ?? Response(
            status: .payloadTooLarge,
            contentType: "application/json; charset=utf-8",
            body: ByteBuffer(string: #"{"code":"body_too_large","message":"The request body is too large."}"#)
        )
        response.status = .payloadTooLarge
        return response
    }

    /// Adds a route for `method` on exactly `path`.
    public mutating func on(_ method: HTTPMethod, _ path: String, _ handler: @escaping Handler) {
        routes[path, default: [:]][method.rawValue] = handler
    }

    /// Serves `GET`/`HEAD` requests that no route matched (static files); it throws or returns 404 when it has nothing.
    public mutating func fallback(_ handler: @escaping Handler) {
        fallback = handler
    }

    public func respond(to request: Request, logger: Logger) async -> Response {
        do {
            return try await route(request, logger: logger)
        } catch let error as any HTTPResponseError {
            return error.response(for: request)
        } catch {
            logger.error("request failed", metadata: ["error": "\(String(reflecting: error))"])
            return internalError(request)
        }
    }

    private func route(_ request: Request, logger: Logger) async throws -> Response {
        let method = request.method == .HEAD ? .GET : request.method
        if let methods = routes[String(request.path)] {
            if let handler = methods[method.rawValue] {
                return try await handler(request, logger)
            }
            let allowed = methods.keys.sorted().map { HTTPMethod(rawValue: $0) }
            var response = methodNotAllowed(request, allowed)
            let allow = (methods["GET"] != nil ? methods.keys.sorted() + ["HEAD"] : methods.keys.sorted()).joined(separator: ", ")
            response.headers.replaceOrAdd(name: "Allow", value: allow)
            return response
        }
        if method == .GET, let fallback {
            return try await fallback(request, logger)
        }
        return notFound(request)
    }
}

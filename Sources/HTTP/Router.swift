import CoreMetrics
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// Answers requests. The server calls it once per request; it must not throw, so errors are turned into responses here.
public protocol HTTPResponder: Sendable {
    func respond(to request: Request, logger: Logger) async -> Response
    /// The answer to a request refused before routing: `request` is the refused request when its head was read (a
    /// body over the limit: `request.body` is empty, it was never read), nil when nothing of it could be parsed.
    /// The status is the refusal's whatever the response says.
    func refused(_ refusal: HTTPRefusal, request: Request?) -> Response
}

extension HTTPResponder {
    public func refused(_ refusal: HTTPRefusal, request: Request?) -> Response { refusal.defaultResponse }
}

/// Routes by method and exact path; answers 404 for unknown paths and 405 (with `Allow`) for a known path with an
/// unsupported method. `HEAD` is served by the `GET` route. Thrown ``HTTPResponseError``s become their response,
/// anything else a logged 500.
public struct Router: HTTPResponder {
    public typealias Handler = @Sendable (Request, Logger) async throws -> Response

    private var routes: [String: [String: Handler]] = [:]  // path → method → handler
    private var fallback: Handler?
    /// Which paths the fallback serves (for 405 instead of 404 on them).
    private var fallbackServes: @Sendable (Substring) -> Bool = { _ in false }
    private var notFound: @Sendable (Request) -> Response
    private var methodNotAllowed: @Sendable (Request, [HTTPMethod]) -> Response
    private var internalError: @Sendable (Request) -> Response
    private var refusal: (@Sendable (HTTPRefusal, Request?) -> Response)?

    /// Where request counts (`http_requests_total{route,method,status}`) and handler latencies
    /// (`http_request_duration_seconds{route,method}`) go; nil records nothing. Routes are path templates, never
    /// query strings, so the number of series stays bounded. A streamed response counts until its head is ready.
    public var metrics: (any MetricsFactory)?
    private let metricHandles = RouteMetricHandles()

    /// - Parameters:
    ///   - notFound: the response for a path no route or fallback serves.
    ///   - methodNotAllowed: the response for a known path and another method; `Allow` is added here.
    ///   - internalError: the response for an error that is not an ``HTTPResponseError``.
    ///   - refused: the answer to a request the server refused before routing (``HTTPRefusal``); the refusal's
    ///     English JSON when nil.
    public init(
        notFound: @escaping @Sendable (Request) -> Response,
        methodNotAllowed: @escaping @Sendable (Request, [HTTPMethod]) -> Response,
        internalError: @escaping @Sendable (Request) -> Response,
        refused: (@Sendable (HTTPRefusal, Request?) -> Response)? = nil
    ) {
        self.notFound = notFound
        self.methodNotAllowed = methodNotAllowed
        self.internalError = internalError
        self.refusal = refused
    }

    public func refused(_ refusal: HTTPRefusal, request: Request?) -> Response {
        var response = self.refusal?(refusal, request) ?? refusal.defaultResponse
        response.status = refusal.status
        return response
    }

    /// Adds a route for `method` on exactly `path`.
    public mutating func on(_ method: HTTPMethod, _ path: String, _ handler: @escaping Handler) {
        routes[path, default: [:]][method.rawValue] = handler
    }

    /// Serves `GET`/`HEAD` requests that no route matched (static files); it throws or returns 404 when it has nothing.
    /// `serves` says which paths it has: another method on one of them is answered 405 with `Allow: GET, HEAD`, as on
    /// a route, rather than 404 (the resource exists; RFC 9110 §15.5.6).
    public mutating func fallback(serving serves: @escaping @Sendable (Substring) -> Bool = { _ in false }, _ handler: @escaping Handler) {
        fallback = handler
        fallbackServes = serves
    }

    /// Every route: its path and its methods (`HEAD` is implied by `GET`), sorted; the fallback's paths are not listed.
    /// For tests that hold the API's description to the routes.
    public var routeTable: [(path: String, methods: [String])] {
        routes.map { (path: $0.key, methods: $0.value.keys.sorted()) }.sorted { $0.path < $1.path }
    }

    public func respond(to request: Request, logger: Logger) async -> Response {
        let started = ContinuousClock.now
        let (route, handler) = match(request)
        let response: Response
        do {
            response = try await handler(request, logger)
        } catch let error as any HTTPResponseError {
            response = error.response(for: request)
        } catch {
            logger.error("request failed", metadata: ["error": "\(String(reflecting: error))"])
            response = internalError(request)
        }
        if let metrics {
            // Methods a client makes up would each become a series; they are counted together.
            let method =
                switch request.method {
                case .GET, .HEAD, .POST, .PUT, .DELETE, .OPTIONS, .PATCH: request.method.rawValue
                default: "other"
                }
            let (counter, timer) = metricHandles.handles(route: route, method: method, status: response.status.code, factory: metrics)
            counter.increment()
            timer.recordNanoseconds(TimeAmount(ContinuousClock.now - started).nanoseconds)
        }
        return response
    }

    /// The 405 of a path whose methods are `methods`, with `Allow` (plus `HEAD` where there is `GET`).
    private func notAllowed(_ methods: [String]) -> Handler {
        let allowed = methods.map { HTTPMethod(rawValue: $0) }
        let allow = (methods.contains("GET") ? methods + ["HEAD"] : methods).joined(separator: ", ")
        let methodNotAllowed = self.methodNotAllowed
        return { request, _ in
            var response = methodNotAllowed(request, allowed)
            response.headers.replaceOrAdd(name: "Allow", value: allow)
            return response
        }
    }

    /// The route template (for metrics) and the handler for a request.
    private func match(_ request: Request) -> (String, Handler) {
        let method = request.method == .HEAD ? .GET : request.method
        let path = String(request.path)
        if let methods = routes[path] {
            if let handler = methods[method.rawValue] {
                return (path, handler)
            }
            return (path, notAllowed(methods.keys.sorted()))
        }
        if let fallback {
            if method == .GET { return ("static", fallback) }
            if fallbackServes(request.path) { return ("static", notAllowed(["GET"])) }
        }
        let notFound = self.notFound
        return ("unmatched", { request, _ in notFound(request) })
    }
}

/// The counters and timers of each route, method and status, made once: looking a metric up in the registry by its
/// labels on every request costs more than the request's own bookkeeping.
final class RouteMetricHandles: Sendable {
    private struct Key: Hashable {
        var route: String
        var method: String
        var status: UInt
    }

    private let handles = Mutex<[Key: (Counter, CoreMetrics.Timer)]>([:])

    func handles(route: String, method: String, status: UInt, factory: any MetricsFactory) -> (Counter, CoreMetrics.Timer) {
        let key = Key(route: route, method: method, status: status)
        if let found = handles.withLock({ $0[key] }) { return found }
        let made = (
            Counter(label: "http_requests_total", dimensions: [("route", route), ("method", method), ("status", String(status))], factory: factory),
            CoreMetrics.Timer(label: "http_request_duration_seconds", dimensions: [("route", route), ("method", method)], factory: factory)
        )
        handles.withLock { $0[key] = made }
        return made
    }
}


import Broker
import HTTP
import Logging
import NIOHTTP1

/// Wraps the router with what every response needs: security headers, CORS (closed unless origins are configured),
/// and per-client rate limits (429 with `Retry-After`). Client addresses come from the HTTP layer, which takes
/// `X-Forwarded-For` only from trusted proxies.
struct SecureResponder: HTTPResponder {
    let router: Router
    let configuration: TandemConfiguration
    let sessionLimiter: RateLimiter
    let requestLimiter: RateLimiter
    let time: TimeSource
    let metrics: TandemMetrics

    init(router: Router, configuration: TandemConfiguration, time: TimeSource, metrics: TandemMetrics) {
        self.metrics = metrics
        self.router = router
        self.configuration = configuration
        self.sessionLimiter = RateLimiter(perMinute: configuration.sessionsPerMinute)
        self.requestLimiter = RateLimiter(perMinute: configuration.requestsPerMinute)
        self.time = time
    }

    /// Headers every response carries unless the handler set them (pages set their own CSP).
    static let securityHeaders: [(String, String)] = [
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
        ("Cross-Origin-Resource-Policy", "same-origin"),
    ]

    func respond(to request: Request, logger: Logger) async -> Response {
        let origin = request.headers.first(name: "origin")
        let allowedOrigin = origin.flatMap { configuration.corsAllowedOrigins.contains($0) ? $0 : nil }
        var response: Response
        if request.method == .OPTIONS, allowedOrigin != nil {
            response = Response(status: .noContent, headers: [
                "Access-Control-Allow-Methods": "GET, POST",
                "Access-Control-Allow-Headers": "Content-Type, Last-Event-ID",
                "Access-Control-Max-Age": "600",
            ])
        } else if let retryAfter = limiter(for: request)?.spend(request.clientAddress, now: time.now()) {
            logger.notice("rate limited", metadata: ["client": "\(request.clientAddress)", "path": "\(request.path)"])
            response = APIError.tooManyRequests(request.path == "/api/validate-session" ? .validation : .action)
                .response(for: request, defaultLanguage: configuration.defaultLanguage)
            response.headers.replaceOrAdd(name: "Retry-After", value: String(retryAfter))
        } else {
            response = await router.respond(to: request, logger: logger)
        }
        if let allowedOrigin {
            response.headers.replaceOrAdd(name: "Access-Control-Allow-Origin", value: allowedOrigin)
            response.headers.add(name: "Vary", value: "Origin")
        }
        if response.status.code >= 400 { metrics.refused(status: response.status.code) }
        return Self.secured(response)
    }

    func bodyTooLarge(_ request: Request) -> Response {
        metrics.refused(status: 413)
        return Self.secured(router.bodyTooLarge(request))
    }

    private func limiter(for request: Request) -> RateLimiter? {
        switch (request.method, request.path) {
        case (.POST, "/api/sessions"), (.GET, "/api/events"): sessionLimiter
        // The QR code answers whether a session exists, so it is limited like the other lookups.
        case (.POST, "/api/input-started"), (.POST, "/api/submit"), (.POST, "/api/cancel"), (.GET, "/api/validate-session"),
            (.GET, "/api/qr"):
            requestLimiter
        default: nil
        }
    }

    private static func secured(_ response: Response) -> Response {
        var response = response
        for (name, value) in securityHeaders where !response.headers.contains(name: name) {
            response.headers.add(name: name, value: value)
        }
        return response
    }
}

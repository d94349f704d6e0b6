import Broker
import HTTP
import Logging
import NIOHTTP1

/// Wraps the router with what every response needs: CORS (closed unless origins are configured),
/// refusal of state-changing requests from other sites (403 `cross_site_request`), and per-client rate limits (429
/// with `Retry-After`). Client addresses come from the HTTP layer, which takes `X-Forwarded-For` only from trusted
/// proxies.
struct SecureResponder: HTTPResponder {
    let router: Router
    let configuration: TandemConfiguration
    let sessionLimiter: RateLimiter
    let requestLimiter: RateLimiter
    let time: TimeSource
    let metrics: TandemMetrics
    /// `cors.allowedOrigins`, made once rather than per request.
    let allowedOrigins: Set<String>
    /// The origin of `publicBaseURL`, normalized (see ``SiteCheck``), when it is set.
    let publicOrigin: String?

    init(router: Router, configuration: TandemConfiguration, time: TimeSource, metrics: TandemMetrics) {
        self.metrics = metrics
        self.router = router
        self.configuration = configuration
        self.sessionLimiter = RateLimiter(perMinute: configuration.sessionsPerMinute)
        self.requestLimiter = RateLimiter(perMinute: configuration.requestsPerMinute)
        self.time = time
        self.allowedOrigins = configuration.corsAllowedOrigins
        self.publicOrigin = SiteCheck.origin(ofURL: configuration.publicBaseURL)
    }

    /// Headers every response carries unless the handler set them (pages set their own CSP). The HTTP layer writes
    /// them (``HTTP/DefaultResponseHeaders``), into its own refusals too.
    static let securityHeaders: [(name: String, value: String)] = [
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
        ("Cross-Origin-Resource-Policy", "same-origin"),
    ]

    func respond(to request: Request, logger: Logger) async -> Response {
        let origin = request.headers.first(name: "origin")
        let allowedOrigin = origin.flatMap { allowedOrigins.contains($0) ? $0 : nil }
        var response: Response
        if request.method == .OPTIONS, allowedOrigin != nil {
            response = Response(status: .noContent, headers: [
                "Access-Control-Allow-Methods": "GET, POST",
                "Access-Control-Allow-Headers": "Content-Type, Last-Event-ID, Idempotency-Key",
                "Access-Control-Max-Age": "600",
            ])
        } else if SiteCheck.isCrossSite(request, origin: origin, allowedOrigins: allowedOrigins, publicOrigin: publicOrigin) {
            logger.notice("cross-site request refused", metadata: ["origin": "\(origin ?? "")", "path": "\(request.path)"])
            response = APIError.crossSiteRequest.response(for: request, defaultLanguage: configuration.defaultLanguage)
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
        return response
    }

    /// A request the HTTP layer refused before routing (unparsable, too large, too slow): worded like every other
    /// answer.
    func refused(_ refusal: HTTPRefusal, request: Request?) -> Response {
        metrics.refused(status: refusal.status.code)
        return router.refused(refusal, request: request)
    }

    private func limiter(for request: Request) -> RateLimiter? {
        switch (request.method, request.path) {
        // Streams cost a connection and a task each: opening them is limited like making sessions (HEAD answers
        // what a GET would, so it is limited the same).
        case (.POST, "/api/sessions"), (.GET, "/api/events"), (.HEAD, "/api/events"), (.GET, "/api/phone/events"),
            (.HEAD, "/api/phone/events"):
            sessionLimiter
        // The QR code and a pairing token answer whether a session exists, so they are limited like the other lookups.
        case (.POST, "/api/input-started"), (.POST, "/api/submit"), (.POST, "/api/cancel"), (.GET, "/api/validate-session"),
            (.GET, "/api/qr"), (.GET, "/api/pairing"):
            requestLimiter
        default: nil
        }
    }

}

/// Whether a state-changing request comes from a page of another site (cross-site request forgery). The phone and
/// PC pages are served by this server, so their calls are same-origin; browsers send `Origin` on every POST and
/// `Sec-Fetch-Site` on every request, while curl and other non-browser clients send neither and are not refused.
///
/// A request is refused when its method is not GET, HEAD or OPTIONS and either its `Origin` is present and is
/// neither this server's own origin nor listed in `cors.allowedOrigins`, or its `Sec-Fetch-Site` is `cross-site`.
/// An origin listed in `cors.allowedOrigins` is let through although its browser says `cross-site`: that is what
/// listing it means.
enum SiteCheck {
    static func isCrossSite(_ request: Request, origin: String?, allowedOrigins: Set<String>, publicOrigin: String?) -> Bool {
        switch request.method {
        case .GET, .HEAD, .OPTIONS: return false
        default: break
        }
        if let origin, allowedOrigins.contains(origin) { return false }
        if request.headers.first(name: "sec-fetch-site")?.lowercased() == "cross-site" {
            return true
        }
        guard let origin else { return false }
        return !isOwnOrigin(origin, host: request.headers.first(name: "host"), publicOrigin: publicOrigin)
    }

    /// Whether `origin` is this server as the request reached it (its `Host`, over http or https) or as phones reach
    /// it (`publicBaseURL`). `Origin: null` (sandboxed frames, some redirects) is nobody's origin.
    static func isOwnOrigin(_ origin: String, host: String?, publicOrigin: String?) -> Bool {
        guard let normalized = Self.origin(ofURL: origin) else { return false }
        if normalized == publicOrigin { return true }
        guard let host, !host.isEmpty else { return false }
        return normalized == Self.origin(ofURL: "http://" + host) || normalized == Self.origin(ofURL: "https://" + host)
    }

    /// `scheme://host[:port]` of an http or https URL, lowercased and without the scheme's default port, or nil.
    static func origin(ofURL url: String) -> String? {
        let lowered = url.lowercased()
        let scheme: String
        let defaultPort: String
        if lowered.hasPrefix("http://") {
            (scheme, defaultPort) = ("http", ":80")
        } else if lowered.hasPrefix("https://") {
            (scheme, defaultPort) = ("https", ":443")
        } else {
            return nil
        }
        var authority = lowered.dropFirst(scheme.count + 3).prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        if authority.hasSuffix(defaultPort) { authority = authority.dropLast(defaultPort.count) }
        guard !authority.isEmpty else { return nil }
        return scheme + "://" + authority
    }
}

import Broker
import HTTP
import JSON
import Logging
import NIOHTTP1

/// The seed's endpoints, health, and the pages in `Public/`, wired to a broker and this node's session registry.
struct API: Sendable {
    let broker: any Broker
    let registry: SessionRegistries
    let configuration: TandemConfiguration
    let staticFiles: StaticFiles?
    let metrics: TandemMetrics
    let drainState: DrainState
    /// The server's clock: `serverTime` in answers lets a page count down by the server's time, not its own.
    let time: TimeSource
    /// Where phones reach this node; the QR codes and `phoneUrl` start with it.
    var publicOrigin = PublicOriginBox()
    /// The operators' page, when `ops.token` is set.
    var ops: OpsAccess?

    /// The router serving every path.
    func makeRouter() -> Router {
        let language = configuration.defaultLanguage
        var router = Router(
            notFound: { APIError.notFound.response(for: $0, defaultLanguage: language) },
            methodNotAllowed: { request, _ in APIError.methodNotAllowed.response(for: request, defaultLanguage: language) },
            internalError: { APIError.serverError.response(for: $0, defaultLanguage: language) },
            refused: { refusal, request in
                let error = APIError(refusal)
                return request.map { error.response(for: $0, defaultLanguage: language) } ?? error.response(in: language)
            }
        )
        router.on(.POST, "/api/sessions", handling { try await $0.createSession($1, logger: $2) })
        router.on(.GET, "/api/events", handling { try await $0.events($1, logger: $2) })
        router.on(.GET, "/api/validate-session", handling { try await $0.validateSession($1, logger: $2) })
        router.on(.POST, "/api/input-started", handling { try await $0.inputStarted($1, logger: $2) })
        router.on(.POST, "/api/submit", handling { try await $0.submit($1, logger: $2) })
        router.on(.POST, "/api/cancel", handling { try await $0.cancel($1, logger: $2) })
        router.on(.GET, "/api/qr", handling { try await $0.qrCode($1, logger: $2) })
        router.on(.GET, "/api/pairing", handling { try await $0.pairing($1, logger: $2) })
        router.on(.GET, "/api/phone/events", handling { try await $0.phoneEvents($1, logger: $2) })
        router.on(.GET, "/api/form", handling { try await $0.form($1, logger: $2) })
        router.on(.GET, "/healthz", handling { try await $0.health($1, logger: $2) })
        router.on(.GET, "/readyz", handling { try await $0.readiness($1, logger: $2) })
        router.on(.GET, "/metrics", handling { try await $0.metricsText($1, logger: $2) })
        router.on(.GET, "/api/ops/snapshot", handling { try await $0.opsSnapshot($1, logger: $2) })
        router.on(.GET, "/api/ops/events", handling { try await $0.opsEvents($1, logger: $2) })
        router.metrics = metrics.factory
        if let staticFiles {
            // Off, the operators' page is absent: its files under /ops/ are not served (404).
            let opsOn = ops != nil
            router.fallback(serving: { opsOn || !Self.isOpsPage($0) ? staticFiles.serves(path: $0) : false }) { request, _ in
                guard opsOn || !Self.isOpsPage(request.path), var page = staticFiles.response(for: request) else {
                    return APIError.notFound.response(for: request, defaultLanguage: language)
                }
                page.headers.add(contentsOf: Self.pageSecurityHeaders)
                return page
            }
        }
        return router
    }

    /// Whether `path` is the operators' page or one of its files (`Public/ops/`).
    static func isOpsPage(_ path: Substring) -> Bool {
        // As the static files read it: percent-decoded (`/%6Fps` is `/ops`).
        let decoded = PercentDecoding.decode(path.replacing("+", with: "%2B")[...]) ?? String(path)
        return decoded == "/ops" || decoded.hasPrefix("/ops/")
    }

    /// Converts the failures of one endpoint into responses, in the request's language: `APIError`s as they are,
    /// broker outages and refusals to store as 503, a corrupt session as 404, anything else as a 500 that is logged.
    private func handling(_ endpoint: @escaping @Sendable (API, Request, Logger) async throws -> Response) -> Router.Handler {
        let api = self
        return { request, logger in
            do {
                return try await endpoint(api, request, logger)
            } catch let error as APIError {
                return error.response(for: request, defaultLanguage: api.configuration.defaultLanguage)
            } catch let error as BrokerError where error.code == .unavailable {
                logger.debug("broker unavailable", metadata: ["error": "\(error)"])
                let shape: APIError.Shape = request.path == "/api/validate-session" ? .validation : .action
                return APIError.serviceUnavailable(shape).response(for: request, defaultLanguage: api.configuration.defaultLanguage)
            } catch let failure as BrokerUnavailableAfterOffer {
                logger.debug("broker unavailable", metadata: ["error": "\(failure.error)"])
                let shape: APIError.Shape = request.path == "/api/validate-session" ? .validation : .action
                var response = APIError.serviceUnavailable(shape).response(for: request, defaultLanguage: api.configuration.defaultLanguage)
                response.headers.add(name: "Set-Cookie", value: failure.cookie)
                return response
            } catch let error as BrokerError where error.code == .corruptSession {
                // A session whose stored data is damaged cannot be served, and the broker changed nothing: to the
                // devices it is a session that does not exist (the PC starts a new one); the operator gets the why.
                logger.warning("session data is corrupt; answered as not found", metadata: ["error": "\(error)"])
                let shape: APIError.Shape = request.path == "/api/validate-session" ? .validation : .action
                return APIError.sessionNotFound(shape).response(for: request, defaultLanguage: api.configuration.defaultLanguage)
            }
        }
    }

    /// Reads a POST body as a JSON object. Only `application/json` is read: a form, `text/plain` or a body without
    /// a type is what a page of another site can send without a CORS preflight, so reading them would let any site
    /// post to a session (CSRF).
    func jsonObject(of request: Request) throws(APIError) -> JSONValue {
        guard request.hasMediaType("application/json") else { throw .unsupportedMediaType }
        let body: JSONValue
        do {
            body = try request.jsonBody()
        } catch .unsupportedMediaType {
            throw .unsupportedMediaType
        } catch {
            throw .malformedJSON
        }
        guard case .object = body else { throw .bodyNotObject }
        return body
    }

    /// The session of a JSON body's `sessionId`: 400 `session_id_required` or `session_id_malformed` otherwise.
    func sessionIDField(of body: JSONValue) throws(APIError) -> SessionID {
        var errors: [(path: String, code: String, message: Message)] = []
        guard let id = SubmissionRules.sessionIDField(body["sessionId"], errors: &errors) else {
            throw errors.first?.code == "session_id_malformed" ? .malformedSessionID(.action) : .missingSessionID(.action)
        }
        return id
    }

    /// The request's `Idempotency-Key`: nil when absent; 1 to 64 visible ASCII characters, else 400.
    static func idempotencyKey(of request: Request) throws(APIError) -> String? {
        guard let key = request.headers.first(name: "idempotency-key") else { return nil }
        let bytes = key.utf8
        guard (1...64).contains(bytes.count), bytes.allSatisfy({ (0x21...0x7E).contains($0) }) else { throw .idempotencyKeyInvalid }
        return key
    }

    /// The session of a request's `?session=` parameter.
    func sessionIDQuery(of request: Request, shape: APIError.Shape) throws(APIError) -> SessionID {
        guard let raw = request.query("session") else {
            // `?session=%zz`: given, but not as a percent-encoded string.
            throw request.queryNames("session") ? .malformedSessionID(shape) : .missingSessionID(shape)
        }
        guard !raw.isEmpty else { throw .missingSessionID(shape) }
        guard let id = SessionID(raw) else { throw .malformedSessionID(shape) }
        return id
    }

    /// `ttlMinutes` as the seed reports it: the TTL in minutes, a whole number when it is one.
    var ttlMinutes: JSONValue {
        configuration.sessionTTLSeconds % 60 == 0
            ? .integer(Int64(configuration.sessionTTLSeconds / 60)) : .number(Double(configuration.sessionTTLSeconds) / 60)
    }
}

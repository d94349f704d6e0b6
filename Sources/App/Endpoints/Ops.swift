import Broker
import Foundation  // JSONEncoder for the snapshot events
import HTTP
import Logging
import NIOCore
import NIOHTTP1

extension API {
    /// `GET /api/ops/snapshot`: the operators' counts now (see ``OpsSnapshot``). 404 when `ops.token` is not set,
    /// 401 without the token (`Authorization: Bearer`).
    @Sendable func opsSnapshot(_ request: Request, logger: Logger) async throws -> Response {
        let reporter: OpsReporter
        switch opsAccess(request, logger: logger) {
        case .allowed(let allowed): reporter = allowed
        case .denied(let response): return response
        }
        return .json(await reporter.snapshot(), headers: ["Cache-Control": "no-store"])
    }

    /// `GET /api/ops/events`: the snapshot as an SSE event (`snapshot`) every second until the client leaves or the
    /// node drains. The snapshots are the heartbeat. Authorized like ``opsSnapshot(_:logger:)``.
    @Sendable func opsEvents(_ request: Request, logger: Logger) async throws -> Response {
        let reporter: OpsReporter
        switch opsAccess(request, logger: logger) {
        case .allowed(let allowed): reporter = allowed
        case .denied(let response): return response
        }
        var headers = EventStreamWriter.headers
        headers.replaceOrAdd(name: "Cache-Control", value: "no-store")
        return Response(status: .ok, headers: headers, body: .eventStream { channel in
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
            while !Task.isCancelled {
                guard let data = try? encoder.encode(await reporter.snapshot()) else { return }
                let event = ServerSentEvent(event: "snapshot", data: String(decoding: data, as: UTF8.self))
                // False: closed, or the reader is so far behind that its buffer is full; it reconnects.
                guard channel.write(capacity: data.count + 32, { event.write(to: &$0) }) else { return }
                do {
                    try await Task.sleep(for: .seconds(1))
                } catch {
                    break
                }
            }
            if channel.isDraining {
                channel.write(capacity: 16) { ServerSentEvent.writeRetry(milliseconds: Self.drainRetryMilliseconds, to: &$0) }
            }
        })
    }

    /// The reporter, when the operators' page is on and `request` carries its token. Off: 404, as for any unknown
    /// path. A client past its budget of failed tries is refused (429) before its token is even compared, so the
    /// token cannot be guessed faster than the budget.
    private func opsAccess(_ request: Request, logger: Logger) -> OpsAccess.Decision {
        let language = configuration.defaultLanguage
        guard let ops, !configuration.opsToken.isEmpty else { return .denied(APIError.notFound.response(for: request, defaultLanguage: language)) }
        let client = request.clientAddress
        let now = time.now()
        if let retryAfter = ops.failures.refusal(client, now: now) {
            var response = APIError.tooManyRequests(.action).response(for: request, defaultLanguage: language)
            response.headers.replaceOrAdd(name: "Retry-After", value: String(retryAfter))
            return .denied(response)
        }
        let presented = Self.bearerToken(of: request)
        guard let presented, constantTimeEquals(presented, configuration.opsToken) else {
            _ = ops.failures.spend(client, now: now)
            logger.notice("operators' page refused", metadata: ["client": "\(client)", "token": .string(presented == nil ? "missing" : "wrong")])
            var response = APIError.opsTokenRequired.response(for: request, defaultLanguage: language)
            response.headers.replaceOrAdd(name: "WWW-Authenticate", value: "Bearer realm=\"tandem-ops\"")
            return .denied(response)
        }
        return .allowed(ops.reporter)
    }

    /// The token of `Authorization: Bearer <token>` (scheme case-insensitive), or nil.
    static func bearerToken(of request: Request) -> String? {
        guard let header = request.headers.first(name: "authorization") else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return parts[1].trimmingSpaces()
    }
}

/// The operators' page's parts: the reporter whose snapshots it shows, and the budget of failed token tries per
/// client address.
struct OpsAccess: Sendable {
    enum Decision {
        case allowed(OpsReporter)
        case denied(Response)
    }

    let reporter: OpsReporter
    /// Failed tries per client address and minute.
    let failures = RateLimiter(perMinute: 10, maximumTracked: 10_000)
}

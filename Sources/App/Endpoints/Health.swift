import Broker
import HTTP
import JSON
import Logging
import NIOCore
import NIOHTTP1

extension API {
    /// `GET /healthz`: 200 while the process serves and its broker is reachable, 503 otherwise; the body says which,
    /// and how many streams and sessions this node holds.
    @Sendable func health(_ request: Request, logger: Logger) async throws -> Response {
        let broker = await self.broker.health
        let streams = registry.streamCount
        let sessions = registry.sessionCount
        return .json(
            JSONValue.object([
                "status": .string(broker.isAvailable ? "ok" : "degraded"),
                "broker": .object([
                    "kind": .string(configuration.broker.rawValue),
                    "available": .bool(broker.isAvailable),
                    "detail": .string(broker.detail),
                ]),
                "streams": .integer(Int64(streams)),
                "sessions": .integer(Int64(sessions)),
            ]),
            status: broker.isAvailable ? .ok : .serviceUnavailable
        )
    }

    /// `GET /readyz`: whether a load balancer should send this node traffic: its broker is reachable, stores what it
    /// is given (Redis lately refused to store: out of memory, read-only, ...; see ``BrokerHealth/refusal``), and the
    /// node is not draining. 503 with the reason otherwise; it comes back by itself when Redis stores again.
    @Sendable func readiness(_ request: Request, logger: Logger) async throws -> Response {
        let broker = await self.broker.health
        let draining = drainState.isDraining
        let ready = broker.isAvailable && broker.refusal == nil && !draining
        var body: [String: JSONValue] = ["ready": .bool(ready)]
        if draining {
            body["reason"] = .string("draining")
        } else if !broker.isAvailable {
            body["reason"] = .string(broker.detail)
        } else if let refusal = broker.refusal {
            body["reason"] = .string(refusal)
        }
        return .json(JSONValue.object(body), status: ready ? .ok : .serviceUnavailable)
    }

    /// `GET /metrics`: every metric of this node in the Prometheus text format.
    @Sendable func metricsText(_ request: Request, logger: Logger) async throws -> Response {
        var buffer = ByteBuffer()
        buffer.writeBytes(metrics.render())
        return Response(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: buffer)
    }
}

import Broker
import HTTP
import Logging
import NIOHTTP1

extension API {
    /// `GET /healthz`: 200 while the process serves and its broker is reachable, 503 otherwise; the body says which,
    /// and how many streams and sessions this node holds.
    @Sendable func health(_ request: Request, logger: Logger) async throws -> Response {
        let broker = await self.broker.health
        let streams = await registry.streamCount
        let sessions = await registry.sessionCount
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
}

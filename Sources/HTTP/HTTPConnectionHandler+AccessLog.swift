import Logging
import NIOCore
import NIOHTTP1

/// Access log lines: one per response (`info`), with the request's id, its path (never its query: query strings
/// carry session IDs, which are capabilities) and how long it took.
extension HTTPConnectionHandler {
    /// Whether each request gets its log line (level `info` or finer).
    var accessLogged: Bool { server.logger.logLevel <= .info }

    /// The server's logger with this request's id, for its handlers and its log line. Without access logs the id
    /// would match nothing, and copying the logger's metadata for every request is a measurable cost: it is left out.
    func logger(for exchange: HTTPExchange) -> Logger {
        guard accessLogged else { return server.logger }
        var logger = server.logger
        logger[metadataKey: "request.id"] = "\(String(exchange.requestID, radix: 36))"
        return logger
    }

    /// The log line of `exchange`, answered with `status` (nil: no response was written) and, when it did not end as
    /// a complete response, how it ended.
    func log(_ exchange: HTTPExchange, status: HTTPResponseStatus?, ended: String?, now: NIODeadline) {
        guard accessLogged else { return }
        let nanoseconds = (now - exchange.started).nanoseconds
        let milliseconds = Double(nanoseconds) / 1e6
        var metadata: Logger.Metadata = ["duration_ms": "\((milliseconds * 100).rounded() / 100)"]
        if let ended { metadata["ended"] = "\(ended)" }
        let code = status.map { String($0.code) } ?? "-"
        logger(for: exchange).info("\(exchange.method.rawValue) \(exchange.path) \(code)", metadata: metadata)
    }
}

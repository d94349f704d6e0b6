import NIOCore
import NIOHTTP1

/// One request on a connection and what its response needs. A class: the connection refers to the one being read
/// and the one being answered, and an open event stream keeps its own for its log line, so a connection carries
/// references, not copies of the request.
final class HTTPExchange {
    let version: HTTPVersion
    let method: HTTPMethod
    /// The path only, for the log line (empty without access logs): query strings carry session IDs, which are
    /// capabilities and stay out of logs.
    let path: String
    var isKeepAlive: Bool
    /// Nil once a long-lived stream no longer needs it.
    var request: Request?
    /// When its head arrived, from the connection's event loop (for the log line's duration).
    let started: NIODeadline
    let requestID: UInt64

    init(version: HTTPVersion, method: HTTPMethod, path: String, isKeepAlive: Bool, request: Request?, started: NIODeadline, requestID: UInt64) {
        self.version = version
        self.method = method
        self.path = path
        self.isKeepAlive = isKeepAlive
        self.request = request
        self.started = started
        self.requestID = requestID
    }
}

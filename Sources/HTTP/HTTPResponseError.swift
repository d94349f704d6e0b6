import NIOHTTP1

/// An error that knows the response it should become. ``Router`` converts it in one place; any other error a handler
/// throws becomes a generic 500.
public protocol HTTPResponseError: Error {
    /// The response for this error, shaped for the request that caused it (its language, for example).
    func response(for request: Request) -> Response
}

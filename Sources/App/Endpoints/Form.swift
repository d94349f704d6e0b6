import HTTP
import JSON
import Logging
import NIOHTTP1

extension API {
    /// `GET /api/form`: the phone's form as configured (`form.fields`), for the pages: each field's name, type, labels
    /// in both languages and rules. The same for every session and every caller; it holds nothing about anyone.
    @Sendable func form(_ request: Request, logger: Logger) async throws -> Response {
        var response = Response.json(configuration.form.json)
        // Pages load it with every form they show; a minute of caching spares the requests, and a changed config
        // reaches phones within a minute.
        response.headers.replaceOrAdd(name: "Cache-Control", value: "public, max-age=60")
        return response
    }
}

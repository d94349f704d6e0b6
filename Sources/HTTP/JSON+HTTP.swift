#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON
import NIOCore
import NIOHTTP1

/// Why a body could not be read as JSON.
public enum JSONBodyError: Error, Equatable {
    /// The body is not well-formed JSON in UTF-8 (this includes an empty body).
    case malformed
    /// The `Content-Type` names something other than JSON.
    case unsupportedMediaType(String)
}

extension Request {
    /// The body parsed as JSON. A missing `Content-Type` is taken as JSON (as curl and the seed's `fetch` calls may
    /// omit it); any other media type than `application/json` or `+json` is refused.
    public func jsonBody() throws(JSONBodyError) -> JSONValue {
        // No media type at all is read as JSON (curl's -d without -H; the seed's fetch calls set it).
        if let value = headers.first(name: "content-type"), !Request.mediaType(in: value).isEmpty,
            !hasMediaType("application/json", orSuffix: "+json")
        {
            throw .unsupportedMediaType(mediaType ?? "")
        }
        do {
            return try body.withUnsafeReadableBytes { bytes throws(JSONParser.Failure) in try JSONParser.parse(bytes) }
        } catch {
            throw .malformed
        }
    }
}

extension Response {
    /// A JSON response from a ``JSONValue``, written straight into the body.
    public static func json(_ value: JSONValue, status: HTTPResponseStatus = .ok, headers: HTTPHeaders = [:]) -> Response {
        var body = ByteBufferAllocator().buffer(capacity: 256)
        value.write(to: &body)
        return Response(status: status, contentType: "application/json; charset=utf-8", body: body, headers: headers)
    }

    /// A JSON response; `value` is encoded with `/` unescaped and non-ASCII as UTF-8.
    public static func json(_ value: some Encodable, status: HTTPResponseStatus = .ok, headers: HTTPHeaders = [:]) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        // Encoding our own Encodable values cannot fail short of a programming error; answer 500 rather than crash.
        guard let data = try? encoder.encode(value) else {
            return Response(status: .internalServerError, contentType: "application/json", body: ByteBuffer(string: "{}"))
        }
        return Response(status: status, contentType: "application/json; charset=utf-8", body: ByteBuffer(bytes: data), headers: headers)
    }
}

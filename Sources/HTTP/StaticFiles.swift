import Foundation  // FileManager, for the one-time load at start
import NIOCore
import NIOHTTP1

/// The files of a folder (`Public/`), read once at start and served from memory: no file I/O happens on a request
/// path, so nothing blocks an event loop. The folder is small by design; its total size is capped.
public struct StaticFiles: Sendable {
    struct File: Sendable {
        var body: ByteBuffer
        var contentType: String
        var etag: String
    }

    /// Why the folder could not be loaded.
    public struct LoadError: Error, CustomStringConvertible {
        public var description: String
    }

    private let files: [String: File]

    /// Loads every regular file under `directory`. Hidden files are skipped.
    /// - Throws: ``LoadError`` when the folder is missing or larger than `maximumTotalBytes`.
    public init(directory: String, maximumTotalBytes: Int = 32 << 20) throws {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw LoadError(description: "static file folder '\(directory)' does not exist")
        }
        var files: [String: File] = [:]
        var total = 0
        let root = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        for relative in (manager.subpaths(atPath: root) ?? []).sorted() {
            if relative.split(separator: "/").contains(where: { $0.hasPrefix(".") }) { continue }
            let path = root + "/" + relative
            guard manager.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
                let data = manager.contents(atPath: path)
            else { continue }
            total += data.count
            guard total <= maximumTotalBytes else {
                throw LoadError(description: "static files under '\(directory)' exceed \(maximumTotalBytes) bytes")
            }
            files["/" + relative] = File(
                body: ByteBuffer(bytes: data),
                contentType: Self.contentType(forPath: relative),
                etag: "\"\(String(Self.fnv1a(data), radix: 16))\""
            )
        }
        self.files = files
    }

    /// The response for `request`'s path: the file, `index.html` for a folder, 304 when `If-None-Match` matches,
    /// or nil when there is no such file.
    public func response(for request: Request) -> Response? {
        guard let file = file(at: request.path) else { return nil }
        var headers: HTTPHeaders = [
            "ETag": file.etag,
            "Cache-Control": "no-cache",
        ]
        if let candidates = request.headers.first(name: "if-none-match"),
            candidates.split(separator: ",").contains(where: { $0.trimmingSpaces() == file.etag || $0.trimmingSpaces() == "*" })
        {
            return Response(status: .notModified, headers: headers)
        }
        headers.add(name: "Content-Type", value: file.contentType)
        return Response(status: .ok, headers: headers, body: .bytes(file.body))
    }

    /// The number of files loaded.
    public var count: Int { files.count }

    /// Whether a `GET` of `path` (as a request names it, before percent-decoding) finds a file: the router answers
    /// other methods on it with 405 instead of 404.
    public func serves(path: Substring) -> Bool { file(at: path) != nil }

    /// The file a request's path names: the file itself, or a folder's `index.html`.
    private func file(at requestPath: Substring) -> File? {
        guard var path = PercentDecoding.decode(requestPath.replacing("+", with: "%2B")[...]) else { return nil }
        // Keys are exact relative paths, so `..` can never reach outside the folder; refusing it keeps that obvious.
        if path.split(separator: "/").contains("..") { return nil }
        if path.hasSuffix("/") { path += "index.html" }
        return files[path] ?? files[path + "/index.html"]
    }

    static func contentType(forPath path: String) -> String {
        let ext = path.split(separator: ".").last.map { $0.lowercased() } ?? ""
        switch ext {
        case "html", "htm": return "text/html; charset=utf-8"
        case "css": return "text/css; charset=utf-8"
        case "js", "mjs": return "text/javascript; charset=utf-8"
        case "json", "map": return "application/json; charset=utf-8"
        case "webmanifest": return "application/manifest+json"
        case "svg": return "image/svg+xml"
        case "png": return "image/png"
        case "jpg", "jpeg": return "image/jpeg"
        case "gif": return "image/gif"
        case "webp": return "image/webp"
        case "ico": return "image/x-icon"
        case "woff2": return "font/woff2"
        case "woff": return "font/woff"
        case "txt": return "text/plain; charset=utf-8"
        // RFC 9512's media type; the OpenAPI document is the one YAML file.
        case "yaml", "yml": return "application/yaml"
        default: return "application/octet-stream"
        }
    }

    private static func fnv1a(_ data: Data) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in data {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return hash
    }
}

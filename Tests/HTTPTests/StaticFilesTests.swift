import Foundation
import HTTP
import NIOHTTP1
import Testing

@Suite struct StaticFilesTests {
    static func makeFolder() throws -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-static-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder + "/phone", withIntermediateDirectories: true)
        try "<!doctype html>".write(toFile: folder + "/index.html", atomically: true, encoding: .utf8)
        try "export {}".write(toFile: folder + "/app.js", atomically: true, encoding: .utf8)
        try "body{}".write(toFile: folder + "/style.css", atomically: true, encoding: .utf8)
        try "<svg/>".write(toFile: folder + "/qr.svg", atomically: true, encoding: .utf8)
        try "phone".write(toFile: folder + "/phone/index.html", atomically: true, encoding: .utf8)
        try "secret".write(toFile: folder + "/.env", atomically: true, encoding: .utf8)
        return folder
    }

    @Test func servesFilesWithTheirContentTypes() throws {
        let files = try StaticFiles(directory: try Self.makeFolder())
        func get(_ path: String) -> Response? { files.response(for: Request(method: .GET, uri: path)) }
        #expect(get("/")?.headers.first(name: "content-type") == "text/html; charset=utf-8")
        #expect(get("/app.js")?.headers.first(name: "content-type") == "text/javascript; charset=utf-8")
        #expect(get("/style.css")?.headers.first(name: "content-type") == "text/css; charset=utf-8")
        #expect(get("/qr.svg")?.headers.first(name: "content-type") == "image/svg+xml")
        #expect(get("/phone")?.status == .ok)
        #expect(get("/phone/")?.status == .ok)
        #expect(get("/missing.js") == nil)
        #expect(get("/.env") == nil)
        #expect(get("/../etc/passwd") == nil)
        #expect(get("/%2e%2e/etc/passwd") == nil)
    }

    @Test func answers304WhenTheETagMatches() throws {
        let files = try StaticFiles(directory: try Self.makeFolder())
        let first = try #require(files.response(for: Request(method: .GET, uri: "/app.js")))
        let etag = try #require(first.headers.first(name: "etag"))
        let again = files.response(for: Request(method: .GET, uri: "/app.js", headers: ["If-None-Match": etag]))
        #expect(again?.status == .notModified)
    }

    @Test func aMissingFolderIsAnError() {
        #expect(throws: StaticFiles.LoadError.self) { try StaticFiles(directory: "/nonexistent/tandem") }
    }
}

import Broker
import Foundation
import HTTP
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import App

/// `Public/openapi.yaml` describes exactly the routes the router has: a route added without its description (or a
/// description of a route that is gone) fails here. The router's own table is the source of truth, not a reading of
/// the source code; the pages the fallback serves are held to the files in `Public/`. Schemathesis checks the
/// answers against the document on a live node (Tests/e2e/test_openapi.py).
@Suite(.timeLimit(.minutes(1)))
struct OpenAPISpecTests {
    static let publicDirectory = URL(filePath: #filePath).deletingLastPathComponent().appending(path: "../../Public").standardized.path
    static let methods: Set<String> = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

    /// `paths` of the document: path → its methods, upper-cased. The document is block-style YAML written by people,
    /// so a path is a two-space-indented key under `paths:` and a method a four-space-indented one below it; that is
    /// all this reads (and the e2e test validates the whole document with a real YAML parser).
    static func documentedPaths() throws -> [String: Set<String>] {
        let text = try String(contentsOfFile: publicDirectory + "/openapi.yaml", encoding: .utf8)
        var paths: [String: Set<String>] = [:]
        var inPaths = false
        var current: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if !line.hasPrefix(" "), !line.isEmpty, !line.hasPrefix("#") {
                inPaths = line == "paths:"
                current = nil
                continue
            }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), !line.hasPrefix("   "), line.hasSuffix(":") {
                let path = String(line.dropFirst(2).dropLast())
                current = path
                paths[path, default: []] = []
            } else if let current, line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":") {
                let key = String(line.dropFirst(4).dropLast())
                if methods.contains(key) { paths[current]?.insert(key.uppercased()) }
            }
        }
        return paths
    }

    static func makeRouter() throws -> Router {
        let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        let registries = SessionRegistries(
            eventLoopGroup: MultiThreadedEventLoopGroup.singleton, bufferLimit: 8, heartbeatInterval: .seconds(30), logger: logger)
        return API(
            broker: InMemoryBroker(sink: registries, logger: logger), registry: registries, configuration: TandemConfiguration(),
            staticFiles: try StaticFiles(directory: publicDirectory), metrics: TandemMetrics(), drainState: DrainState(), time: .system
        ).makeRouter()
    }

    @Test func everyRouteIsDocumentedWithItsMethods() throws {
        let documented = try Self.documentedPaths()
        #expect(documented.count > 10, "the reader found the document's paths: \(documented.keys.sorted())")
        for route in try Self.makeRouter().routeTable {
            #expect(documented[route.path] == Set(route.methods), "\(route.path): routed \(route.methods), documented \(documented[route.path] ?? [])")
        }
    }

    /// A documented path that is no route is a page from `Public/`, served to GET only.
    @Test func everyOtherDocumentedPathIsAServedPage() throws {
        let routed = Set(try Self.makeRouter().routeTable.map(\.path))
        let files = try StaticFiles(directory: Self.publicDirectory)
        for (path, methods) in try Self.documentedPaths() where !routed.contains(path) {
            #expect(files.serves(path: path[...]), "\(path) is documented but neither routed nor a file in Public/")
            #expect(methods == ["GET"], "\(path): a page answers GET (and HEAD) only, documented \(methods)")
        }
    }

    /// The pages (and the document itself) are endpoints people link to; the scripts, styles and icon they load are
    /// described together in the document.
    @Test func everyPageInPublicIsDocumented() throws {
        let documented = try Self.documentedPaths()
        let pages = try FileManager.default.contentsOfDirectory(atPath: Self.publicDirectory).filter {
            $0.hasSuffix(".html") || $0.hasSuffix(".yaml")
        }
        #expect(pages.contains("openapi.yaml"))
        for page in pages {
            #expect(documented["/" + page] != nil, "Public/\(page) is served but not in openapi.yaml")
        }
        #expect(documented["/"] != nil, "/ (index.html) is served but not in openapi.yaml")
    }

    @Test func theDocumentIsServedAsYAMLWithThePageHeaders() async throws {
        let router = try Self.makeRouter()
        let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        let response = await router.respond(to: Request(method: .GET, uri: "/openapi.yaml"), logger: logger)
        #expect(response.status == .ok)
        #expect(response.headers.first(name: "content-type") == "application/yaml")
        #expect(response.headers.first(name: "content-security-policy")?.contains("default-src 'self'") == true)
    }

    /// Another method on a page is 405 with `Allow`, as on a route: the resource exists (it was 404).
    @Test func anotherMethodOnAPageIsNotAllowed() async throws {
        let router = try Self.makeRouter()
        let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        for path in ["/openapi.yaml", "/", "/phone.html", "/js/pc.js"] {
            let response = await router.respond(to: Request(method: .POST, uri: path), logger: logger)
            #expect(response.status == .methodNotAllowed, "\(path)")
            #expect(response.headers.first(name: "allow") == "GET, HEAD", "\(path)")
        }
        let missing = await router.respond(to: Request(method: .POST, uri: "/no-such-page.html"), logger: logger)
        #expect(missing.status == .notFound)
    }
}

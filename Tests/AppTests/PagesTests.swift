import Foundation
import TestSupport
import Testing

@testable import App

/// The public origin, the QR code (libqrencode, SVG and terminal renderings), `GET /api/qr`, `phoneUrl`, and the
/// security headers of the pages.
@Suite(.timeLimit(.minutes(1)))
struct PagesTests {
    // MARK: Public origin

    @Test func configuredPublicBaseURLWins() {
        let origin = PublicOrigin.resolve(publicBaseURL: "https://tandem.example", host: "0.0.0.0", port: 8080) { "192.168.1.20" }
        #expect(origin == "https://tandem.example")
    }

    @Test func allInterfacesUseTheLANAddressAndTheBoundPort() {
        #expect(PublicOrigin.resolve(publicBaseURL: "", host: "0.0.0.0", port: 9090) { "192.168.1.20" } == "http://192.168.1.20:9090")
        #expect(PublicOrigin.resolve(publicBaseURL: "", host: "::", port: 9090) { "10.0.0.7" } == "http://10.0.0.7:9090")
    }

    @Test func allInterfacesWithoutALANAddressFallBackToLoopback() {
        #expect(PublicOrigin.resolve(publicBaseURL: "", host: "0.0.0.0", port: 8080) { nil } == "http://127.0.0.1:8080")
    }

    @Test func aSpecificHostIsUsedAsItIs() {
        var asked = false
        let origin = PublicOrigin.resolve(publicBaseURL: "", host: "127.0.0.1", port: 8080) {
            asked = true
            return "192.168.1.20"
        }
        #expect(origin == "http://127.0.0.1:8080")
        #expect(!asked, "the LAN address is only looked up for 0.0.0.0")
        #expect(PublicOrigin.resolve(publicBaseURL: "", host: "::1", port: 8080) { nil } == "http://[::1]:8080")
        #expect(PublicOrigin.resolve(publicBaseURL: "", host: "tandem.lan", port: 80) { nil } == "http://tandem.lan:80")
    }

    @Test func theLANAddressIsAnIPv4AddressThatIsNotLoopback() throws {
        // The machine may have no LAN interface at all (a sandbox); then there is nothing to check.
        guard let address = PublicOrigin.firstLANIPv4() else { return }
        let parts = address.split(separator: ".").compactMap { UInt8($0) }
        #expect(parts.count == 4, "\(address)")
        #expect(parts.first != 127)
    }

    // MARK: QR code

    @Test func qrCodeHasTheSizeOfItsVersionAndFinderPatterns() throws {
        let code = try QRCode(encoding: "http://192.168.1.20:8080/phone.html?session=s_0123456789abcdef0123456789abcdef")
        #expect(code.size >= 21 && (code.size - 21) % 4 == 0, "size \(code.size) is not a QR version's")
        // The three finder patterns: a dark 7×7 ring around a light ring around a dark 3×3 centre.
        for (top, left) in [(0, 0), (0, code.size - 7), (code.size - 7, 0)] {
            #expect(code.isDark(row: top, column: left) && code.isDark(row: top + 6, column: left + 6))
            #expect(!code.isDark(row: top + 1, column: left + 1))
            #expect(code.isDark(row: top + 3, column: left + 3))
        }
        #expect(!code.isDark(row: -1, column: 0) && !code.isDark(row: 0, column: code.size), "the quiet zone is light")
    }

    @Test func qrCodeRefusesEmptyTextAndNUL() {
        #expect(throws: QRCode.EncodingError.self) { try QRCode(encoding: "") }
        #expect(throws: QRCode.EncodingError.self) { try QRCode(encoding: "a\u{0}b") }
    }

    @Test func svgIsOnePathOfExactlyTheDarkModulesInsideAQuietZone() throws {
        let code = try QRCode(encoding: "https://example.com/phone.html?session=s_1")
        let svg = code.svg(quietZone: 4)
        let side = code.size + 8
        #expect(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(side) \(side)\""))
        #expect(svg.contains("shape-rendering=\"crispEdges\""))
        #expect(svg.components(separatedBy: "<path").count == 2, "one path")
        // Redraw the path's runs ("Mx yhNv1h-Nz") and compare module by module.
        let path = try #require(svg.firstMatch(of: /d="([^"]*)"/)?.1)
        var dark = Set<[Int]>()
        for run in path.matches(of: /M(\d+) (\d+)h(\d+)v1h-\d+z/) {
            let (x, y, length) = (Int(run.1) ?? -1, Int(run.2) ?? -1, Int(run.3) ?? 0)
            for column in x..<(x + length) { dark.insert([y - 4, column - 4]) }
        }
        for row in 0..<code.size {
            for column in 0..<code.size {
                #expect(dark.contains([row, column]) == code.isDark(row: row, column: column), "module \(row),\(column)")
            }
        }
        #expect(dark.count == (0..<code.size).flatMap { row in (0..<code.size).map { (row, $0) } }.filter { code.isDark(row: $0.0, column: $0.1) }.count)
    }

    @Test func terminalRenderingUsesTwoModuleRowsPerLine() throws {
        let code = try QRCode(encoding: "http://127.0.0.1:8080/")
        let plain = code.terminalText(quietZone: 4, ansiColors: false).split(separator: "\n")
        #expect(plain.count == (code.size + 8 + 1) / 2)
        #expect(plain.allSatisfy { $0.count == code.size + 8 })
        #expect(plain.allSatisfy { $0.allSatisfy { " ▀▄█".contains($0) } })
        let colored = code.terminalText(ansiColors: true)
        #expect(colored.hasPrefix("\u{1B}[30;47m"))
    }

    // MARK: Endpoints and headers

    @Test func qrEndpointServesTheSVGOfTheSessionsPhoneURL() async throws {
        try await withTandem({ $0.publicBaseURL = "http://192.0.2.10:8080" }) { _, client in
            let created = try json(try await client.post("/api/sessions", json: "{}"))
            let id = try #require(created["sessionId"]?.string)
            let token = try #require(created["token"]?.string)
            let phoneURL = "http://192.0.2.10:8080/phone.html?session=\(id)&t=\(token)"
            #expect(created["phoneUrl"]?.string == phoneURL)
            #expect(created["qr"]?.string == "/api/qr?session=\(id)&t=\(token)")
            #expect(created["qrRotateSeconds"]?.number == 30)

            let image = try await client.request("GET", "/api/qr?session=\(id)&t=\(token)")
            #expect(image.status == 200)
            #expect(image.header("content-type") == "image/svg+xml")
            #expect(image.header("cache-control") == "no-store")
            #expect(image.bodyText == (try QRCode(encoding: phoneURL)).svg())

            #expect(try await client.request("GET", "/api/qr").status == 400)
            #expect(try await client.request("GET", "/api/qr?session=bad%20id").status == 400)
            let unknown = try await client.request("GET", "/api/qr?session=s_unknown", headers: [("Accept-Language", "en")])
            #expect(unknown.status == 404)
            #expect(try json(unknown)["code"]?.string == "session_not_found")
            #expect(try await client.request("POST", "/api/qr?session=\(id)").status == 405)
        }
    }

    @Test func phoneURLUsesTheBoundPortWhenNoBaseURLIsConfigured() async throws {
        try await withTandem { _, client in
            let created = try json(try await client.post("/api/sessions", json: "{}"))
            let id = try #require(created["sessionId"]?.string)
            let token = try #require(created["token"]?.string)
            #expect(created["phoneUrl"]?.string == "http://127.0.0.1:\(client.port)/phone.html?session=\(id)&t=\(token)")
        }
    }

    @Test func pagesCarryAStrictContentSecurityPolicy() async throws {
        try await withTandem { _, client in
            for path in ["/", "/phone.html", "/js/phone.js", "/css/tandem.css"] {
                let page = try await client.request("GET", path)
                #expect(page.status == 200, "\(path)")
                let policy = try #require(page.header("content-security-policy"), "\(path)")
                for directive in [
                    "default-src 'self'", "script-src 'self'", "img-src 'self'", "connect-src 'self'",
                    "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'",
                ] {
                    #expect(policy.contains(directive), "\(path): \(directive)")
                }
                #expect(!policy.contains("unsafe-inline"))
                #expect(page.header("x-content-type-options") == "nosniff")
                #expect(page.header("referrer-policy") == "no-referrer")
            }
        }
    }

    @Test func pagesHaveNoInlineScriptOrStyle() throws {
        // The policy would block them; this finds them before a browser does.
        for page in ["Public/index.html", "Public/phone.html"] {
            let html = try String(contentsOfFile: page, encoding: .utf8)
            #expect(html.firstMatch(of: /<script(?![^>]*\bsrc=)[^>]*>/) == nil, "\(page): inline <script>")
            #expect(!html.contains(" style="), "\(page): style attribute")
            #expect(!html.contains("<style"), "\(page): <style> element")
            #expect(html.firstMatch(of: /\son[a-z]+=/) == nil, "\(page): inline event handler")
            #expect(!html.contains("//cdn") && !html.contains("https://"), "\(page): loads something from elsewhere")
        }
    }
}

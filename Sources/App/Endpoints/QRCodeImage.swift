import Broker
import HTTP
import Logging
import NIOCore
import NIOHTTP1

extension API {
    /// `GET /api/qr?session=ID`: the QR code the PC page shows, as SVG. It encodes the phone page's URL for the
    /// session (`<origin>/phone.html?session=ID`), which carries only the ID: it lets a phone write to the
    /// session, never read it. 400 without a well-formed ID, 404 for an unknown or expired session.
    @Sendable func qrCode(_ request: Request, logger: Logger) async throws -> Response {
        let id = try sessionIDQuery(of: request, shape: .action)
        guard let record = try await broker.session(id) else { throw APIError.sessionNotFound(.action) }
        // A cancelled session's code would only lead a phone to the invalid-session dialog.
        guard record.status != .cancelled else { throw APIError.sessionCancelled(.action) }
        let svg = try QRCode(encoding: phoneURL(for: id)).svg()
        // no-store: the picture belongs to one short-lived session and is cheap to draw again.
        return Response(
            status: .ok, contentType: "image/svg+xml", body: ByteBuffer(string: svg),
            headers: ["Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"])
    }

    /// The phone page's URL for a session, at the origin phones reach this node at.
    func phoneURL(for id: SessionID) -> String {
        let origin = publicOrigin.origin ?? PublicOrigin.resolve(configuration, port: configuration.port)
        // Session IDs are [A-Za-z0-9_-] only, so the ID needs no percent-encoding.
        return origin + "/phone.html?session=" + id.rawValue
    }

    /// The headers of every page and asset from `Public/`. The pages load nothing but their own files (no CDN,
    /// no inline script or style), so the policy can forbid everything else: injected markup cannot run script,
    /// load or send anything anywhere, or be framed.
    static let pageSecurityHeaders: HTTPHeaders = [
        "Content-Security-Policy":
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
            + "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    ]
}

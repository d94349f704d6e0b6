import Broker
import HTTP
import JSON
import Logging
import NIOCore
import NIOHTTP1

extension API {
    /// `GET /api/qr?session=ID[&t=TOKEN]`: the QR code the PC page shows, as SVG. It encodes the phone page's URL
    /// for the session, which lets a phone write to the session, never read it. For a server-made session that URL
    /// carries the pairing token `t` (see ``QRToken``), and only a good one is drawn (410 `qr_stale` otherwise): the
    /// PC page asks for a new token every `pairing.qrRotateSeconds`. An article-made session's code is
    /// `<origin>/phone.html?session=ID`, as the article's. 400 without a well-formed ID, 404 for an unknown or
    /// expired session.
    @Sendable func qrCode(_ request: Request, logger: Logger) async throws -> Response {
        let id = try sessionIDQuery(of: request, shape: .action)
        guard let record = try await broker.session(id) else { throw APIError.sessionNotFound(.action) }
        // A cancelled session's code would only lead a phone to the invalid-session dialog.
        guard record.status != .cancelled else { throw APIError.sessionCancelled(.action) }
        var token: String?
        if id.isServerMade {
            token = request.query("t")
            guard QRToken.isGood(token, for: id, readerKey: record.readerKey, now: time.now() / 1000, lifetime: qrTokenLifetime) else {
                throw APIError.qrStale(.action)
            }
        }
        let svg = try QRCode(encoding: phoneURL(for: id, token: token)).svg()
        // no-store: the picture belongs to one short-lived session and is cheap to draw again.
        return Response(
            status: .ok, contentType: "image/svg+xml", body: ByteBuffer(string: svg),
            headers: ["Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"])
    }

    /// `GET /api/pairing?session=ID`: a fresh pairing token for the PC page's QR code, with the phone's URL and the
    /// image's path that carry it: `{"phoneUrl","qr","token","rotateSeconds"}`. Only the PC (the reader cookie, or `?key=`).
    @Sendable func pairing(_ request: Request, logger: Logger) async throws -> Response {
        let id = try sessionIDQuery(of: request, shape: .action)
        guard let record = try await broker.session(id) else { throw APIError.sessionNotFound(.action) }
        guard let readerKey = record.readerKey, Self.presentsReaderKey(request, of: id, readerKey: readerKey) else {
            throw APIError.readerKeyRequired
        }
        guard record.status != .cancelled else { throw APIError.sessionCancelled(.action) }
        var response = Response.json(JSONValue.object(pairingFields(of: record)))
        response.headers.add(name: "Cache-Control", value: "no-store")
        return response
    }

    /// What the PC page needs to show a session's QR code now: `phoneUrl`, `qr` (the image's path), `token` (empty
    /// for an article-made session, whose code never changes) and `rotateSeconds`.
    func pairingFields(of record: SessionRecord) -> [String: JSONValue] {
        var token: String?
        if record.id.isServerMade, let readerKey = record.readerKey {
            token = QRToken.make(for: record.id, readerKey: readerKey, issuedAt: time.now() / 1000)
        }
        var qr = "/api/qr?session=" + record.id.rawValue
        if let token { qr += "&t=" + token }
        return [
            "phoneUrl": .string(phoneURL(for: record.id, token: token)),
            "qr": .string(qr),
            "token": .string(token ?? ""),
            "rotateSeconds": .integer(Int64(configuration.qrRotateSeconds)),
        ]
    }

    /// How long a QR token is good for, in seconds: two rotations, so a code scanned just before the PC shows the next
    /// one still works.
    var qrTokenLifetime: Int64 { Int64(configuration.qrRotateSeconds) * 2 }

    /// The phone page's URL for a session, at the origin phones reach this node at, with its QR token if any.
    func phoneURL(for id: SessionID, token: String? = nil) -> String {
        let origin = publicOrigin.origin ?? PublicOrigin.resolve(configuration, port: configuration.port)
        // Session IDs are [A-Za-z0-9_-] only, and tokens [0-9A-Za-z._-], so neither needs percent-encoding.
        var url = origin + "/phone.html?session=" + id.rawValue
        if let token { url += "&t=" + token }
        return url
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

import Broker
import Crypto
import HTTP
import JSON
import Logging
import NIOHTTP1

extension API {
    /// `POST /api/sessions`: a new session made by the server, for the shipped PC page. Its ID (128 bits) is what
    /// the QR code carries; its reader key (another 128 bits) stays on the PC and is required to read the stream, so
    /// whoever sees the QR code can write to the session but never read it.
    ///
    /// The key comes back as an HttpOnly cookie scoped to `/api/events` (what browsers use: it never appears in a
    /// URL, a log line or a script) and as `readerKey` in the body, for clients without cookies, which send it as
    /// the `tandem_reader_<ID>` cookie.
    @Sendable func createSession(_ request: Request, logger: Logger) async throws -> Response {
        let key = SessionID.randomHex128()
        var record: SessionRecord?
        repeat {
            record = try await broker.openSession(SessionID.random(), ttl: configuration.sessionTTL, readerKey: key)
        } while record?.readerKey != key  // an ID collision or tombstone (2^-128): draw again
        guard let record else { throw APIError.serverError }
        metrics.sessionOpened()
        var fields: [String: JSONValue] = [
            "sessionId": .string(record.id.rawValue),
            "readerKey": .string(key),
            "expiryTime": .integer(record.expiresAt),
            "serverTime": .integer(time.now()),
            "ttlMinutes": ttlMinutes,
        ]
        // phoneUrl, qr, token: the QR code's first pairing token; qrRotateSeconds: when to ask for the next one.
        for (name, value) in pairingFields(of: record) where name != "rotateSeconds" { fields[name] = value }
        fields["qrRotateSeconds"] = .integer(Int64(configuration.qrRotateSeconds))
        var response = Response.json(JSONValue.object(fields), status: .created)
        response.headers.add(name: "Set-Cookie", value: readerCookie(of: record, key: key, request: request))
        response.headers.add(name: "Cache-Control", value: "no-store")
        return response
    }
}

/// Compares secrets in time independent of the presented value: neither where it differs nor its length shows.
/// Both sides are hashed (SHA-256, whose time depends only on the length, not the content, and the presented value
/// is hashed whatever it is) and the digests, always 32 bytes, are compared without an early exit.
func constantTimeEquals(_ lhs: String, _ rhs: String) -> Bool {
    let left = SHA256.hash(data: Array(lhs.utf8))
    let right = SHA256.hash(data: Array(rhs.utf8))
    var difference: UInt8 = 0
    for (a, b) in zip(left, right) { difference |= a ^ b }
    return difference == 0
}

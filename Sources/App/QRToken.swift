import Broker
import Crypto
import Foundation

/// The pairing token a server-made session's QR code carries instead of the bare ID: `<issued>.<mac>`, the second it
/// was issued (decimal) and an HMAC-SHA256 of the ID and that second keyed with the session's reader key, cut to 16
/// bytes, base64url. Only the PC (the reader key's holder, through its node) can make one, any node can check one
/// without storing anything, and a photo of an old code opens nothing once its token is older than its lifetime.
enum QRToken {
    /// A token for `id` issued at `issuedAt` (seconds since the epoch).
    static func make(for id: SessionID, readerKey: String, issuedAt: Int64) -> String {
        String(issuedAt) + "." + mac(for: id, readerKey: readerKey, issuedAt: issuedAt)
    }

    /// Whether `token` was made for `id` with `readerKey` and is not older than `lifetime` seconds at `now` (seconds),
    /// nor more than a few seconds ahead of it (clocks of nodes differ a little). `token` is the request's: it is
    /// checked for shape before any arithmetic, so nothing it holds can trap.
    static func isGood(_ token: String?, for id: SessionID, readerKey: String?, now: Int64, lifetime: Int64) -> Bool {
        guard let token, let readerKey, token.utf8.count <= 40 else { return false }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, (1...12).contains(parts[0].utf8.count), parts[0].utf8.allSatisfy({ (0x30...0x39).contains($0) }),
            let issuedAt = Int64(parts[0]), String(issuedAt) == parts[0]  // one spelling per token: no leading zeros
        else { return false }
        // Both sides are below 10^12 here, so the difference cannot overflow.
        let age = now - issuedAt
        guard age >= -5, age <= lifetime else { return false }
        return constantTimeEquals(String(parts[1]), mac(for: id, readerKey: readerKey, issuedAt: issuedAt))
    }

    private static func mac(for id: SessionID, readerKey: String, issuedAt: Int64) -> String {
        let key = SymmetricKey(data: Array(readerKey.utf8))
        let code = HMAC<SHA256>.authenticationCode(for: Array("tandem-qr:\(id.rawValue):\(issuedAt)".utf8), using: key)
        return base64URL(Array(code.prefix(16)))
    }

    /// Base64url without padding (RFC 4648 §5), from Foundation's base64.
    static func base64URL(_ bytes: [UInt8]) -> String {
        String(
            Data(bytes).base64EncodedString().compactMap { character -> Character? in
                switch character {
                case "+": "-"
                case "/": "_"
                case "=": nil
                default: character
                }
            })
    }
}

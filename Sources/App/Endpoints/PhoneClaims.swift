import Broker
import HTTP
import NIOHTTP1

/// The phone's side of a session's claim (first scan wins, see docs/protocol.md): the phone key cookie, and the
/// claim each phone step is published with.
extension API {
    /// The phone key cookie's name: one per session, like the reader's.
    static func phoneCookieName(of id: SessionID) -> String { "tandem_phone_" + id.rawValue }

    /// The phone key the request presents: its cookie, when it has the shape Tandem gives keys (32 hex digits);
    /// anything else is no key at all.
    static func presentedPhoneKey(of request: Request, for id: SessionID) -> String? {
        guard let key = request.cookie(phoneCookieName(of: id)), key.utf8.count == 32,
            key.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
        else { return nil }
        return key
    }

    /// The claim a phone step is published with: the key the phone presents (checked against an existing claim),
    /// and a fresh key and pairing code, which claim the session if nobody has and `mayClaim`.
    static func phoneClaim(of request: Request, for id: SessionID, mayClaim: Bool) -> PhoneClaim {
        PhoneClaim(
            presentedKey: presentedPhoneKey(of: request, for: id), newKey: SessionID.randomHex128(),
            pairingCode: SessionRecord.randomPairingCode(), mayClaim: mayClaim)
    }

    /// Adds the phone key cookie to `response` when this request's step claimed the session (the record holds the
    /// step's new key).
    func settingPhoneCookie(_ response: Response, claim: PhoneClaim, record: SessionRecord?, request: Request) -> Response {
        guard let record, record.phoneKey == claim.newKey else { return response }
        var response = response
        response.headers.add(name: "Set-Cookie", value: sessionCookie(named: Self.phoneCookieName(of: record.id), of: record, key: claim.newKey, request: request))
        return response
    }

    /// Whether the request's phone is the one that claimed `record` (true while nobody has).
    static func isClaimant(_ request: Request, of record: SessionRecord) -> Bool {
        guard let holder = record.phoneKey else { return true }
        return constantTimeEquals(presentedPhoneKey(of: request, for: record.id) ?? "", holder)
    }
}

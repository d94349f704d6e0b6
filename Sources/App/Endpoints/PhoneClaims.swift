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

    /// A claim with a key and pairing code made now, which claims the session if nobody has and `mayClaim`.
    static func freshClaim(mayClaim: Bool) -> PhoneClaim {
        let (key, pairingCode) = SessionRecord.randomPhoneKeyAndPairingCode()
        return PhoneClaim(presentedKey: nil, newKey: key, pairingCode: pairingCode, mayClaim: mayClaim)
    }

    /// Publishes a phone step. A phone that presents a key is checked against the session's claim, and claims
    /// nothing with it (a key it has is the claim's, or one planted in its browser); only when nobody claimed the
    /// session yet and the step `mayClaim` is it published again, with a key made now. A phone that presents none
    /// gets a key made now at once. The common steps (a claimed session, its phone's cookie) cost one publish and no
    /// key made.
    func publishPhoneStep(
        _ event: SessionEvent, to id: SessionID, request: Request, mayClaim: Bool, idempotencyKey: String?
    ) async throws -> (outcome: PublishOutcome, claim: PhoneClaim) {
        if let presented = Self.presentedPhoneKey(of: request, for: id) {
            let claim = PhoneClaim(presentedKey: presented, newKey: "", pairingCode: "", mayClaim: false)
            let outcome = try await broker.publish(event, to: id, from: claim, idempotencyKey: idempotencyKey)
            guard case .notClaimed = outcome, mayClaim else { return (outcome, claim) }
        }
        let claim = Self.freshClaim(mayClaim: mayClaim)
        do {
            return (try await broker.publish(event, to: id, from: claim, idempotencyKey: idempotencyKey), claim)
        } catch let error as BrokerError where error.code == .unavailable && mayClaim {
            // The step may have claimed the session before the failure (its reply lost with a dying Redis master, or
            // stored short of the replicas `WAIT` asked for): the phone gets the key it offered with the 503, or its
            // retry would be refused as another device's. A key that claimed nothing is harmless: the retry claims
            // anew with a key made then. The session's lifetime is unknown here (it may be another node's TTL), so
            // the cookie lives as long as any node lets a session live.
            let cookie = sessionCookie(
                named: Self.phoneCookieName(of: id), lifetime: Int64(TandemConfiguration.sessionTTLSecondsRange.upperBound), key: claim.newKey,
                request: request)
            throw BrokerUnavailableAfterOffer(error: error, cookie: cookie)
        }
    }

    /// Adds the phone key cookie to `response` when this request's step claimed the session (the session holds the
    /// step's new key).
    func settingPhoneCookie(_ response: Response, claim: PhoneClaim, session: SessionSummary?, request: Request) -> Response {
        guard let session, session.phoneKey == claim.newKey else { return response }
        var response = response
        let cookie = sessionCookie(
            named: Self.phoneCookieName(of: session.id), createdAt: session.createdAt, expiresAt: session.expiresAt, key: claim.newKey,
            request: request)
        response.headers.add(name: "Set-Cookie", value: cookie)
        return response
    }

    /// A broker outage met by a step that offered a key: answered 503 like any outage, with the key's cookie.
    struct BrokerUnavailableAfterOffer: Error {
        let error: BrokerError
        let cookie: String
    }

    /// Whether the request's phone is the one that claimed `record` (true while nobody has).
    static func isClaimant(_ request: Request, of record: SessionRecord) -> Bool {
        guard let holder = record.phoneKey else { return true }
        return constantTimeEquals(presentedPhoneKey(of: request, for: record.id) ?? "", holder)
    }
}

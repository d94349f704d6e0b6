import JSON

/// A log entry as the publish script writes it (cjson): `{"id":3,"event":"complete","name":"…","phone":"…","t":"…"}`,
/// keys in any order. Decoded by hand: every delivered event passes here, and Foundation's `JSONDecoder` was a tenth
/// of a node's CPU under load.
enum RedisLogEntry {
    /// Publish times (microseconds since the epoch) an entry can carry: the record's time range, in microseconds.
    static let validPublishTimes: ClosedRange<Int64> =
        SessionRecord.validTimes.lowerBound * 1000...SessionRecord.validTimes.upperBound * 1000 + 999

    /// The event of a log entry, or nil when the entry is malformed or out of range: an id outside
    /// ``StoredEvent/validIDs`` or above `lastEventID` (the record's, when known: the log cannot be ahead of its
    /// record), a publish time outside ``validPublishTimes``, an unknown event, or a key it reads given twice. Every node
    /// decodes what any writer put in Redis, so nothing here may trap, and nothing absurd may reach the streams.
    static func decode(_ bytes: [UInt8], lastEventID: EventID = StoredEvent.validIDs.upperBound) -> StoredEvent? {
        var reader = FlatJSONReader(bytes)
        var id: UInt64?
        var name: String?
        var phone: String?
        var form: Submission?
        var eventName: String?
        var publishedAt: Int64?
        // The keys read so far, one bit each (a Set of strings cost an allocation per entry).
        var seen: UInt8 = 0
        var reason: CancelReason?
        var pairingCode: String?
        guard reader.beginObject() else { return nil }
        while let key = reader.nextKey() {
            // A key given twice means two writers disagree; neither value can be trusted. Keys this decoder does
            // not read are skipped, once or twice.
            let bit: UInt8 =
                switch key {
                case "id": 1
                case "event": 2
                case "name": 4
                case "phone": 8
                case "t": 16
                case "reason": 32
                case "code": 64
                case "form": 128
                default: 0
                }
            guard seen & bit == 0 else { return nil }
            seen |= bit
            switch key {
            case "id": id = reader.unsignedInteger()
            case "event": eventName = reader.string()
            case "name": name = reader.string()
            case "phone": phone = reader.string()
            // Publish time in microseconds since the epoch, a string: cjson would print a large number with an exponent.
            case "t":
                guard let text = reader.string(), let value = Int64(text), validPublishTimes.contains(value) else { return nil }
                publishedAt = value
            case "reason": reason = reader.string().flatMap(CancelReason.init(rawValue:))
            // A configured form, as the publish script stored it (JSON text in a string).
            case "form":
                guard let text = reader.string(), let submitted = Submission(formText: text) else { return nil }
                form = submitted
            case "code":
                guard let code = reader.string(), SessionRecord.isPairingCode(code) else { return nil }
                pairingCode = code
            default: guard reader.skipValue() else { return nil }
            }
            guard !reader.failed else { return nil }
        }
        guard reader.endedCleanly, let id, StoredEvent.validIDs.contains(id), id <= lastEventID, let eventName else { return nil }
        let event: SessionEvent
        switch eventName {
        case "connected": event = .connected(pairingCode: pairingCode)
        case "phone-left": event = .phoneLeft
        case "phone-returned": event = .phoneReturned
        case "input-started": event = .inputStarted
        case "complete":
            // One form or the other: an entry with both was not written by Tandem.
            if let form {
                guard name == nil, phone == nil else { return nil }
                event = .complete(form)
            } else {
                event = .complete(Submission(name: name ?? "", phone: phone ?? ""))
            }
        case "cancelled":
            guard let reason else { return nil }
            event = .cancelled(reason)
        default: return nil
        }
        return StoredEvent(id: id, event: event, publishedAt: publishedAt ?? 0)
    }
}

extension SessionSummary {
    /// The summary a publish script answers with, `{status, createdAt, expiresAt, phoneKey, pairingCode}` (null for
    /// none), of the step that stored event `lastEventID`; nil when a value is missing, malformed or out of range, as
    /// for a whole record (``SessionRecord/init(id:fields:)``).
    init?(id: SessionID, lastEventID: EventID, fields reply: RESPValue) {
        guard let parts = reply.array, parts.count == 5,
            let status = parts[0].string.flatMap(SessionStatus.init(rawValue:)),
            let (createdAt, expiresAt) = SessionRecord.times(parts[1].string, parts[2].string)
        else { return nil }
        let phoneKey = parts[3].string
        let pairingCode = parts[4].string
        // The claim: a key as Tandem makes them, a code of four digits, both or neither; a value that is neither a
        // string nor null is no value at all.
        guard phoneKey != nil || parts[3] == .null, pairingCode != nil || parts[4] == .null,
            SessionRecord.isClaim(phoneKey: phoneKey, pairingCode: pairingCode)
        else { return nil }
        self.init(
            id: id, status: status, lastEventID: lastEventID, createdAt: createdAt, expiresAt: expiresAt, phoneKey: phoneKey,
            pairingCode: pairingCode)
    }
}

extension SessionRecord {
    /// A stored creation and expiry time (decimal text), when both are ``validTimes`` and the session is not
    /// created after it expires.
    static func times(_ createdAtText: String?, _ expiresAtText: String?) -> (createdAt: Int64, expiresAt: Int64)? {
        guard let createdAt = createdAtText.flatMap({ Int64($0) }), validTimes.contains(createdAt),
            let expiresAt = expiresAtText.flatMap({ Int64($0) }), validTimes.contains(expiresAt), createdAt <= expiresAt
        else { return nil }
        return (createdAt, expiresAt)
    }

    /// Whether a stored claim is one Tandem makes: a key of 1 to 64 bytes and a pairing code, both or neither.
    static func isClaim(phoneKey: String?, pairingCode: String?) -> Bool {
        switch (phoneKey, pairingCode) {
        case (nil, nil): true
        case (let key?, let code?): (1...64).contains(key.utf8.count) && isPairingCode(code)
        default: false
        }
    }

    /// A record from a session hash's HGETALL reply; nil when a field is missing, malformed or out of range (times
    /// outside ``validTimes`` or expiring before created, an unknown status, a last event id above
    /// ``StoredEvent/validIDs``, half a submission), or the reply is not pairs of distinct string keys.
    init?(id: SessionID, fields reply: RESPValue) {
        guard let parts = reply.array, parts.count >= 2, parts.count.isMultiple(of: 2) else { return nil }
        // Every phone step and stream open decodes one of these, so the fields go straight into locals: no dictionary
        // of every field is built (that was a tenth of a Redis flow's decoding). A field name given twice is refused,
        // whatever the field: two writers disagree.
        var createdAtText, expiresAtText, statusText, lastEventIDText: String?
        var name, phone, form, readerKey, phoneKey, pairingCode, phoneAway, cancelReasonText: String?
        var idempotencyKeys: [SessionStatus: String] = [:]
        var otherFields: [String] = []
        func keep(_ value: String, in slot: inout String?) -> Bool {
            guard slot == nil else { return false }
            slot = value
            return true
        }
        var index = 0
        while index + 1 < parts.count {
            guard let key = parts[index].string, let value = parts[index + 1].string else { return nil }
            index += 2
            let kept: Bool
            switch key {
            case "createdAt": kept = keep(value, in: &createdAtText)
            case "expiresAt": kept = keep(value, in: &expiresAtText)
            case "status": kept = keep(value, in: &statusText)
            case "lastEventID": kept = keep(value, in: &lastEventIDText)
            case "name": kept = keep(value, in: &name)
            case "phone": kept = keep(value, in: &phone)
            case "form": kept = keep(value, in: &form)
            case "readerKey": kept = keep(value, in: &readerKey)
            case "phoneKey": kept = keep(value, in: &phoneKey)
            case "pairingCode": kept = keep(value, in: &pairingCode)
            case "phoneAway": kept = keep(value, in: &phoneAway)
            case "cancelReason": kept = keep(value, in: &cancelReasonText)
            default:
                if key.hasPrefix("idem:") {
                    guard let keyed = SessionStatus(rawValue: String(key.dropFirst("idem:".count))) else { return nil }
                    kept = idempotencyKeys.updateValue(value, forKey: keyed) == nil
                } else {
                    // Fields this node does not read (phoneSeen, or a newer node's): only checked for repeats.
                    kept = !otherFields.contains(key)
                    otherFields.append(key)
                }
            }
            guard kept else { return nil }
        }
        guard let (createdAt, expiresAt) = Self.times(createdAtText, expiresAtText),
            let status = statusText.flatMap(SessionStatus.init(rawValue:)),
            let lastEventID = lastEventIDText.flatMap({ EventID($0) }), lastEventID <= StoredEvent.validIDs.upperBound
        else { return nil }
        var submission: Submission?
        switch (name, phone, form) {
        case (let name?, let phone?, nil): submission = Submission(name: name, phone: phone)
        case (nil, nil, let form?):
            guard let submitted = Submission(formText: form) else { return nil }
            submission = submitted
        case (nil, nil, nil): break
        default: return nil
        }
        // The claim: a key as Tandem makes them, a code of four digits, both or neither.
        guard Self.isClaim(phoneKey: phoneKey, pairingCode: pairingCode) else { return nil }
        var cancelReason: CancelReason?
        if let cancelReasonText {
            guard let known = CancelReason(rawValue: cancelReasonText) else { return nil }
            cancelReason = known
        }
        self.init(
            id: id, createdAt: createdAt, expiresAt: expiresAt, status: status, submission: submission,
            lastEventID: lastEventID, readerKey: readerKey, idempotencyKeys: idempotencyKeys, phoneKey: phoneKey,
            pairingCode: pairingCode, phoneAway: phoneAway == "1", cancelReason: cancelReason)
    }
}

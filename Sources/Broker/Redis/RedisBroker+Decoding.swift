/// A log entry as the publish script writes it (cjson): `{"id":3,"event":"complete","name":"…","phone":"…","t":"…"}`,
/// keys in any order. Decoded by hand: every delivered event passes here, and Foundation's `JSONDecoder` was a tenth
/// of a node's CPU under load.
enum RedisLogEntry {
    /// Publish times (microseconds since the epoch) an entry can carry: the record's time range, in microseconds.
    static let validPublishTimes: ClosedRange<Int64> =
        SessionRecord.validTimes.lowerBound * 1000...SessionRecord.validTimes.upperBound * 1000 + 999

    /// The event of a log entry, or nil when the entry is malformed or out of range: an id outside
    /// ``StoredEvent/validIDs`` or above `lastEventID` (the record's, when known: the log cannot be ahead of its
    /// record), a publish time outside ``validPublishTimes``, an unknown event, or a key given twice. Every node
    /// decodes what any writer put in Redis, so nothing here may trap, and nothing absurd may reach the streams.
    static func decode(_ bytes: [UInt8], lastEventID: EventID = StoredEvent.validIDs.upperBound) -> StoredEvent? {
        var reader = FlatJSONReader(bytes)
        var id: UInt64?
        var name: String?
        var phone: String?
        var eventName: String?
        var publishedAt: Int64?
        var seen: Set<String> = []
        var reason: CancelReason?
        var pairingCode: String?
        guard reader.beginObject() else { return nil }
        while let key = reader.nextKey() {
            // A key given twice means two writers disagree; neither value can be trusted.
            guard seen.insert(key).inserted else { return nil }
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
        case "complete": event = .complete(Submission(name: name ?? "", phone: phone ?? ""))
        case "cancelled":
            guard let reason else { return nil }
            event = .cancelled(reason)
        default: return nil
        }
        return StoredEvent(id: id, event: event, publishedAt: publishedAt ?? 0)
    }
}

/// Reads one JSON object whose values are strings, integers, booleans or null (what cjson makes of a flat Lua table).
/// Anything else, or malformed input, sets `failed`.
struct FlatJSONReader {
    private let bytes: [UInt8]
    private var index = 0
    private(set) var failed = false
    private var closed = false
    private var pairsRead = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// True once the object's closing brace was read and only whitespace follows.
    var endedCleanly: Bool {
        var copy = self
        copy.skipWhitespace()
        return closed && !failed && copy.index == bytes.count
    }

    mutating func beginObject() -> Bool {
        skipWhitespace()
        return consume(UInt8(ascii: "{"))
    }

    /// The next key, or nil at the end of the object (or on an error).
    mutating func nextKey() -> String? {
        guard !failed, !closed else { return nil }
        skipWhitespace()
        if consume(UInt8(ascii: "}")) {
            closed = true
            return nil
        }
        if pairsRead > 0 {
            guard consume(UInt8(ascii: ",")) else { return fail() }
            skipWhitespace()
        }
        guard let key = string() else { return fail() }
        skipWhitespace()
        guard consume(UInt8(ascii: ":")) else { return fail() }
        skipWhitespace()
        pairsRead += 1
        return key
    }

    mutating func string() -> String? {
        guard consume(UInt8(ascii: "\"")) else { return fail() }
        var utf8: [UInt8] = []
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                guard let text = String(validating: utf8, as: UTF8.self) else { return fail() }
                return text
            case UInt8(ascii: "\\"):
                guard index < bytes.count else { return fail() }
                let escaped = bytes[index]
                index += 1
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escaped)
                case UInt8(ascii: "b"): utf8.append(0x08)
                case UInt8(ascii: "f"): utf8.append(0x0C)
                case UInt8(ascii: "n"): utf8.append(0x0A)
                case UInt8(ascii: "r"): utf8.append(0x0D)
                case UInt8(ascii: "t"): utf8.append(0x09)
                case UInt8(ascii: "u"):
                    guard var scalar = hex4() else { return fail() }
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard consume(UInt8(ascii: "\\")), consume(UInt8(ascii: "u")), let low = hex4(), (0xDC00..<0xE000).contains(low) else { return fail() }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let unicode = Unicode.Scalar(scalar) else { return fail() }
                    utf8.append(contentsOf: Character(unicode).utf8)
                default: return fail()
                }
            case 0..<0x20: return fail()
            default: utf8.append(byte)
            }
        }
        return fail()
    }

    mutating func unsignedInteger() -> UInt64? {
        var value: UInt64 = 0
        var digits = 0
        while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(bytes[index] - UInt8(ascii: "0")))
            guard !overflow1, !overflow2 else { return fail() }
            value = sum
            digits += 1
            index += 1
        }
        guard digits > 0 else { return fail() }
        return value
    }

    /// Skips a string, number, boolean or null.
    mutating func skipValue() -> Bool {
        guard index < bytes.count else { return refuse() }
        switch bytes[index] {
        case UInt8(ascii: "\""): return string() != nil
        case UInt8(ascii: "t"): return literal("true")
        case UInt8(ascii: "f"): return literal("false")
        case UInt8(ascii: "n"): return literal("null")
        default:
            let start = index
            while index < bytes.count, "-+.eE0123456789".utf8.contains(bytes[index]) { index += 1 }
            return index > start || (refuse())
        }
    }

    private mutating func literal(_ word: String) -> Bool {
        for byte in word.utf8 {
            guard consume(byte) else { return refuse() }
        }
        return true
    }

    private mutating func hex4() -> UInt32? {
        guard index + 4 <= bytes.count else { return nil }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            index += 1
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    private mutating func consume(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    private mutating func skipWhitespace() {
        while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
    }

    private mutating func fail<T>() -> T? {
        failed = true
        return nil
    }

    private mutating func refuse() -> Bool {
        failed = true
        return false
    }
}

extension SessionRecord {
    /// A record from a session hash's HGETALL reply; nil when a field is missing, malformed or out of range (times
    /// outside ``validTimes`` or expiring before created, an unknown status, a last event id above
    /// ``StoredEvent/validIDs``, half a submission), or the reply is not pairs of distinct string keys.
    init?(id: SessionID, fields reply: RESPValue) {
        guard let parts = reply.array, parts.count >= 2, parts.count.isMultiple(of: 2) else { return nil }
        var fields: [String: String] = [:]
        var index = 0
        while index + 1 < parts.count {
            guard let key = parts[index].string, let value = parts[index + 1].string, fields.updateValue(value, forKey: key) == nil else {
                return nil
            }
            index += 2
        }
        guard let createdAt = fields["createdAt"].flatMap({ Int64($0) }), Self.validTimes.contains(createdAt),
            let expiresAt = fields["expiresAt"].flatMap({ Int64($0) }), Self.validTimes.contains(expiresAt), createdAt <= expiresAt,
            let status = fields["status"].flatMap(SessionStatus.init(rawValue:)),
            let lastEventID = fields["lastEventID"].flatMap({ EventID($0) }), lastEventID <= StoredEvent.validIDs.upperBound
        else { return nil }
        var submission: Submission?
        switch (fields["name"], fields["phone"]) {
        case (let name?, let phone?): submission = Submission(name: name, phone: phone)
        case (nil, nil): break
        default: return nil
        }
        var idempotencyKeys: [SessionStatus: String] = [:]
        for (field, value) in fields where field.hasPrefix("idem:") {
            guard let keyed = SessionStatus(rawValue: String(field.dropFirst("idem:".count))) else { return nil }
            idempotencyKeys[keyed] = value
        }
        // The claim: a key as Tandem makes them, a code of four digits, both or neither.
        let phoneKey = fields["phoneKey"]
        let pairingCode = fields["pairingCode"]
        guard (phoneKey == nil) == (pairingCode == nil) else { return nil }
        if let phoneKey, !(1...64).contains(phoneKey.utf8.count) { return nil }
        if let pairingCode, !Self.isPairingCode(pairingCode) { return nil }
        var cancelReason: CancelReason?
        if let reason = fields["cancelReason"] {
            guard let known = CancelReason(rawValue: reason) else { return nil }
            cancelReason = known
        }
        self.init(
            id: id, createdAt: createdAt, expiresAt: expiresAt, status: status, submission: submission,
            lastEventID: lastEventID, readerKey: fields["readerKey"], idempotencyKeys: idempotencyKeys, phoneKey: phoneKey,
            pairingCode: pairingCode, phoneAway: fields["phoneAway"] == "1", cancelReason: cancelReason)
    }
}

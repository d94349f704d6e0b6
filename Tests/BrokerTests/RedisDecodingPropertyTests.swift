import PropertyBased
import Testing

@testable import Broker

/// Every integer a Redis reply carries is checked before Tandem uses it: the decoders of log entries and session
/// records never trap, whatever bytes or field values they get, and refuse what is out of range. Each structured case
/// is compared with a model of the rules, written independently of the decoder.
@Suite struct RedisDecodingPropertyTests {
    /// Number-like tokens: the edges of every integer type and past them, signs, fractions, exponents, text.
    static let numberTokens = Gen<String>.oneOf(
        Gen.uint64().map { String($0) },
        Gen.int64().map { String($0) },
        Gen.uint64(in: 0...5).map { String($0) },
        pick([
            "0", "1", "3", "9007199254740991", "9007199254740992", "18446744073709551615", "18446744073709551616",
            "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-1", "-0", "007", "+5", " 5", "5 ",
            "1e3", "1.5", "0x10", "", "abc", "99999999999999999999999999", "253402300799999", "253402300800000",
            "253402300799999999", "253402300800000000", "1700000000000000",
        ])
    )

    /// One of `values` (never empty).
    static func pick<T: Sendable>(_ values: [T]) -> Generator<T, Shrink.None<T?>> {
        Gen<T?>.element(of: values).map { $0 ?? values[0] }
    }

    static let eventNames = pick(["connected", "input-started", "complete", "completed", "", "CONNECTED", "x"])
    static let statuses = pick(["waiting", "connected", "inputting", "completed", "", "done", "Waiting"])

    // MARK: Log entries

    @Test func randomBytesNeverTrapTheLogEntryDecoder() async {
        let bytes = Gen<UInt8>.oneOf(
            Gen.uint8(),
            Self.pick(Array(#"{}":,0123456789-+eE.tfnlrsu\ "#.utf8))
        ).array(of: 0...80)
        await propertyCheck(count: 1000, input: bytes) { (bytes: [UInt8]) in
            guard let event = RedisLogEntry.decode(bytes) else { return }
            #expect(StoredEvent.validIDs.contains(event.id))
            #expect(event.publishedAt == 0 || RedisLogEntry.validPublishTimes.contains(event.publishedAt))
        }
    }

    /// One generated entry: each field present or not, given once or twice, with any number-like value.
    struct EntryCase: CustomStringConvertible {
        var id: String?
        var event: String?
        var t: String?
        var duplicate: String?
        var lastEventID: EventID

        var json: [UInt8] {
            var pairs: [String] = []
            if let id { pairs.append(#""id":\#(id)"#) }
            if let event { pairs.append(#""event":"\#(event)""#) }
            if let t { pairs.append(#""t":"\#(t)""#) }
            pairs.append(#""name":"山田","phone":"090""#)
            if let duplicate { pairs.append(#""\#(duplicate)":"1""#) }
            return Array(("{" + pairs.joined(separator: ",") + "}").utf8)
        }

        /// What the decoder must answer, from the rules alone.
        var expected: StoredEvent? {
            var t = self.t
            switch duplicate {
            // A second id or event, or where there was none an id given as a string or the unknown event "1".
            case "name", "phone", "id", "event": return nil
            case "t": if t != nil { return nil } else { t = "1" }  // a second t, or the only one
            default: break
            }
            // The id is a JSON number: digits only, with JSON whitespace around it allowed.
            guard let id else { return nil }
            let digits = String(id.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
            guard !digits.isEmpty, digits.utf8.allSatisfy({ (48...57).contains($0) }), let value = UInt64(digits) else { return nil }
            guard value >= 1, value <= 9_007_199_254_740_991, value <= lastEventID else { return nil }
            var publishedAt: Int64 = 0
            if let t {
                guard let time = Int64(t), time >= 0, time <= 253_402_300_799_999_999 else { return nil }
                publishedAt = time
            }
            let kind: SessionEvent
            switch event {
            case "connected": kind = .connected()
            case "input-started": kind = .inputStarted
            case "complete": kind = .complete(Submission(name: "山田", phone: "090"))
            default: return nil
            }
            return StoredEvent(id: value, event: kind, publishedAt: publishedAt)
        }

        var description: String { String(decoding: json, as: UTF8.self) + " lastEventID=\(lastEventID)" }
    }

    @Test func logEntriesWithAnyFieldValuesAreDecodedExactlyWhenInRange() async {
        let cases = zip(
            Self.numberTokens.optional(valueRate: 0.9),
            Self.eventNames.optional(valueRate: 0.9),
            Self.numberTokens.optional(valueRate: 0.6),
            Self.pick(["id", "event", "t", "name", "phone", "other"]).optional(valueRate: 0.2),
            Gen<UInt64>.oneOf(Gen.uint64(), Gen.uint64(in: 0...4), Self.pick([9_007_199_254_740_991, UInt64.max]))
        ).map { (id: String?, event: String?, t: String?, duplicate: String?, last: UInt64) -> EntryCase in
            EntryCase(id: id, event: event, t: t, duplicate: duplicate, lastEventID: last)
        }
        await propertyCheck(count: 1000, input: cases) { (entry: EntryCase) in
            let decoded = RedisLogEntry.decode(entry.json, lastEventID: entry.lastEventID)
            #expect(decoded == entry.expected, "\(entry)")
            #expect(decoded?.publishedAt == entry.expected?.publishedAt, "\(entry)")
        }
    }

    @Test func theEdgesOfTheIdRangeAreExact() {
        func decode(_ id: String, last: EventID = StoredEvent.validIDs.upperBound) -> EventID? {
            RedisLogEntry.decode(Array(#"{"id":\#(id),"event":"connected"}"#.utf8), lastEventID: last)?.id
        }
        #expect(decode("1") == 1)
        #expect(decode("9007199254740991") == 9_007_199_254_740_991)
        #expect(decode("0") == nil)
        #expect(decode("9007199254740992") == nil)
        #expect(decode("18446744073709551615") == nil)
        #expect(decode("3", last: 2) == nil)
        #expect(decode("2", last: 2) == 2)
        #expect(RedisLogEntry.decode(Array(#"{"id":1,"event":"connected","t":"-1"}"#.utf8)) == nil)
        #expect(RedisLogEntry.decode(Array(#"{"id":1,"event":"connected","t":"x"}"#.utf8)) == nil)
        #expect(RedisLogEntry.decode(Array(#"{"id":1,"id":2,"event":"connected"}"#.utf8)) == nil)
    }

    // MARK: Session records

    /// One generated HGETALL reply: every field present or not, with any value, plus the shapes Redis never sends
    /// but a broken proxy or a bug could: a key twice, an odd count, a key that is not a string.
    struct RecordCase: CustomStringConvertible {
        var createdAt: String?
        var expiresAt: String?
        var status: String?
        var lastEventID: String?
        var name: String?
        var phone: String?
        var duplicate: String?
        var oddTail: Bool
        var integerKey: Bool

        var reply: RESPValue {
            var parts: [RESPValue] = []
            func add(_ key: String, _ value: String?) {
                if let value { parts += [.bulkString(Array(key.utf8)), .bulkString(Array(value.utf8))] }
            }
            add("createdAt", createdAt)
            add("expiresAt", expiresAt)
            add("status", status)
            add("lastEventID", lastEventID)
            add("name", name)
            add("phone", phone)
            add("readerKey", "k")
            if let duplicate { add(duplicate, "1") }
            if integerKey { parts += [.integer(1), .bulkString(Array("x".utf8))] }
            if oddTail { parts.append(.bulkString(Array("dangling".utf8))) }
            return .array(parts)
        }

        /// What the decoder must answer, from the rules alone.
        func expected(id: SessionID) -> SessionRecord? {
            guard !oddTail, !integerKey else { return nil }
            // The extra pair is a duplicate only when the field was there already; otherwise it gives the field "1".
            var (createdAt, expiresAt, status, lastEventID) = (self.createdAt, self.expiresAt, self.status, self.lastEventID)
            switch duplicate {
            case nil: break
            case "createdAt" where createdAt == nil: createdAt = "1"
            case "expiresAt" where expiresAt == nil: expiresAt = "1"
            case "status" where status == nil: status = "1"
            case "lastEventID" where lastEventID == nil: lastEventID = "1"
            default: return nil
            }
            let times: ClosedRange<Int64> = 0...253_402_300_799_999
            guard let created = createdAt.flatMap({ Int64($0) }), times.contains(created),
                let expires = expiresAt.flatMap({ Int64($0) }), times.contains(expires), created <= expires,
                let status = status.flatMap(SessionStatus.init(rawValue:)),
                let last = lastEventID.flatMap({ UInt64($0) }), last <= 9_007_199_254_740_991,
                (name == nil) == (phone == nil)
            else { return nil }
            let submission = name.flatMap { name in phone.map { Submission(name: name, phone: $0) } }
            return SessionRecord(
                id: id, createdAt: created, expiresAt: expires, status: status, submission: submission, lastEventID: last, readerKey: "k")
        }

        var description: String { "\(reply)" }
    }

    @Test func sessionRecordsWithAnyFieldValuesAreDecodedExactlyWhenInRange() async throws {
        let id = try #require(SessionID("prop_record"))
        let fields = zip(
            Self.numberTokens.optional(valueRate: 0.9),
            Self.numberTokens.optional(valueRate: 0.9),
            Self.statuses.optional(valueRate: 0.9),
            Self.numberTokens.optional(valueRate: 0.9),
            Self.pick(["山田", ""]).optional(valueRate: 0.3),
            Self.pick(["090", ""]).optional(valueRate: 0.3)
        )
        let shapes = zip(
            Self.pick(["createdAt", "expiresAt", "status", "lastEventID", "readerKey"]).optional(valueRate: 0.1),
            Gen<Int>.int(in: 0...19).map { (n: Int) -> Bool in n == 0 },
            Gen<Int>.int(in: 0...19).map { (n: Int) -> Bool in n == 0 }
        )
        await propertyCheck(count: 1000, input: fields, shapes) {
            (fields: (String?, String?, String?, String?, String?, String?), shapes: (String?, Bool, Bool)) in
            let generated = RecordCase(
                createdAt: fields.0, expiresAt: fields.1, status: fields.2, lastEventID: fields.3, name: fields.4, phone: fields.5,
                duplicate: shapes.0, oddTail: shapes.1, integerKey: shapes.2)
            #expect(SessionRecord(id: id, fields: generated.reply) == generated.expected(id: id), "\(generated)")
        }
    }

    /// The claim's fields come from Redis too: a phone key of 1 to 64 bytes and a pairing code of four ASCII digits,
    /// both or neither; a known cancel reason; anything else makes the record unreadable, never a trap.
    @Test func theClaimFieldsOfARecordAreDecodedExactlyWhenInShape() async throws {
        let id = try #require(SessionID("prop_claim"))
        let keys = Gen<String>.oneOf(
            Gen.character(in: "a"..."f").string(of: 0...80), Self.pick(["", "é", String(repeating: "k", count: 64), String(repeating: "k", count: 65)]))
        let codes = Gen<String>.oneOf(
            Gen.character(in: "0"..."9").string(of: 0...6), Self.pick(["0042", "٠١٢٣", "12a4", " 123", "", "99999"]))
        let reasons = Self.pick(["pc-cancelled", "pc-left", "phone-rejected", "", "PC-LEFT", "other"])
        let away = Self.pick(["1", "0", "", "yes"])
        await propertyCheck(count: 1000, input: keys.optional(valueRate: 0.7), codes.optional(valueRate: 0.7), reasons.optional(valueRate: 0.3), away.optional(valueRate: 0.5)) {
            (key: String?, code: String?, reason: String?, phoneAway: String?) in
            var parts: [RESPValue] = []
            for (field, value) in [("createdAt", "1"), ("expiresAt", "2"), ("status", "connected"), ("lastEventID", "1")] {
                parts += [.bulkString(Array(field.utf8)), .bulkString(Array(value.utf8))]
            }
            for (field, value) in [("phoneKey", key), ("pairingCode", code), ("cancelReason", reason), ("phoneAway", phoneAway)] {
                if let value { parts += [.bulkString(Array(field.utf8)), .bulkString(Array(value.utf8))] }
            }
            // The model, written from the rules alone.
            let keyGood = key.map { (1...64).contains($0.utf8.count) } ?? true
            let codeGood = code.map { $0.utf8.count == 4 && $0.utf8.allSatisfy { (48...57).contains($0) } } ?? true
            let reasonGood = reason.map { ["pc-cancelled", "pc-left", "phone-rejected"].contains($0) } ?? true
            let readable = (key == nil) == (code == nil) && keyGood && codeGood && reasonGood
            let record = SessionRecord(id: id, fields: .array(parts))
            #expect((record != nil) == readable, "\(String(describing: key)) \(String(describing: code)) \(String(describing: reason))")
            if let record {
                #expect(record.phoneKey == key && record.pairingCode == code && record.cancelReason?.rawValue == reason)
                #expect(record.phoneAway == (phoneAway == "1"))
            }
        }
    }

    /// A `connected` entry's pairing code is four ASCII digits or the entry is refused.
    @Test func theCodeOfAConnectedEntryIsTakenOnlyInShape() async {
        let codes = Gen<String>.oneOf(Gen.character(in: "0"..."9").string(of: 0...6), Self.pick(["٠١٢٣", "12a4", "", "0000"]))
        await propertyCheck(count: 500, input: codes) { (code: String) in
            let decoded = RedisLogEntry.decode(Array(#"{"id":1,"event":"connected","code":"\#(code)","t":"1"}"#.utf8))
            let good = code.utf8.count == 4 && code.utf8.allSatisfy { (48...57).contains($0) }
            #expect(decoded == (good ? StoredEvent(id: 1, event: .connected(pairingCode: code)) : nil), "\(code)")
        }
    }

    /// A publish script's summary, `{status, createdAt, expiresAt, phoneKey, pairingCode}`: each value any number-like
    /// token, status word, key, code, null or a value of another RESP type, and sometimes an element short or one too
    /// many. The decoder answers exactly what the rules allow, never traps.
    @Test func publishSummariesWithAnyValuesAreDecodedExactlyWhenInRange() async throws {
        let id = try #require(SessionID("prop_summary"))
        let odd = Self.pick([RESPValue.null, .integer(1), .array([]), .error("ERR"), .simpleString("connected")])
        let keys = Gen<String>.oneOf(
            Gen.character(in: "a"..."f").string(of: 0...70), Self.pick(["", "é", String(repeating: "k", count: 64), String(repeating: "k", count: 65)]))
        let codes = Gen<String>.oneOf(Gen.character(in: "0"..."9").string(of: 0...6), Self.pick(["0042", "٠١٢٣", "12a4", " 123", ""]))
        let values = zip(
            Gen<RESPValue>.oneOf(Self.statuses.map { RESPValue.bulkString(Array($0.utf8)) }, odd),
            Gen<RESPValue>.oneOf(Self.numberTokens.map { RESPValue.bulkString(Array($0.utf8)) }, odd),
            Gen<RESPValue>.oneOf(Self.numberTokens.map { RESPValue.bulkString(Array($0.utf8)) }, odd),
            Gen<RESPValue>.oneOf(keys.map { RESPValue.bulkString(Array($0.utf8)) }, odd, Self.pick([RESPValue.null])),
            Gen<RESPValue>.oneOf(codes.map { RESPValue.bulkString(Array($0.utf8)) }, odd, Self.pick([RESPValue.null])),
            Gen<Int>.int(in: 0...9)
        )
        await propertyCheck(count: 2000, input: values) {
            (values: (RESPValue, RESPValue, RESPValue, RESPValue, RESPValue, Int)) in
            var parts = [values.0, values.1, values.2, values.3, values.4]
            if values.5 == 0 { parts.removeLast() }
            if values.5 == 1 { parts.append(.null) }
            // The model, from the rules alone.
            func bulk(_ value: RESPValue) -> String? {
                switch value {
                case .bulkString(let bytes): String(decoding: bytes, as: UTF8.self)
                case .simpleString(let text): text
                default: nil
                }
            }
            func time(_ value: RESPValue) -> Int64? { bulk(value).flatMap { Int64($0) }.flatMap { (0...253_402_300_799_999).contains($0) ? $0 : nil } }
            var expected: SessionSummary?
            if parts.count == 5, let status = bulk(parts[0]).flatMap(SessionStatus.init(rawValue:)), let created = time(parts[1]),
                let expires = time(parts[2]), created <= expires
            {
                let key = bulk(parts[3])
                let code = bulk(parts[4])
                let keyShape = parts[3] == .null || key.map { (1...64).contains($0.utf8.count) } == true
                let codeShape = parts[4] == .null || code.map { $0.utf8.count == 4 && $0.utf8.allSatisfy { (48...57).contains($0) } } == true
                if keyShape, codeShape, (key == nil) == (code == nil) {
                    expected = SessionSummary(
                        id: id, status: status, lastEventID: 7, createdAt: created, expiresAt: expires, phoneKey: key, pairingCode: code)
                }
            }
            #expect(SessionSummary(id: id, lastEventID: 7, fields: .array(parts)) == expected, "\(parts)")
        }
    }

    @Test func randomRepliesNeverTrapTheRecordDecoder() async throws {
        let id = try #require(SessionID("prop_reply"))
        let element = Gen<RESPValue>.oneOf(
            Self.numberTokens.map { RESPValue.bulkString(Array($0.utf8)) },
            Self.pick(["createdAt", "expiresAt", "status", "lastEventID", "name", "phone", "waiting"]).map { RESPValue.bulkString(Array($0.utf8)) },
            Gen.int64().map { RESPValue.integer($0) },
            Gen.uint8().array(of: 0...8).map { RESPValue.bulkString($0) },
            Self.pick([RESPValue.null, .error("ERR"), .array([]), .simpleString("status")])
        )
        await propertyCheck(count: 1000, input: element.array(of: 0...16)) { (parts: [RESPValue]) in
            guard let record = SessionRecord(id: id, fields: .array(parts)) else { return }
            #expect(SessionRecord.validTimes.contains(record.createdAt) && SessionRecord.validTimes.contains(record.expiresAt))
            #expect(record.createdAt <= record.expiresAt)
            #expect(record.lastEventID <= StoredEvent.validIDs.upperBound)
        }
    }
}

/// A configured form's stored text (what Redis keeps for a form other than the article's) reads back exactly, and
/// any other text is refused, never a trap.
@Suite struct SubmissionFormTextTests {
    @Test func anyFormReadsBackFromItsText() async {
        // Names as a configured form has them (a reserved one would not have been configured).
        let names = Gen<String>.oneOf(Gen.character(in: "a"..."z").string(of: 1...32), RedisDecodingPropertyTests.pick(["a", "fullName", "x_1"]))
            .map { Submission.isFieldName($0) ? $0 : "f" + $0.prefix(30) }
        // Values as the server's checks let them through: no control or format characters.
        let values = Gen<String>.oneOf(
            Gen.character(in: "\u{20}"..."\u{7E}").string(of: 0...40), Gen.character(in: "\u{AE}"..."\u{FF}").string(of: 0...10),
            Gen.character(in: "\u{3000}"..."\u{30FF}").string(of: 0...10),
            RedisDecodingPropertyTests.pick(["\"", "\\", "山田🎉", "</script>", "👩\u{200D}💻"]))
        let fields = zip(names, values, Gen<Int>.int(in: 0...1).map { $0 == 1 }, Gen<Int>.int(in: 0...1).map { $0 == 1 }).map { (name: String, text: String, isFlag: Bool, flag: Bool) in
            Submission.Field(name, isFlag ? .flag(flag) : .text(text))
        }.array(of: 1...8)
        await propertyCheck(count: 500, input: fields) { (fields: [Submission.Field]) in
            var unique: [Submission.Field] = []
            for field in fields where !unique.contains(where: { $0.name == field.name }) { unique.append(field) }
            let form = Submission(fields: unique)
            #expect(Submission(formText: form.formText) == form, "\(form.formText)")
        }
    }

    @Test func malformedFormTextIsRefused() async {
        for text in ["", "{}", "[]", "{\"a\":1}", "{\"a\":null}", "{\"a\":\"x\",\"a\":\"y\"}", "{\"\":\"x\"}", "{\"a\":{\"b\":1}}", "{\"a\":\"x\"} x",
            "{\"" + String(repeating: "k", count: 33) + "\":\"x\"}", "{\"a\":\"\\ud800\"}", "{\"a\":tru}",
            // Planted in Redis: a reserved or ill-shaped name, a control or bidi character, an endless value.
            "{\"status\":\"waiting\"}", "{\"phoneAway\":true}", "{\"é 空\":\"x\"}", "{\"a\":\"x\\u0000\"}", "{\"a\":\"\\u202e\"}",
            "{\"a\":\"" + String(repeating: "x", count: 8001) + "\"}"]
        {
            #expect(Submission(formText: text) == nil, "\(text)")
        }
        let many = "{" + (0..<33).map { "\"k\($0)\":true" }.joined(separator: ",") + "}"
        #expect(Submission(formText: many) == nil)
        let texts = Gen<String>.oneOf(Gen.character(in: "\u{0}"..."\u{7F}").string(of: 0...60), Gen<Character?>.element(of: Array("\"{}:,tf1a\\")).map { $0 ?? "a" }.string(of: 0...30))
        await propertyCheck(count: 500, input: texts) { (text: String) in
            _ = Submission(formText: text)
        }
    }
}

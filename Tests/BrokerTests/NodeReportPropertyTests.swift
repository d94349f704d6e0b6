import PropertyBased
import Testing

@testable import Broker

/// The operators' page's reports as the Redis broker reads them back. The reading script answers the hash
/// `tandem:{ops}:nodes` as field, value, field, value, ..., and whatever wrote that hash decides what is in it.
/// `RedisBroker.liveReports(in:...)` (the decoding of that reply, out of `exchangeReport`) never traps, and keeps exactly
/// the fields that are reports: a name ``NodeReport/isAcceptableNodeName(_:)`` takes, a bulk string value
/// `<ms>\n<body>` whose stamp ends within the first 24 bytes and whose body is at most 8 KiB, stamped within the TTL
/// of now either way, and accepted by the caller. Those come back freshest first, at most `limit`; every other field
/// that has a name is to be deleted, except the node's own. Only the first 256 fields are looked at.
/// The expected answers come from a model written from those rules, not from the decoder.
@Suite struct NodeReportPropertyTests {
    // MARK: The model's rules

    /// The rule for names, as documented: not empty, at most 128 bytes, no control (Cc) or format (Cf) character.
    static func acceptableByTheRule(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 128
            && name.unicodeScalars.allSatisfy { $0.properties.generalCategory != .control && $0.properties.generalCategory != .format }
    }

    /// Fresh: stamped at most `ttl` before or after now, in exact arithmetic.
    static func isFresh(_ reportedAt: Int64, now: Int64, ttl: Int64) -> Bool {
        let age = Int128(now) - Int128(reportedAt)
        return -Int128(ttl) <= age && age <= Int128(ttl)
    }

    static let refused = Array("refused".utf8)
    static func accept(_ report: NodeReport) -> Bool { report.body != refused }

    // MARK: Generated fields

    /// One field of the hash as the script answers it, with what it means by the rules.
    struct Field: Sendable, CustomStringConvertible {
        var key: RESPValue
        var value: RESPValue
        /// The field's name as read (nil: the key is no string, so the field is skipped, not deleted).
        var name: String?
        /// When the value is a report by the rules: its stamp and body.
        var report: (reportedAt: Int64, body: [UInt8])?

        var description: String {
            let value = "\(self.value)"
            return "\(key) => \(value.count > 120 ? String(value.prefix(120)) + "…" : value)"
        }
    }

    struct Clock: Sendable {
        var now: Int64
        var ttl: Int64
    }

    static func randomClock(_ r: inout some RandomNumberGenerator) -> Clock {
        let now: Int64 =
            switch Int.random(in: 0...5, using: &r) {
            case 0: .min
            case 1: .max
            case 2: Int64.random(in: .min ... .max, using: &r)
            case 3: .min + Int64.random(in: 0...100_000, using: &r)
            case 4: .max - Int64.random(in: 0...100_000, using: &r)
            default: 1_700_000_000_000 + Int64.random(in: 0...100_000_000_000, using: &r)
            }
        let ttl: Int64 = pick([1, 5000, 15_000, Int64.random(in: 1...1_000_000, using: &r), .max], &r)
        return Clock(now: now, ttl: ttl)
    }

    static func pick<T>(_ values: [T], _ r: inout some RandomNumberGenerator) -> T {
        values[Int.random(in: 0..<values.count, using: &r)]
    }

    /// A stamp near now: at the edges of the TTL, inside, outside, at the edges of Int64.
    static func time(near clock: Clock, _ r: inout some RandomNumberGenerator) -> Int64 {
        let (now, ttl) = (Int128(clock.now), Int128(clock.ttl))
        let small = Int128(Int64.random(in: 0...min(clock.ttl, 1_000_000), using: &r))
        let t: Int128 =
            switch Int.random(in: 0...9, using: &r) {
            case 0: now
            case 1: now - ttl
            case 2: now - ttl - 1
            case 3: now + ttl
            case 4: now + ttl + 1
            case 5: now - small
            case 6: now + small
            case 7: Int128(pick([Int64.min, .max, 0, -1], &r))
            case 8: Int128(Int64.random(in: .min ... .max, using: &r))
            default: now - 2 * ttl - Int128(Int.random(in: 0...1000, using: &r))
            }
        return Int64(clamping: t)
    }

    static let goodNames = [
        "node-a", "host:8080", "東京-1", "é", "🎉x", String(repeating: "n", count: 128), "a b", "\u{FFFD}", "x\u{301}",
    ]
    static let badNames = [
        "", String(repeating: "n", count: 129), String(repeating: "é", count: 65), "a\u{0}b", "a\u{7}", "\u{7F}x", "x\u{85}",
        "a\u{200B}b", "evil\u{202E}gpj", "\u{FEFF}bom", "tag\u{E0001}", "soft\u{AD}hyphen", "line\nbreak",
    ]

    /// A key: good and bad names, a simple string, random bytes (maybe not UTF-8), or no string at all.
    static func randomKey(_ r: inout some RandomNumberGenerator) -> (RESPValue, String?) {
        switch Int.random(in: 0...9, using: &r) {
        case 0...3:
            let name = pick(goodNames, &r)
            return (.bulkString(Array(name.utf8)), name)
        case 4, 5:
            let name = pick(badNames, &r)
            return (.bulkString(Array(name.utf8)), name)
        case 6:
            let name = pick(goodNames + badNames, &r)
            return (.simpleString(name), name)
        case 7:
            let bytes = (0..<Int.random(in: 0...10, using: &r)).map { _ in UInt8.random(in: 0...255, using: &r) }
            return (.bulkString(bytes), String(decoding: bytes, as: UTF8.self))
        default:
            return (pick([.integer(1), .null, .array([]), .error("ERR x")], &r), nil)
        }
    }

    /// A stamp's text and the time it says by the rules (nil: not a stamp).
    static func randomStamp(for t: Int64, _ r: inout some RandomNumberGenerator) -> (String, Int64?) {
        switch Int.random(in: 0...5, using: &r) {
        case 0, 1, 2:
            return (String(t), t)
        case 3 where t >= 0:
            return ("+" + String(t), t)
        case 4 where t >= 0:
            // Leading zeros: a stamp fits when its newline is within the first 24 bytes.
            let text = String(repeating: "0", count: Int.random(in: 1...8, using: &r)) + String(t)
            return (text, text.utf8.count <= 23 ? t : nil)
        default:
            let junk = [
                "", "x", "1.5", " 5", "5 ", "1e3", "0x10", "9223372036854775808", "-9223372036854775809", "--1", "+-1", "٣", "12\r",
            ]
            return (pick(junk, &r), nil)
        }
    }

    static func randomBody(_ r: inout some RandomNumberGenerator) -> [UInt8] {
        switch Int.random(in: 0...7, using: &r) {
        case 0: return Array("{}".utf8)
        case 1: return Array(#"{"n":1}"#.utf8)
        case 2: return []
        case 3: return refused
        case 4: return Array("a\nb".utf8)
        case 5: return Array(repeating: UInt8(ascii: "x"), count: NodeReport.maximumBodyBytes + Int.random(in: 0...1, using: &r))
        default: return (0..<Int.random(in: 0...20, using: &r)).map { _ in UInt8.random(in: 0...255, using: &r) }
        }
    }

    static func randomField(_ clock: Clock, _ r: inout some RandomNumberGenerator) -> Field {
        let (key, name) = randomKey(&r)
        let t = time(near: clock, &r)
        switch Int.random(in: 0...9, using: &r) {
        case 0...6:
            let (stamp, reportedAt) = randomStamp(for: t, &r)
            let body = randomBody(&r)
            let bytes = Array(stamp.utf8) + [UInt8(ascii: "\n")] + body
            let isReport = reportedAt != nil && body.count <= NodeReport.maximumBodyBytes
            return Field(key: key, value: .bulkString(bytes), name: name, report: isReport ? (reportedAt!, body) : nil)
        case 7:
            return Field(key: key, value: .bulkString(Array(String(t).utf8)), name: name, report: nil)  // no newline
        case 8:
            return Field(key: key, value: .simpleString(String(t) + "\n{}"), name: name, report: nil)  // not a bulk string
        default:
            let value: RESPValue = pick([.integer(t), .null, .array([.bulkString(Array("1\n{}".utf8))]), .error("ERR")], &r)
            return Field(key: key, value: value, name: name, report: nil)
        }
    }

    /// A whole reply: a few generated fields, sometimes among 250 or so good fresh reports (so past the 256 looked at),
    /// sometimes with a dangling last element.
    struct Reply: Sendable, CustomStringConvertible {
        var clock: Clock
        var fields: [Field]
        var danglingTail: Bool
        var own: String
        var limit: Int

        var flat: [RESPValue] {
            fields.flatMap { [$0.key, $0.value] } + (danglingTail ? [.bulkString(Array("dangling".utf8))] : [])
        }

        var description: String {
            let shown = fields.filter { !($0.name ?? "").hasPrefix("pad-") }
            return "now=\(clock.now) ttl=\(clock.ttl) limit=\(limit) own=\(own) tail=\(danglingTail) fields=\(fields.count): "
                + shown.map(\.description).joined(separator: "; ")
        }
    }

    static let replies = Generator<Reply, Shrink.None<Reply>>(run: { rng in
        let clock = randomClock(&rng)
        var fields = (0..<Int.random(in: 0...10, using: &rng)).map { _ in randomField(clock, &rng) }
        if Int.random(in: 0...7, using: &rng) == 0 {
            for index in 0..<Int.random(in: 248...262, using: &rng) {
                let name = "pad-\(index)"
                let body = Array("{}".utf8)
                let padding = Field(
                    key: .bulkString(Array(name.utf8)), value: .bulkString(Array("\(clock.now)\n{}".utf8)), name: name,
                    report: (clock.now, body))
                fields.insert(padding, at: Int.random(in: 0...fields.count, using: &rng))
            }
        }
        let named = fields.compactMap(\.name)
        let own = !named.isEmpty && Bool.random(using: &rng) ? pick(named, &rng) : "own-node"
        let limit = pick([0, 1, 2, 64, Int.random(in: 0...300, using: &rng)], &rng)
        return Reply(clock: clock, fields: fields, danglingTail: Int.random(in: 0...4, using: &rng) == 0, own: own, limit: limit)
    })

    // MARK: Properties

    @Test func theReplyIsDecodedExactlyByTheRules() async {
        var kept = 0
        var deleted = 0
        await propertyCheck(count: 600, input: Self.replies) { (reply: Reply) in
            let (now, ttl) = (reply.clock.now, reply.clock.ttl)
            let (live, doomed) = RedisBroker.liveReports(
                in: reply.flat, own: reply.own, now: now, ttlMilliseconds: ttl, limit: reply.limit, accept: Self.accept)
            // The model: the first 256 fields, each a live report or (when it has a name) to be deleted.
            var candidates: [NodeReport] = []
            var expectedDoomed: [String] = []
            for field in reply.fields.prefix(RedisBroker.maximumNodeReportsRead) {
                guard let name = field.name else { continue }
                if Self.acceptableByTheRule(name), let (reportedAt, body) = field.report, Self.isFresh(reportedAt, now: now, ttl: ttl),
                    body != Self.refused
                {
                    candidates.append(NodeReport(node: name, reportedAt: reportedAt, body: body))
                } else if name != reply.own {
                    expectedDoomed.append(name)
                }
            }
            // The node's own report first (a limit reached by others never leaves it out), then the freshest.
            let ownTimes = candidates.filter { $0.node == reply.own }.map(\.reportedAt).sorted(by: >)
            let otherTimes = candidates.filter { $0.node != reply.own }.map(\.reportedAt).sorted(by: >)
            let expectedTimes = Array((ownTimes + otherTimes).prefix(reply.limit))
            #expect(live.map(\.reportedAt) == expectedTimes, "\(reply)")
            #expect(live.prefix(ownTimes.count).allSatisfy { $0.node == reply.own }, "\(reply)")
            for report in live {
                // Ties in time may come in any order, but each one is a candidate, taken at most as often as it is there.
                #expect(live.filter { $0 == report }.count <= candidates.filter { $0 == report }.count, "\(report) in \(reply)")
            }
            #expect(doomed == expectedDoomed, "\(reply)")
            kept += live.count
            deleted += doomed.count
        }
        // The generator reaches both outcomes.
        #expect(kept > 100 && deleted > 100, "kept \(kept), deleted \(deleted)")
    }

    struct AnyReply: Sendable {
        var clock: Clock
        var flat: [RESPValue]
        var own: String
        var limit: Int
    }

    static let anyReplies = Generator<AnyReply, Shrink.None<AnyReply>>(run: { rng in
        let clock = randomClock(&rng)
        func element(_ depth: Int, _ r: inout some RandomNumberGenerator) -> RESPValue {
            switch Int.random(in: 0...(depth > 0 ? 8 : 7), using: &r) {
            case 0: return .bulkString(Array(pick(goodNames + badNames, &r).utf8))
            case 1, 2:
                let stamp = pick([String(time(near: clock, &r)), "+1", "", "x", String(repeating: "9", count: 30)], &r)
                return .bulkString(Array((stamp + "\n" + pick(["{}", "refused", ""], &r)).utf8))
            case 3: return .bulkString((0..<Int.random(in: 0...30, using: &r)).map { _ in pick(Array("0123456789-+\n x{}".utf8), &r) })
            case 4: return .bulkString((0..<Int.random(in: 0...12, using: &r)).map { _ in UInt8.random(in: 0...255, using: &r) })
            case 5: return .integer(Int64.random(in: .min ... .max, using: &r))
            case 6: return .simpleString(pick(goodNames, &r))
            case 7: return pick([.null, .error("ERR"), .error("")], &r)
            default: return .array((0..<Int.random(in: 0...3, using: &r)).map { _ in element(depth - 1, &r) })
            }
        }
        let flat = (0..<Int.random(in: 0...24, using: &rng)).map { _ in element(2, &rng) }
        let own = pick(goodNames, &rng)
        return AnyReply(clock: clock, flat: flat, own: own, limit: pick([0, 1, 64, Int.random(in: 0...40, using: &rng)], &rng))
    })

    /// Replies of any shape (nested arrays, integers, errors, random bytes, stamps of any kind): no trap, and every
    /// report kept is one of the reply's fields, readable, fresh and accepted.
    @Test func repliesOfAnyShapeNeverTrapAndKeepOnlyFreshReports() async {
        await propertyCheck(count: 1000, input: Self.anyReplies) { (reply: AnyReply) in
            let (clock, flat, own, limit) = (reply.clock, reply.flat, reply.own, reply.limit)
            let (live, doomed) = RedisBroker.liveReports(
                in: flat, own: own, now: clock.now, ttlMilliseconds: clock.ttl, limit: limit, accept: Self.accept)
            let pairs = stride(from: 0, to: flat.count - 1, by: 2).map { (flat[$0], flat[$0 + 1]) }
            #expect(live.count <= limit)
            let others = live.drop { $0.node == own }
            #expect(!others.contains { $0.node == own }, "the node's own report first")
            #expect(zip(others, others.dropFirst()).allSatisfy { $0.reportedAt >= $1.reportedAt }, "then the freshest first")
            for report in live {
                #expect(Self.acceptableByTheRule(report.node) && report.body.count <= NodeReport.maximumBodyBytes)
                #expect(Self.isFresh(report.reportedAt, now: clock.now, ttl: clock.ttl) && Self.accept(report))
                let source = pairs.contains { key, value in
                    guard key.string == report.node, case .bulkString(let bytes) = value,
                        bytes.count > report.body.count, Array(bytes.suffix(report.body.count + 1)) == [UInt8(ascii: "\n")] + report.body
                    else { return false }
                    let stamp = bytes.prefix(bytes.count - report.body.count - 1)
                    return stamp.count < RedisBroker.maximumReportStampBytes && Int64(String(decoding: stamp, as: UTF8.self)) == report.reportedAt
                }
                #expect(source, "\(report) is none of the reply's fields: \(flat)")
            }
            #expect(!doomed.contains(own), "the node's own field is never deleted")
            for name in doomed { #expect(pairs.contains { $0.0.string == name }, "\(name) is no field's name") }
            #expect(live.count + doomed.count <= pairs.filter { $0.0.string != nil }.count)
        }
    }

    /// A field's value alone, any bytes: no trap, and what parses is the stamp, a newline and the body, as documented.
    @Test func anyValueBytesParseOnlyAsAStampAndABody() async {
        let bytes = Gen<UInt8>.oneOf(Gen.uint8(), Self.pickGen(Array("0123456789-+\n".utf8))).array(of: 0...40)
        await propertyCheck(count: 1500, input: bytes, Self.pickGen(Self.goodNames + Self.badNames)) { (bytes: [UInt8], name: String) in
            guard let report = RedisBroker.parseReport(node: name, value: .bulkString(bytes)) else { return }
            #expect(Self.acceptableByTheRule(name) && report.node == name)
            let newline = bytes.firstIndex(of: UInt8(ascii: "\n"))
            #expect(newline.map { $0 < RedisBroker.maximumReportStampBytes } == true)
            if let newline {
                #expect(Int64(String(decoding: bytes[..<newline], as: UTF8.self)) == report.reportedAt)
                #expect(Array(bytes[(newline + 1)...]) == report.body)
            }
        }
    }

    /// Freshness in exact arithmetic, for any stamp, clock and TTL (no trap at the edges of Int64).
    @Test func freshnessIsExactForAnyTimes() async {
        let times = Gen<Int64>.oneOf(Gen.int64(), Self.pickGen([Int64.min, .min + 1, -1, 0, 1, .max - 1, .max]), Gen.int64(in: -20_000...20_000))
        let ttls = Gen<Int64>.oneOf(Gen.int64(in: 0...Int64.max), Self.pickGen([0, 1, 5000, .max]), Gen.int64(in: 0...20_000))
        await propertyCheck(count: 3000, input: times, times, ttls) { (reportedAt: Int64, now: Int64, ttl: Int64) in
            let age = Int128(now) - Int128(reportedAt)
            let expected: RedisBroker.Freshness = age > Int128(ttl) ? .stale : age < -Int128(ttl) ? .future : .fresh
            #expect(RedisBroker.freshness(of: reportedAt, now: now, ttlMilliseconds: ttl) == expected, "\(reportedAt) \(now) \(ttl)")
        }
    }

    static func pickGen<T: Sendable>(_ values: [T]) -> Generator<T, Shrink.None<T?>> {
        Gen<T?>.element(of: values).map { $0 ?? values[0] }
    }
}

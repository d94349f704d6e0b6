import Broker
import Foundation
import PropertyBased
import Testing

@testable import App

/// Other nodes' reports for the operators' page are read from Redis, where anything may have been written: property
/// checks of `OpsNodeReport.validated` on any bytes and any JSON, of the round trip of a node's own report, and of
/// `OpsReporter.merge` and the saturating sums. The invariants are the documented ones (see `validated`'s comment and
/// docs/operations.md), and the expected answers come from a model written from those rules, not from the code.
@Suite struct OpsReportPropertyTests {
    // MARK: The documented rules

    static func isControlOrFormat(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.generalCategory == .control || scalar.properties.generalCategory == .format
    }

    /// The version as kept: at most 32 characters (scalars), none of them control or format ones.
    static func keptVersion(_ version: String) -> String {
        String(String.UnicodeScalarView(version.unicodeScalars.filter { !isControlOrFormat($0) }.prefix(32)))
    }

    /// Waiting pairings' creation times as kept: of the first five, those within `[now - TTL, now + skew]` (exact
    /// arithmetic), the ones ahead clamped to now.
    static func keptWaitingTimes(_ times: [Int64], _ clock: Clock) -> [Int64] {
        let (now, ttl, skew) = (Int128(clock.now), Int128(clock.ttl), Int128(clock.skew))
        return times.prefix(PairingTally.oldestWaitingShown).filter { now - ttl <= Int128($0) && Int128($0) <= now + skew }
            .map { min($0, clock.now) }
    }

    /// Whatever `validated` accepts: the node's name, acceptable; counts, uptime, rate and p99 within their bounds;
    /// the version short and clean; waiting times neither stale nor ahead of now; no report age yet.
    static func expectInvariants(
        _ report: OpsNodeReport, node: String, _ clock: Clock, _ context: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(report.name == node && NodeReport.isAcceptableNodeName(report.name), "\(context)", sourceLocation: sourceLocation)
        let counts = [report.pcStreams, report.phoneStreams, report.sessions] + report.pairings.counts
        #expect(counts.allSatisfy { 0 <= $0 && $0 <= OpsNodeReport.maximumCount }, "\(counts) \(context)", sourceLocation: sourceLocation)
        #expect(0 <= report.uptimeSeconds && report.uptimeSeconds <= OpsNodeReport.maximumUptimeSeconds, "\(context)", sourceLocation: sourceLocation)
        #expect(
            report.eventsPerSecond.isFinite && 0 <= report.eventsPerSecond && report.eventsPerSecond <= OpsNodeReport.maximumEventsPerSecond,
            "\(context)", sourceLocation: sourceLocation)
        if let p99 = report.brokerP99Milliseconds {
            #expect(p99.isFinite && 0 <= p99 && p99 <= OpsNodeReport.maximumBrokerP99Milliseconds, "\(context)", sourceLocation: sourceLocation)
        }
        #expect(report.version.unicodeScalars.count <= 32, "\(context)", sourceLocation: sourceLocation)
        #expect(!report.version.unicodeScalars.contains(where: isControlOrFormat), "\(context)", sourceLocation: sourceLocation)
        let waiting = report.oldestWaitingSince ?? []
        #expect(report.oldestWaitingSince != nil && waiting.count <= PairingTally.oldestWaitingShown, "\(context)", sourceLocation: sourceLocation)
        for since in waiting {
            #expect(since <= clock.now, "ahead of now: \(since) \(context)", sourceLocation: sourceLocation)
            #expect(Int128(since) >= Int128(clock.now) - Int128(clock.ttl), "stale: \(since) \(context)", sourceLocation: sourceLocation)
        }
        #expect(report.reportAgeSeconds == nil, "\(context)", sourceLocation: sourceLocation)
    }

    // MARK: Random values

    struct Clock: Sendable, CustomStringConvertible {
        var now: Int64
        var ttl: Int64
        var skew: Int64
        var description: String { "now=\(now) ttl=\(ttl) skew=\(skew)" }
    }

    static func pick<T>(_ values: [T], _ r: inout some RandomNumberGenerator) -> T {
        values[Int.random(in: 0..<values.count, using: &r)]
    }

    static func chance(_ p: Double, _ r: inout some RandomNumberGenerator) -> Bool { Double.random(in: 0..<1, using: &r) < p }

    /// Any clock, the edges of Int64 included; a session TTL up to a day (`session.ttlSeconds` allows 1 s to 86 400 s)
    /// and a skew up to a minute.
    static func randomClock(_ r: inout some RandomNumberGenerator) -> Clock {
        let now: Int64 =
            switch Int.random(in: 0...5, using: &r) {
            case 0: pick([.min, .max], &r)
            case 1: Int64.random(in: .min ... .max, using: &r)
            case 2: .min + Int64.random(in: 0...100_000_000, using: &r)
            case 3: .max - Int64.random(in: 0...100_000_000, using: &r)
            default: 1_700_000_000_000 + Int64.random(in: 0...100_000_000_000, using: &r)
            }
        let ttl: Int64 = pick([0, 1000, 600_000, 86_400_000, Int64.random(in: 0...86_400_000, using: &r)], &r)
        let skew: Int64 = pick([0, 5000, Int64.random(in: 0...60_000, using: &r)], &r)
        return Clock(now: now, ttl: ttl, skew: skew)
    }

    /// A time near the clock's window: its edges and one past them, inside, far outside, the edges of Int64.
    static func time(near clock: Clock, _ r: inout some RandomNumberGenerator) -> Int64 {
        let (now, ttl, skew) = (Int128(clock.now), Int128(clock.ttl), Int128(clock.skew))
        let t: Int128 =
            switch Int.random(in: 0...10, using: &r) {
            case 0: now
            case 1: now - ttl
            case 2: now - ttl - 1
            case 3: now + skew
            case 4: now + skew + 1
            case 5: now - Int128(Int64.random(in: 0...clock.ttl, using: &r))
            case 6: now + Int128(Int64.random(in: 0...clock.skew, using: &r))
            case 7: Int128(pick([Int64.min, .max, 0, -1], &r))
            case 8: Int128(Int64.random(in: .min ... .max, using: &r))
            default: now - 2 * ttl - Int128(Int.random(in: 1...1000, using: &r))
            }
        return Int64(clamping: t)
    }

    /// Scalars of every kind a name or version may hold or must not: ASCII, quotes and backslashes, controls, bidi
    /// and other format characters, combining marks, CJK, emoji.
    static func randomScalar(_ r: inout some RandomNumberGenerator) -> Unicode.Scalar {
        let ranges: [ClosedRange<UInt32>] = [
            0x20...0x7E, 0x20...0x7E, 0x0...0x1F, 0x7F...0xA0, 0xAD...0xAD, 0x200B...0x200F, 0x202A...0x202E, 0x2066...0x2069,
            0xFEFF...0xFEFF, 0xE0001...0xE0001, 0x300...0x36F, 0x3040...0x30FF, 0x4E00...0x4E20, 0x1F389...0x1F3A0, 0x22...0x22,
            0x5C...0x5C,
        ]
        return Unicode.Scalar(UInt32.random(in: pick(ranges, &r), using: &r)) ?? "?"
    }

    static func randomString(_ r: inout some RandomNumberGenerator, length: ClosedRange<Int> = 0...12) -> String {
        var scalars = String.UnicodeScalarView()
        for _ in 0..<Int.random(in: length, using: &r) { scalars.append(randomScalar(&r)) }
        return String(scalars)
    }

    /// A string without control or format characters (what a node's name or version may be).
    static func cleanString(_ r: inout some RandomNumberGenerator, length: ClosedRange<Int>) -> String {
        var scalars = String.UnicodeScalarView()
        let count = Int.random(in: length, using: &r)
        while scalars.count < count {
            let scalar = randomScalar(&r)
            if !isControlOrFormat(scalar) { scalars.append(scalar) }
        }
        return String(scalars)
    }

    /// Names the page takes, names it must refuse, random ones.
    static func randomNode(_ r: inout some RandomNumberGenerator) -> String {
        switch Int.random(in: 0...5, using: &r) {
        case 0, 1: return pick(["node-a", "host:8080", "東京-1", "🎉", String(repeating: "n", count: 128), "x\u{301}"], &r)
        case 2:
            return pick(
                [
                    "", String(repeating: "n", count: 129), String(repeating: "é", count: 65), "a\u{0}b", "a\u{7}", "\u{7F}x", "x\u{85}",
                    "a\u{200B}b", "evil\u{202E}gpj", "\u{FEFF}bom", "tag\u{E0001}", "soft\u{AD}hyphen",
                ], &r)
        case 3: return randomString(&r, length: 0...140)
        default: return randomString(&r, length: 1...12)
        }
    }

    // MARK: JSON of any shape

    /// A JSON value as text, with what its numbers mean, so that the model knows what a decoder gets from it. Objects
    /// keep their members in order and may repeat a key.
    indirect enum Shape: Sendable {
        case integer(Int64)
        /// Any other number token: a fraction, an exponent, an integer past Int64; its value (nil: past Double's range).
        case number(String, Double?)
        case string(String)
        case bool(Bool)
        case null
        case array([Shape])
        case object([Member])

        struct Member: Sendable {
            var key: String
            var value: Shape
        }

        var text: String {
            switch self {
            case .integer(let value): String(value)
            case .number(let token, _): token
            case .string(let text): Self.quoted(text)
            case .bool(let value): value ? "true" : "false"
            case .null: "null"
            case .array(let items): "[" + items.map(\.text).joined(separator: ",") + "]"
            case .object(let members): "{" + members.map { Self.quoted($0.key) + ":" + $0.value.text }.joined(separator: ",") + "}"
            }
        }

        /// JSON string syntax: controls escaped as they must be; other non-ASCII scalars sometimes escaped (odd ones,
        /// as `\uXXXX`, surrogate pairs past the BMP), sometimes raw.
        static func quoted(_ text: String) -> String {
            var out = "\""
            for scalar in text.unicodeScalars {
                switch scalar.value {
                case 0x22: out += "\\\""
                case 0x5C: out += "\\\\"
                case 0..<0x20: out += escaped(UInt16(scalar.value))
                case 0x80... where scalar.value % 2 == 1:
                    for unit in String(scalar).utf16 { out += escaped(unit) }
                default: out.unicodeScalars.append(scalar)
                }
            }
            return out + "\""
        }

        static func escaped(_ unit: UInt16) -> String {
            let hex = String(unit, radix: 16)
            return "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        }
    }

    /// Number tokens: the edges of Int64 and of every bound, past them, fractions, exponents, overflowing ones.
    static func numberToken(_ r: inout some RandomNumberGenerator) -> Shape {
        switch Int.random(in: 0...4, using: &r) {
        case 0: return .integer(Int64.random(in: .min ... .max, using: &r))
        case 1:
            return .integer(
                pick(
                    [
                        Int64.min, .max, 0, 1, -1, 1_000_000_000, 1_000_000_001, OpsNodeReport.maximumUptimeSeconds,
                        OpsNodeReport.maximumUptimeSeconds + 1, 10_000_000, 10_000_001, 1_000_000, 1_000_001, Int64(Int32.max) + 1,
                    ], &r))
        case 2:
            let (token, value) = pick(
                [
                    ("1.5", 1.5), ("0.25", 0.25), ("-0", -0.0), ("1.0", 1), ("1e3", 1000), ("1E+2", 100), ("2.5e-3", 0.0025), ("-1.5", -1.5),
                    ("1e400", nil), ("-1e400", nil), ("9223372036854775808", 9_223_372_036_854_775_808.0),
                    ("-9223372036854775809", -9_223_372_036_854_775_809.0), ("18446744073709551616", 18_446_744_073_709_551_616.0),
                    ("100000000000000000000000000000", 1e29), ("10000000.000000002", 10_000_000.000000002), ("5e-324", .leastNonzeroMagnitude),
                ] as [(String, Double?)], &r)
            return .number(token, value)
        case 3:
            let value = Double.random(in: -1...1, using: &r) * pow(10, Double(Int.random(in: -320...300, using: &r)))
            return value.isFinite ? .number("\(value)", value) : .integer(0)
        default: return .integer(Int64.random(in: -10...10, using: &r))
        }
    }

    /// Any JSON value: wrong types, nested arrays and objects, strings with control and bidi characters.
    static func anyShape(depth: Int, _ r: inout some RandomNumberGenerator) -> Shape {
        switch Int.random(in: 0...(depth > 0 ? 6 : 4), using: &r) {
        case 0: return numberToken(&r)
        case 1: return .string(randomString(&r))
        case 2: return .bool(Bool.random(using: &r))
        case 3: return .null
        case 4: return .string(String(Int.random(in: -5...5, using: &r)))
        case 5: return .array((0..<Int.random(in: 0...3, using: &r)).map { _ in anyShape(depth: depth - 1, &r) })
        default:
            return .object(
                (0..<Int.random(in: 0...3, using: &r)).map { _ in Shape.Member(key: randomString(&r), value: anyShape(depth: depth - 1, &r)) })
        }
    }

    static let countKeys = ["pcStreams", "phoneStreams", "sessions"]
    static let pairingKeys = ["waiting", "connected", "inputting", "completed", "cancelled"]
    static let reportKeys = [
        "name", "version", "uptimeSeconds", "eventsPerSecond", "brokerP99Milliseconds", "pairings", "oldestWaitingSince", "reportAgeSeconds",
    ] + countKeys

    /// A count as a node writes it, its bounds included.
    static func count(_ r: inout some RandomNumberGenerator) -> Shape {
        .integer(pick([0, 1, 1_000_000_000, Int64.random(in: 0...1_000_000_000, using: &r)], &r))
    }

    /// A rate or latency as a node writes it (rounded to 0.1 or not), its bounds included.
    static func rate(upTo maximum: Double, _ r: inout some RandomNumberGenerator) -> Shape {
        let random = Double.random(in: 0...maximum, using: &r)
        let value = pick([0, maximum, maximum.nextDown, .leastNonzeroMagnitude, 0.1, random, (random * 10).rounded() / 10], &r)
        return chance(0.1, &r) && value.rounded() == value && value < 1e15 ? .integer(Int64(value)) : .number("\(value)", value)
    }

    /// What no node writes where a number belongs: past the bounds, negative, fractions where an integer belongs,
    /// numbers past Int64 or Double, other types.
    static func hostileNumber(_ r: inout some RandomNumberGenerator) -> Shape {
        switch Int.random(in: 0...9, using: &r) {
        case 0...2: return .integer(pick([1_000_000_001, -1, .min, .max, OpsNodeReport.maximumUptimeSeconds + 1, 10_000_001], &r))
        case 3:
            let value = pick(
                [OpsNodeReport.maximumEventsPerSecond.nextUp, OpsNodeReport.maximumBrokerP99Milliseconds.nextUp, -.leastNonzeroMagnitude, -1e-300], &r)
            return .number("\(value)", value)
        case 4...7: return numberToken(&r)
        default: return anyShape(depth: 2, &r)
        }
    }

    /// The value of `key`: as a node writes it, or (with probability `hostility`) as only something else would.
    static func value(for key: String, hostility: Double, _ clock: Clock, _ r: inout some RandomNumberGenerator) -> Shape {
        let hostile = chance(hostility, &r)
        switch key {
        case "name": return hostile ? anyShape(depth: 2, &r) : .string(randomString(&r))
        case "version":
            if hostile && chance(0.3, &r) { return anyShape(depth: 2, &r) }
            return .string(hostile ? randomString(&r, length: 0...40) : cleanString(&r, length: 0...40))
        case "uptimeSeconds":
            if hostile { return hostileNumber(&r) }
            return .integer(pick([0, OpsNodeReport.maximumUptimeSeconds, Int64.random(in: 0...OpsNodeReport.maximumUptimeSeconds, using: &r)], &r))
        case "eventsPerSecond": return hostile ? hostileNumber(&r) : rate(upTo: OpsNodeReport.maximumEventsPerSecond, &r)
        case "brokerP99Milliseconds":
            return hostile ? hostileNumber(&r) : chance(0.2, &r) ? .null : rate(upTo: OpsNodeReport.maximumBrokerP99Milliseconds, &r)
        case "pairings":
            if hostile && chance(0.2, &r) { return anyShape(depth: 2, &r) }
            var members = pairingKeys.map { Shape.Member(key: $0, value: hostile && chance(0.3, &r) ? hostileNumber(&r) : count(&r)) }
            if hostile && chance(0.2, &r) { members.remove(at: Int.random(in: 0..<members.count, using: &r)) }
            if hostile && chance(0.2, &r) { members.append(.init(key: pick(pairingKeys, &r), value: count(&r))) }
            if chance(0.1, &r) { members.append(.init(key: randomString(&r), value: anyShape(depth: 1, &r))) }
            return .object(members.shuffled(using: &r))
        case "oldestWaitingSince":
            if hostile {
                return chance(0.3, &r)
                    ? anyShape(depth: 2, &r)
                    : .array((0..<Int.random(in: 1...6, using: &r)).map { _ in chance(0.7, &r) ? .integer(time(near: clock, &r)) : numberToken(&r) })
            }
            // Any times, near the window or not: the ones outside are dropped, not refused.
            return chance(0.1, &r) ? .null : .array((0..<Int.random(in: 0...8, using: &r)).map { _ in .integer(time(near: clock, &r)) })
        case "reportAgeSeconds": return hostile ? anyShape(depth: 1, &r) : numberToken(&r)
        default: return hostile ? hostileNumber(&r) : count(&r)
        }
    }

    /// A report's JSON, with a hostility from none (as a node writes it, keys of other names aside) to most values
    /// hostile: values past their bounds or of other types, keys missing or given twice; now and then no object at all.
    static func reportShape(_ clock: Clock, _ r: inout some RandomNumberGenerator) -> Shape {
        let hostility = pick([0, 0.02, 0.1, 0.5], &r)
        if chance(hostility / 10, &r) { return anyShape(depth: 2, &r) }
        var members: [Shape.Member] = []
        for key in reportKeys {
            let optional = ["brokerP99Milliseconds", "oldestWaitingSince", "reportAgeSeconds"].contains(key)
            let absent = optional ? (key == "reportAgeSeconds" ? 0.8 : 0.2) : hostility / 5
            if !chance(absent, &r) { members.append(.init(key: key, value: value(for: key, hostility: hostility, clock, &r))) }
        }
        if chance(hostility / 2, &r) {
            let key = pick(reportKeys, &r)
            members.append(.init(key: key, value: value(for: key, hostility: hostility, clock, &r)))
        }
        for _ in 0..<pick([0, 0, 0, 1, 3], &r) {
            let key = pick(["extra", "", "__proto__", "NAME", "pcstreams", "名前", "a\u{0}b", "\u{202E}", randomString(&r)], &r)
            members.append(.init(key: key, value: anyShape(depth: 2, &r)))
        }
        return .object(members.shuffled(using: &r))
    }

    // MARK: The model of a JSON report

    enum Verdict<T> {
        case accepted(T)
        case refused
        /// What the decoder makes of it is not pinned down (a key given twice, `1.0` for an integer): invariants only.
        case either

        func map<U>(_ transform: (T) -> U) -> Verdict<U> {
            switch self {
            case .accepted(let value): .accepted(transform(value))
            case .refused: .refused
            case .either: .either
            }
        }
    }

    /// An integer field within `range`. Integral tokens that are not integers (`1.0`, `1e3`, `-0`) may or may not
    /// decode as one; fractions, numbers past Int64, and other types never do.
    static func integer(_ shape: Shape?, in range: ClosedRange<Int64>) -> Verdict<Int64> {
        switch shape {
        case .integer(let value)?: return range.contains(value) ? .accepted(value) : .refused
        case .number(_, let value?)? where value.rounded() == value:
            return Double(range.lowerBound) <= value && value <= Double(range.upperBound) ? .either : .refused
        default: return .refused
        }
    }

    /// A Double field within `range`; a number past Double's range either fails to decode or is infinite.
    static func double(_ shape: Shape?, in range: ClosedRange<Double>) -> Verdict<Double> {
        switch shape {
        case .integer(let value)?: return range.contains(Double(value)) ? .accepted(Double(value)) : .refused
        case .number(_, let value?)?: return range.contains(value) ? .accepted(value) : .refused
        default: return .refused
        }
    }

    /// The members of an object by key: nil when a key the decoder reads is given twice.
    static func members(_ members: [Shape.Member], reading keys: [String]) -> [String: Shape]? {
        var byKey: [String: Shape] = [:]
        for member in members where keys.contains(member.key) {
            if byKey.updateValue(member.value, forKey: member.key) != nil { return nil }
        }
        return byKey
    }

    /// What `validated` must answer for this body from `node`, by the documented rules.
    static func expected(_ body: Shape, node: String, _ clock: Clock) -> Verdict<OpsNodeReport> {
        guard NodeReport.isAcceptableNodeName(node), case .object(let object) = body else { return .refused }
        guard let fields = members(object, reading: reportKeys) else { return .either }
        var refused = false
        var either = false
        func take<T>(_ verdict: Verdict<T>) -> T? {
            switch verdict {
            case .accepted(let value): return value
            case .refused: refused = true
            case .either: either = true
            }
            return nil
        }
        let maximumCount = Int64(OpsNodeReport.maximumCount)
        let counts = countKeys.map { take(integer(fields[$0], in: 0...maximumCount)) }
        let uptime = take(integer(fields["uptimeSeconds"], in: 0...OpsNodeReport.maximumUptimeSeconds))
        let events = take(double(fields["eventsPerSecond"], in: 0...OpsNodeReport.maximumEventsPerSecond))
        var p99: Double?
        switch fields["brokerP99Milliseconds"] {
        case nil, .null?: p99 = nil
        case let shape: p99 = take(double(shape, in: 0...OpsNodeReport.maximumBrokerP99Milliseconds))
        }
        var version = ""
        if case .string(let text)? = fields["version"] { version = keptVersion(text) } else { refused = true }
        if case .string? = fields["name"] {} else { refused = true }
        var pairings: [Int64?] = []
        if case .object(let members)? = fields["pairings"] {
            if let counts = Self.members(members, reading: pairingKeys) {
                pairings = pairingKeys.map { take(integer(counts[$0], in: 0...maximumCount)) }
            } else {
                either = true
            }
        } else {
            refused = true
        }
        var waiting: [Int64] = []
        switch fields["oldestWaitingSince"] {
        case nil, .null?: break
        case .array(let items)?: waiting = items.compactMap { take(integer($0, in: .min ... .max)) }
        default: refused = true
        }
        switch fields["reportAgeSeconds"] {
        case nil, .null?, .integer?, .number(_, _?)?: break  // any number: read, then dropped
        case .number(_, nil)?: either = true
        default: refused = true
        }
        if refused { return .refused }
        if either { return .either }
        let pairing = pairings.map { Int($0!) }
        return .accepted(
            OpsNodeReport(
                name: node, version: version, uptimeSeconds: uptime!, pcStreams: Int(counts[0]!), phoneStreams: Int(counts[1]!),
                sessions: Int(counts[2]!), eventsPerSecond: events!, brokerP99Milliseconds: p99,
                pairings: OpsPairings(
                    waiting: pairing[0], connected: pairing[1], inputting: pairing[2], completed: pairing[3], cancelled: pairing[4]),
                oldestWaitingSince: keptWaitingTimes(waiting, clock), reportAgeSeconds: nil))
    }

    struct JSONCase: Sendable, CustomStringConvertible {
        var clock: Clock
        var node: String
        var reportedAt: Int64
        var body: Shape
        var description: String { "\(clock) node=\(node.debugDescription) reportedAt=\(reportedAt) body=\(body.text)" }
    }

    // MARK: validated

    static let jsonCases = Generator<JSONCase, Shrink.None<JSONCase>>(run: { rng in
        let clock = randomClock(&rng)
        let node = chance(0.8, &rng) ? pick(["node-a", "東京-1", String(repeating: "n", count: 128)], &rng) : randomNode(&rng)
        return JSONCase(clock: clock, node: node, reportedAt: time(near: clock, &rng), body: reportShape(clock, &rng))
    })

    /// Any JSON body (see `reportShape`), any node name, any clock and stamp: no trap; accepted exactly when the rules
    /// say so, as the model says; whatever is accepted holds the invariants.
    @Test func anyJSONReportIsValidatedByTheDocumentedRules() async {
        var outcomes = (accepted: 0, refused: 0, either: 0)
        await propertyCheck(count: 2000, input: Self.jsonCases) { (c: JSONCase) in
            let report = NodeReport(node: c.node, reportedAt: c.reportedAt, body: Array(c.body.text.utf8))
            let validated = OpsNodeReport.validated(report, now: c.clock.now, sessionTTLMilliseconds: c.clock.ttl, skew: c.clock.skew)
            if let validated { Self.expectInvariants(validated, node: c.node, c.clock, "\(c)") }
            switch Self.expected(c.body, node: c.node, c.clock) {
            case .accepted(let expected):
                #expect(validated == expected, "\(c)")
                outcomes.accepted += 1
            case .refused:
                #expect(validated == nil, "\(c)")
                outcomes.refused += 1
            case .either:
                outcomes.either += 1
            }
        }
        // The generator reaches every outcome, most of the cases with a known answer.
        #expect(outcomes.accepted > 100 && outcomes.refused > 100 && outcomes.either < 1000, "\(outcomes)")
    }

    struct BytesCase: Sendable {
        var clock: Clock
        var node: String
        var reportedAt: Int64
        var bytes: [UInt8]
    }

    static let bytesCases = Generator<BytesCase, Shrink.None<BytesCase>>(run: { rng in
        let clock = randomClock(&rng)
        let node = chance(0.8, &rng) ? "node-a" : randomNode(&rng)
        let alphabet = Array(#"{}[]":,.-+eE0123456789truefalsnl \"#.utf8) + [0, 0x0A, 0x7F, 0xC3, 0xA9, 0xE2, 0x80, 0xAE, 0xFF]
        var bytes: [UInt8]
        if chance(0.3, &rng) {
            bytes = (0..<Int.random(in: 0...200, using: &rng)).map { _ in
                chance(0.2, &rng) ? UInt8.random(in: 0...255, using: &rng) : pick(alphabet, &rng)
            }
        } else {
            bytes = Array(reportShape(clock, &rng).text.utf8)
            for _ in 0..<Int.random(in: 1...3, using: &rng) where !bytes.isEmpty {
                let at = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0...4, using: &rng) {
                case 0: bytes[at] = UInt8.random(in: 0...255, using: &rng)
                case 1: bytes.insert(pick(alphabet, &rng), at: at)
                case 2: bytes.remove(at: at)
                case 3: bytes.insert(contentsOf: bytes[at..<min(bytes.count, at + 12)], at: at)
                default: bytes.removeSubrange(at...)
                }
            }
        }
        return BytesCase(clock: clock, node: node, reportedAt: time(near: clock, &rng), bytes: bytes)
    })

    /// Any bytes, and a node's own report with bytes changed, inserted, deleted or cut: no trap, and what is accepted
    /// holds the invariants.
    @Test func anyBytesNeverTrapAndWhatIsAcceptedHoldsTheInvariants() async {
        var accepted = 0
        await propertyCheck(count: 2000, input: Self.bytesCases) { (c: BytesCase) in
            let (clock, node, reportedAt, bytes) = (c.clock, c.node, c.reportedAt, c.bytes)
            let report = NodeReport(node: node, reportedAt: reportedAt, body: bytes)
            guard let validated = OpsNodeReport.validated(report, now: clock.now, sessionTTLMilliseconds: clock.ttl, skew: clock.skew)
            else { return }
            accepted += 1
            Self.expectInvariants(validated, node: node, clock, "\(clock) node=\(node.debugDescription) \(String(decoding: bytes, as: UTF8.self))")
        }
        #expect(accepted > 20, "\(accepted) accepted")
    }

    // MARK: Round trip

    /// A report a node could make now: every value within its bounds, waiting times within the TTL, oldest first.
    static func validReport(name: String, _ clock: Clock, _ r: inout some RandomNumberGenerator) -> OpsNodeReport {
        func count() -> Int { pick([0, 1, OpsNodeReport.maximumCount, Int.random(in: 0...OpsNodeReport.maximumCount, using: &r)], &r) }
        func rate(_ maximum: Double) -> Double {
            let value = Double.random(in: 0...maximum, using: &r)
            return pick([0, maximum, .leastNonzeroMagnitude, 0.1, value, (value * 10).rounded() / 10], &r)
        }
        let earliest = Int64(clamping: Int128(clock.now) - Int128(clock.ttl))
        let waiting = (0..<Int.random(in: 0...PairingTally.oldestWaitingShown, using: &r)).map { _ in
            pick([earliest, clock.now, Int64.random(in: earliest...clock.now, using: &r)], &r)
        }
        return OpsNodeReport(
            name: name, version: pick([Tandem.version, cleanString(&r, length: 0...32)], &r),
            uptimeSeconds: pick([0, OpsNodeReport.maximumUptimeSeconds, Int64.random(in: 0...OpsNodeReport.maximumUptimeSeconds, using: &r)], &r),
            pcStreams: count(), phoneStreams: count(), sessions: count(), eventsPerSecond: rate(OpsNodeReport.maximumEventsPerSecond),
            brokerP99Milliseconds: chance(0.3, &r) ? nil : rate(OpsNodeReport.maximumBrokerP99Milliseconds),
            pairings: OpsPairings(waiting: count(), connected: count(), inputting: count(), completed: count(), cancelled: count()),
            oldestWaitingSince: waiting.sorted(), reportAgeSeconds: nil)
    }

    /// A name the page takes: 1 to 128 bytes without control or format characters.
    static func validName(_ r: inout some RandomNumberGenerator) -> String {
        var name = cleanString(&r, length: 1...40)
        while name.utf8.count > NodeReport.maximumNodeBytes { name.unicodeScalars.removeLast() }
        return chance(0.1, &r) ? String(repeating: "n", count: NodeReport.maximumNodeBytes) : name
    }

    struct OwnCase: Sendable {
        var clock: Clock
        var own: OpsNodeReport
        var reportedAt: Int64
    }

    static let ownCases = Generator<OwnCase, Shrink.None<OwnCase>>(run: { rng in
        let clock = randomClock(&rng)
        return OwnCase(clock: clock, own: validReport(name: validName(&rng), clock, &rng), reportedAt: time(near: clock, &rng))
    })

    /// A node's own report, encoded as the reporter encodes it, reads back equal on every node.
    @Test func aNodesOwnReportReadsBackEqual() async {
        await propertyCheck(count: 1000, input: Self.ownCases) { (c: OwnCase) in
            let (clock, own, reportedAt) = (c.clock, c.own, c.reportedAt)
            #expect(NodeReport.isAcceptableNodeName(own.name))
            guard let body = try? JSONEncoder().encode(own) else {
                Issue.record("the report does not encode: \(own)")
                return
            }
            #expect(body.count <= NodeReport.maximumBodyBytes)
            let read = OpsNodeReport.validated(
                NodeReport(node: own.name, reportedAt: reportedAt, body: Array(body)), now: clock.now, sessionTTLMilliseconds: clock.ttl,
                skew: clock.skew)
            #expect(read == own, "\(clock) \(String(decoding: body, as: UTF8.self))")
        }
    }

    // MARK: merge

    struct MergeCase: Sendable, CustomStringConvertible {
        var clock: Clock
        var reports: [(OpsNodeReport, Int64)]
        /// The same reports in another order.
        var shuffled: [(OpsNodeReport, Int64)]
        var description: String { "\(clock) \(reports.count) reports: \(reports.map { "\($0.0.name)@\($0.1)" })" }
    }

    /// Reports as validated, stamped at any time, up to a few past the 64 nodes listed. Their names are distinct, as
    /// the fields of one hash are (two fields whose names are not UTF-8 may read as the same name, with U+FFFD; those
    /// two are then listed in the order they came).
    static let mergeCases = Generator<MergeCase, Shrink.None<MergeCase>>(run: { rng in
        let clock = randomClock(&rng)
        let count = chance(0.1, &rng) ? Int.random(in: 60...70, using: &rng) : Int.random(in: 0...8, using: &rng)
        let reports = (0..<count).map { index in
            (validReport(name: "\(index)-" + cleanString(&rng, length: 0...8), clock, &rng), time(near: clock, &rng))
        }
        return MergeCase(clock: clock, reports: reports, shuffled: reports.shuffled(using: &rng))
    })

    /// Merging accepted reports never traps: the totals are the sums of the first 64 reports' counts, every node is
    /// listed once by name with its age, the oldest waiting ages are the oldest of all nodes; with at most 64 reports the
    /// order they come in changes nothing.
    @Test func mergingAcceptedReportsSumsThemInAnyOrder() async {
        await propertyCheck(count: 300, input: Self.mergeCases) { (c: MergeCase) in
            let now = c.clock.now
            for (report, _) in c.reports {
                #expect(
                    OpsNodeReport.validated(
                        NodeReport(node: report.name, reportedAt: now, body: Array((try? JSONEncoder().encode(report)) ?? Data())), now: now,
                        sessionTTLMilliseconds: c.clock.ttl, skew: c.clock.skew) == report, "not a report validated: \(report)")
            }
            let snapshot = OpsReporter.merge(c.reports, now: now, broker: "redis", reachable: true)
            let kept = c.reports.prefix(OpsReporter.maximumNodes)
            #expect(snapshot.generatedAt == now && snapshot.broker == "redis" && snapshot.brokerReachable)
            for (index, total) in snapshot.pairings.counts.enumerated() {
                #expect(Int128(total) == kept.reduce(Int128(0)) { $0 + Int128($1.0.pairings.counts[index]) }, "\(c)")
            }
            #expect(snapshot.nodes.map(\.name) == kept.map(\.0.name).sorted(), "\(c)")
            for node in snapshot.nodes {
                guard let (report, reportedAt) = kept.first(where: { $0.0.name == node.name }) else { continue }
                var listed = report
                listed.oldestWaitingSince = nil
                listed.reportAgeSeconds = node.reportAgeSeconds
                #expect(node == listed, "\(c)")
                let age = node.reportAgeSeconds ?? -1
                #expect(age.isFinite && age >= 0, "\(c)")
                if let exact = Int64(exactly: Int128(now) - Int128(reportedAt)) {
                    #expect(age == Double(max(0, exact)) / 1000, "\(c)")
                }
            }
            let since = kept.flatMap { ($0.0.oldestWaitingSince ?? []).prefix(PairingTally.oldestWaitingShown) }.sorted()
            let ages = since.prefix(PairingTally.oldestWaitingShown).map { Int64((Int128(now) - Int128($0)) / 1000) }
            #expect(snapshot.oldestWaitingSeconds == ages, "\(c)")
            if c.reports.count <= OpsReporter.maximumNodes {
                #expect(OpsReporter.merge(c.shuffled, now: now, broker: "redis", reachable: true) == snapshot, "\(c)")
            }
        }
    }

    struct AnyMergeCase: Sendable {
        var now: Int64
        var nonNegative: Bool
        var reports: [(OpsNodeReport, Int64)]
        var shuffled: [(OpsNodeReport, Int64)]
    }

    static let anyMergeCases = Generator<AnyMergeCase, Shrink.None<AnyMergeCase>>(run: { rng in
        let clock = randomClock(&rng)
        let nonNegative = Bool.random(using: &rng)
        func any() -> Int {
            let value = pick([Int.max, Int.max - 1, Int.max / 2 + 1, 0, 1, Int.random(in: .min ... .max, using: &rng), Int.min, -1], &rng)
            return nonNegative ? (value == .min ? 0 : abs(value)) : value
        }
        let reports = (0..<Int.random(in: 0...70, using: &rng)).map { _ in
            let report = OpsNodeReport(
                name: randomString(&rng), version: randomString(&rng, length: 0...60), uptimeSeconds: Int64(any()), pcStreams: any(),
                phoneStreams: any(), sessions: any(), eventsPerSecond: pick([.infinity, .nan, -1, 1e300], &rng),
                brokerP99Milliseconds: pick([nil, .nan, -.infinity], &rng),
                pairings: OpsPairings(waiting: any(), connected: any(), inputting: any(), completed: any(), cancelled: any()),
                oldestWaitingSince: (0..<Int.random(in: 0...8, using: &rng)).map { _ in time(near: clock, &rng) },
                reportAgeSeconds: pick([nil, -5], &rng))
            return (report, time(near: clock, &rng))
        }
        return AnyMergeCase(now: clock.now, nonNegative: nonNegative, reports: reports, shuffled: reports.shuffled(using: &rng))
    })

    /// Merging reports of any values (as if validation let anything through): no trap; ages are never negative; with
    /// counts that are not negative, the totals are the sums held at Int.max, whatever the order.
    @Test func mergingAnyValuesNeverTrapsAndSumsSaturate() async {
        await propertyCheck(count: 300, input: Self.anyMergeCases) { (c: AnyMergeCase) in
            let (now, nonNegative, reports, shuffled) = (c.now, c.nonNegative, c.reports, c.shuffled)
            let snapshot = OpsReporter.merge(reports, now: now, broker: "redis", reachable: false)
            #expect(snapshot.nodes.count == min(reports.count, OpsReporter.maximumNodes))
            #expect(snapshot.nodes.allSatisfy { ($0.reportAgeSeconds ?? -1) >= 0 && $0.reportAgeSeconds!.isFinite && $0.oldestWaitingSince == nil })
            #expect(snapshot.nodes.allSatisfy { $0.version.count <= 32 })
            #expect(snapshot.oldestWaitingSeconds.count <= PairingTally.oldestWaitingShown)
            #expect(snapshot.oldestWaitingSeconds.allSatisfy { $0 >= 0 })
            guard nonNegative else { return }
            let kept = reports.prefix(OpsReporter.maximumNodes)
            for (index, total) in snapshot.pairings.counts.enumerated() {
                let sum = kept.reduce(Int128(0)) { $0 + Int128($1.0.pairings.counts[index]) }
                #expect(total == Int(clamping: sum))
            }
            if reports.count <= OpsReporter.maximumNodes {
                #expect(OpsReporter.merge(shuffled, now: now, broker: "redis", reachable: false).pairings == snapshot.pairings)
            }
        }
    }

    // MARK: Saturating sums

    static let anyInt = Gen<Int>.oneOf(
        Gen<Int>.int(), Gen<Int>.int(in: -1000...1000),
        Gen<Int?>.element(of: [Int.min, .min + 1, -1, 0, 1, .max - 1, .max, .max / 2 + 1, .min / 2 - 1]).map { $0 ?? 0 })

    @Test func saturatedIsTheSumHeldWithinInt() async {
        await propertyCheck(count: 3000, input: Self.anyInt, Self.anyInt) { (a: Int, b: Int) in
            #expect(OpsPairings.saturated(a, b) == Int(clamping: Int128(a) + Int128(b)), "\(a) + \(b)")
        }
    }

    @Test func pairingsAddAsSaturatedSumsPerState() async {
        let pairings = zip(Self.anyInt, Self.anyInt, Self.anyInt, Self.anyInt, Self.anyInt).map {
            (w: Int, c: Int, i: Int, d: Int, x: Int) -> OpsPairings in
            OpsPairings(waiting: w, connected: c, inputting: i, completed: d, cancelled: x)
        }
        await propertyCheck(count: 1000, input: pairings, pairings) { (a: OpsPairings, b: OpsPairings) in
            let sum = a + b
            #expect(sum.counts == zip(a.counts, b.counts).map { Int(clamping: Int128($0) + Int128($1)) }, "\(a) + \(b)")
            #expect(b + a == sum)
        }
    }
}

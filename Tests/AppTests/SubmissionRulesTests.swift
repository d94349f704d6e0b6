import Broker
import HTTP
import JSON
import NIOCore
import NIOHTTP1
import PropertyBased
import TestSupport
import Testing

@testable import App

/// Names and phone numbers that pass the seed's length limits but should not: huge "characters", invisible and
/// reordering characters, and text that is no phone number. Then random Unicode, which must never trap and whose
/// accepted values keep every rule.
@Suite(.timeLimit(.minutes(1)))
struct SubmissionRulesTests {
    static func check(name: JSONValue = .string("山田"), phone: JSONValue = .string("090-1234-5678"), sessionID: JSONValue = .string("sess_ok"))
        -> Result<(SessionID?, Submission), APIError>
    {
        SubmissionRules.submission(from: .object(["sessionId": sessionID, "name": name, "phone": phone]))
    }

    static func fieldCodes(_ result: Result<(SessionID?, Submission), APIError>) -> [String] {
        guard case .failure(let error) = result else { return [] }
        return error.fieldErrors.map(\.code)
    }

    static func accepted(_ result: Result<(SessionID?, Submission), APIError>) -> Submission? {
        guard case .success(let (_, submission)) = result else { return nil }
        return submission
    }

    // MARK: Names

    @Test func aLetterWithThousandsOfCombiningMarksIsRefused() {
        // One grapheme cluster of 13.6 KB: "one character" to a count of clusters.
        let zalgo = "a" + String(repeating: "\u{0301}", count: 6_800)
        #expect(zalgo.count == 1)
        #expect(Self.fieldCodes(Self.check(name: .string(zalgo))) == ["name_character_too_complex"])
        let twenty = String(repeating: "e" + String(repeating: "\u{0300}\u{0316}", count: 5), count: 20)
        #expect(Self.fieldCodes(Self.check(name: .string(twenty))) == ["name_character_too_complex"])
        // A few marks, and emoji sequences of up to eight scalars, are names.
        #expect(Self.accepted(Self.check(name: .string("Nguyễn Thị Ánh"))) != nil)
        #expect(Self.accepted(Self.check(name: .string("👨‍👩‍👧‍👦 Family"))) != nil)
    }

    @Test(arguments: [
        "\u{202A}", "\u{202B}", "\u{202C}", "\u{202D}", "\u{202E}", "\u{2066}", "\u{2067}", "\u{2068}", "\u{2069}",
        "\u{200E}", "\u{200F}", "\u{061C}", "\u{200B}", "\u{200C}", "\u{200D}", "\u{2060}", "\u{FEFF}", "\u{00AD}",
        "\u{E0041}", "\u{2028}", "\u{2029}", "\u{0085}", "\u{007F}", "\u{0000}",
        // Invisible though not format characters (found by the attack pass): the grapheme joiner, Hangul fillers.
        "\u{034F}", "\u{3164}", "\u{115F}", "\u{FFA0}",
    ])
    func invisibleAndReorderingCharactersAreRefusedInNames(_ scalar: String) {
        #expect(Self.fieldCodes(Self.check(name: .string("山田\(scalar)太郎"))) == ["name_invalid_characters"])
        // Line and paragraph separators and NEL are white space too: at either end they are trimmed, not refused.
        if scalar.unicodeScalars.first?.properties.isWhitespace == false {
            #expect(Self.fieldCodes(Self.check(name: .string("\(scalar)Bob"))) == ["name_invalid_characters"])
        }
    }

    @Test func theJoinerIsAllowedOnlyInsideEmojiSequences() {
        for name in ["👩‍💻", "🏳️‍🌈", "👩🏽‍🚀 Mika", "🧑‍🤝‍🧑"] {
            #expect(Self.accepted(Self.check(name: .string(name)))?.name == name, "\(name)")
        }
        for name in ["a\u{200D}b", "\u{200D}👩", "👩\u{200D}", "1\u{200D}2", "山\u{200D}田"] {
            #expect(Self.fieldCodes(Self.check(name: .string(name))) == ["name_invalid_characters"], "\(name.unicodeScalars.map(\.value))")
        }
    }

    @Test func namesAreTrimmedAndStoredInNFC() {
        #expect(Self.accepted(Self.check(name: .string("  山田 太郎\u{3000}")))?.name == "山田 太郎")
        #expect(Self.fieldCodes(Self.check(name: .string(" \u{3000}\t "))) == ["name_required"])
        let decomposed = "Jose\u{0301}"
        let stored = Self.accepted(Self.check(name: .string(decomposed)))?.name
        #expect(stored == "José")
        #expect(stored?.unicodeScalars.count == 4)
        // Counted after trimming: 20 characters between spaces fit.
        #expect(Self.accepted(Self.check(name: .string("  " + String(repeating: "あ", count: 20) + "  "))) != nil)
    }

    // MARK: Phone numbers

    @Test(arguments: [
        ("090-1234-5678", "090-1234-5678"),
        ("+81 3 1234 5678", "+81 3 1234 5678"),
        ("(03) 1234.5678", "(03) 1234.5678"),
        ("０９０ー１２３４ー５６７８", "090-1234-5678"),
        ("＋８１（３）１２３４−５６７８", "+81(3)1234-5678"),
        ("  0312345678 ", "0312345678"),
        ("٠٩٠١٢٣", "090123"),
        ("12", "12"),
    ])
    func phoneNumbersAreDigitsAndSeparators(sent: String, stored: String) {
        #expect(Self.accepted(Self.check(phone: .string(sent)))?.phone == stored)
    }

    @Test(arguments: [
        ("abc", "phone_invalid_format"),
        ("javascript:1", "phone_invalid_format"),
        ("090_1234", "phone_invalid_format"),
        ("12+34", "phone_invalid_format"),
        ("(((((((((12", "phone_invalid_format"),
        (")12(", "phone_invalid_format"),
        ("(03 1234", "phone_invalid_format"),
        ("(03)(12)34", "phone_invalid_format"),
        ("1e9", "phone_invalid_format"),
        ("+", "phone_too_few_digits"),
        ("1", "phone_too_few_digits"),
        ("(-)", "phone_too_few_digits"),
        ("090\u{202E}1234", "phone_invalid_characters"),
        ("090\u{200B}1234", "phone_invalid_characters"),
        ("   ", "phone_required"),
    ])
    func textThatIsNoPhoneNumberIsRefused(phone: String, code: String) {
        #expect(Self.fieldCodes(Self.check(phone: .string(phone))) == [code])
    }

    @Test func refusalsCarryFieldPathsCodesAndMessagesInBothLanguages() throws {
        let result = Self.check(name: .string("a\u{202E}b"), phone: .string("call me"))
        guard case .failure(let error) = result else {
            Issue.record("accepted")
            return
        }
        #expect(error.status == .badRequest)
        #expect(error.fieldErrors.map(\.path) == ["name", "phone"])
        #expect(error.fieldErrors.map(\.code) == ["name_invalid_characters", "phone_invalid_format"])
        for message in error.fieldErrors.map(\.message) {
            #expect(!message.text(in: .japanese).isEmpty)
            #expect(!message.text(in: .english).isEmpty)
            #expect(message.text(in: .japanese) != message.text(in: .english))
        }
    }

    // MARK: Numbers where text is expected

    @Test func aSessionIDThatIsNoStringIsMalformed() {
        for value: JSONValue in [.integer(0), .integer(-1), .number(1e300), .number(-0.0), .bool(true), .array([]), .object([:])] {
            #expect(Self.fieldCodes(Self.check(sessionID: value)) == ["session_id_malformed"], "\(value)")
        }
        #expect(Self.fieldCodes(Self.check(sessionID: .null)) == ["session_id_required"])
        #expect(Self.fieldCodes(Self.check(sessionID: .string(""))) == ["session_id_required"])
    }

    /// Over HTTP: numbers the parser cannot hold are malformed JSON; numbers it holds are no session ID.
    @Test(arguments: [("1e309", "malformed_json"), ("-1e309", "malformed_json"), ("-0", "session_id_malformed"),
                      ("18446744073709551616", "session_id_malformed"), ("0.5", "session_id_malformed")])
    func jsonNumbersAsSessionIDsAreClean400s(number: String, code: String) async throws {
        try await withTandem { _, client in
            for path in ["/api/submit", "/api/input-started"] {
                let response = try await client.post(path, json: #"{"sessionId":\#(number),"name":"山田","phone":"0312345678"}"#)
                #expect(response.status == 400, "\(path) \(number)")
                #expect(try json(response)["code"]?.string == code, "\(path) \(number)")
            }
        }
    }

    /// Any JSON number text in any field: the parser refuses what does not fit a finite double, and the rules answer
    /// a 400 or accept a value that keeps every rule; nothing traps.
    @Test func anyJSONNumberInAnyFieldIsAClean400OrAValidValue() async {
        let digits = Gen<Character>.number.string(of: 1...30)
        let numbers = Gen<UInt64>.value(in: 0...UInt64.max).map(Self.numberText)
        await propertyCheck(count: 100, input: numbers, digits) { text, more in
            for number in [text, more, "-" + more, more + "e" + String(more.prefix(4)), "-0", "1e309", "18446744073709551616", "-9223372036854775809"] {
                for field in ["sessionId", "name", "phone"] {
                    var members = [#""sessionId":"sess_ok""#, #""name":"山田""#, #""phone":"0312345678""#]
                    members[["sessionId", "name", "phone"].firstIndex(of: field) ?? 0] = #""\#(field)":\#(number)"#
                    let body = "{" + members.joined(separator: ",") + "}"
                    let request = Request(method: .POST, uri: "/api/submit", headers: ["Content-Type": "application/json"], body: ByteBuffer(string: body))
                    guard let parsed = try? request.jsonBody() else { continue }  // the API answers 400 malformed_json
                    switch SubmissionRules.submission(from: parsed) {
                    case .failure(let error):
                        #expect(error.status == .badRequest, "\(body)")
                        #expect(!error.fieldErrors.isEmpty, "\(body)")
                    case .success(let (id, submission)):
                        #expect(field != "sessionId", "\(body) was accepted")
                        #expect(id?.rawValue == "sess_ok")
                        Self.expectValid(submission)
                    }
                }
            }
        }
    }

    /// A JSON number's text from 64 random bits: sign, integer digits, fraction, exponent.
    @Sendable static func numberText(_ bits: UInt64) -> String {
        var text = bits & 1 == 0 ? "" : "-"
        text += String(bits >> 20)
        if bits & 2 != 0 { text += "." + String((bits >> 8) & 0xFFF) }
        if bits & 4 != 0 { text += (bits & 8 == 0 ? "e" : "E-") + String((bits >> 4) % 400) }
        return text
    }

    // MARK: Random Unicode

    /// Scalars from everywhere in Unicode, with the troublesome ones often: marks, joiners, bidi controls, spaces,
    /// digits of several widths and scripts, emoji.
    static let troublesome: [Unicode.Scalar] = [
        "\u{0301}", "\u{0316}", "\u{200D}", "\u{200B}", "\u{202E}", "\u{2066}", "\u{FEFF}", "\u{00AD}", "\u{E0041}",
        " ", "\u{3000}", "\t", "\n", "\u{2028}", "0", "5", "９", "٣", "+", "-", "(", ")", ".", "ー", "👩", "💻", "\u{1F3FD}",
        "\u{FE0F}", "山", "a", "e", "\u{0000}", "\u{007F}",
    ]

    static let scalar = Gen<UInt64>.value(in: 0...UInt64.max).map { bits -> Unicode.Scalar in
        if bits & 1 == 0 { return troublesome[Int((bits >> 1) % UInt64(troublesome.count))] }
        return Unicode.Scalar(UInt32((bits >> 1) % 0x11_0000)) ?? "\u{FFFD}"
    }

    static let text = scalar.array(of: 0...48).map { scalars -> String in
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }

    @Test func randomUnicodeNeverTrapsAndWhatIsAcceptedKeepsEveryRule() async {
        await propertyCheck(count: 400, input: Self.text, Self.text) { name, phone in
            switch Self.check(name: .string(name), phone: .string(phone)) {
            case .success(let (_, submission)):
                Self.expectValid(submission)
            case .failure(let error):
                #expect(error.status == .badRequest)
                #expect(Set(error.fieldErrors.map(\.path)).isSubset(of: ["name", "phone"]))
                #expect(!error.fieldErrors.isEmpty)
            }
            // Each field alone, so one bad field does not hide the other's rules.
            if let accepted = Self.accepted(Self.check(name: .string(name))) { Self.expectValid(accepted) }
            if let accepted = Self.accepted(Self.check(phone: .string(phone))) { Self.expectValid(accepted) }
        }
    }

    static func expectValid(_ submission: Submission, sourceLocation: SourceLocation = #_sourceLocation) {
        let name = submission.name
        #expect(!name.isEmpty && name.count <= 20, "\(name.debugDescription)", sourceLocation: sourceLocation)
        #expect(name.allSatisfy { $0.unicodeScalars.count <= 8 }, "\(name.debugDescription)", sourceLocation: sourceLocation)
        #expect(name.utf8.count <= 20 * 8 * 4, sourceLocation: sourceLocation)
        #expect(SubmissionRules.firstRefusedScalar(in: name) == nil, "\(name.debugDescription)", sourceLocation: sourceLocation)
        #expect(name.unicodeScalars.first?.properties.isWhitespace == false, sourceLocation: sourceLocation)
        #expect(name.unicodeScalars.last?.properties.isWhitespace == false, sourceLocation: sourceLocation)
        #expect(Array(name._nfcCodeUnits) == Array(name.utf8), "\(name.debugDescription) is not NFC", sourceLocation: sourceLocation)
        #expect(!name.unicodeScalars.contains { ["\u{202E}", "\u{200B}", "\u{FEFF}", "\u{2066}", "\u{E0041}"].contains($0) }, sourceLocation: sourceLocation)

        let phone = submission.phone
        #expect(!phone.isEmpty && phone.count <= 15, "\(phone.debugDescription)", sourceLocation: sourceLocation)
        #expect(phone.utf8.allSatisfy { $0 < 0x80 }, "\(phone.debugDescription)", sourceLocation: sourceLocation)
        #expect(phone.utf8.filter { (0x30...0x39).contains($0) }.count >= 2, "\(phone.debugDescription)", sourceLocation: sourceLocation)
        for (offset, byte) in phone.utf8.enumerated() {
            let allowed = (0x30...0x39).contains(byte) || Array(" -().".utf8).contains(byte) || (byte == UInt8(ascii: "+") && offset == 0)
            #expect(allowed, "\(phone.debugDescription)", sourceLocation: sourceLocation)
        }
        #expect(phone.first != " " && phone.last != " ", sourceLocation: sourceLocation)
    }
}

import Broker
import JSON
import PropertyBased
import TestSupport
import Testing

@testable import App

/// `form.fields`: a configured form is read and refused with the field that is wrong, submissions are checked by each
/// field's type and rules (never a trap, whatever the phone sends), and the form travels whole to the PC.
@Suite(.timeLimit(.minutes(1)))
struct FormFieldsTests {
    /// Five fields, one of each kind a site asks for: a name, an e-mail, a plan, a one-time code, a consent box.
    static let fiveFields = #"""
        [
          {"name": "fullName", "type": "text", "label": {"ja": "氏名", "en": "Full name"}, "required": true, "maxLength": 30},
          {"name": "email", "type": "email", "label": {"ja": "メールアドレス", "en": "E-mail"}, "required": true},
          {"name": "plan", "type": "select", "label": {"ja": "プラン", "en": "Plan"}, "required": true,
           "options": [{"value": "basic", "label": {"ja": "ベーシック", "en": "Basic"}}, {"value": "pro", "label": {"ja": "プロ", "en": "Pro"}}]},
          {"name": "otp", "type": "text", "label": {"ja": "確認コード", "en": "Code"}, "pattern": "[0-9]{6}"},
          {"name": "agree", "type": "checkbox", "label": {"ja": "規約に同意する", "en": "I agree to the terms"}, "required": true}
        ]
        """#

    static func schema(_ text: String) throws -> FormSchema {
        try FormSchema.parse(try JSONValue.parse(Array(text.utf8))).get()
    }

    static func problem(_ text: String) throws -> String? {
        guard case .failure(let error) = FormSchema.parse(try JSONValue.parse(Array(text.utf8))) else { return nil }
        return error.description
    }

    static func check(_ members: [String: JSONValue], form: FormSchema) -> Result<(SessionID?, Submission), APIError> {
        var body = members
        body["sessionId"] = .string("sess_ok")
        return SubmissionRules.submission(from: .object(body), form: form)
    }

    static func codes(_ result: Result<(SessionID?, Submission), APIError>) -> [String] {
        guard case .failure(let error) = result else { return [] }
        return error.fieldErrors.map(\.code)
    }

    // MARK: The schema

    @Test func noFormOrAnEmptyOneOrTheArticlesWrittenOutIsTheArticlesForm() throws {
        #expect(FormSchema.parse(nil) == .success(.article))
        #expect(try Self.schema("[]").isArticleForm)
        let written = #"""
            [{"name": "name", "type": "text", "label": {"ja": "お名前", "en": "Name"}, "required": true, "maxLength": 20},
             {"name": "phone", "type": "tel", "label": {"ja": "電話番号", "en": "Phone number"}, "required": true, "maxLength": 15}]
            """#
        #expect(try Self.schema(written).isArticleForm)
        #expect(try Self.schema(Self.fiveFields).fields.map(\.name) == ["fullName", "email", "plan", "otp", "agree"])
    }

    @Test func aWrongFieldIsNamedWithWhatIsWrong() throws {
        func field(_ members: String) -> String { #"[{"name": "a", "type": "text", "label": {"ja": "あ", "en": "A"}}, "# + members + "]" }
        let cases: [(String, String)] = [
            (#"{"fields": []}"#, "must be an array"),
            (field(#"{"name": "b", "type": "mail", "label": {"ja": "い", "en": "B"}}"#), #"field 2 ("b") "type" must be one of"#),
            (field(#"{"name": "a", "type": "text", "label": {"ja": "い", "en": "B"}}"#), #"field 2 ("a") a second field named"#),
            (field(#"{"name": "status", "type": "text", "label": {"ja": "い", "en": "B"}}"#), "is used by the events"),
            (field(#"{"name": "9x", "type": "text", "label": {"ja": "い", "en": "B"}}"#), #""name" must be"#),
            (field(#"{"name": "b", "type": "text", "label": {"ja": "い"}}"#), #""label" must be"#),
            (field(#"{"name": "b", "type": "select", "label": {"ja": "い", "en": "B"}}"#), "a select needs"),
            (field(#"{"name": "b", "type": "text", "label": {"ja": "い", "en": "B"}, "options": []}"#), "applies to select fields only"),
            (field(#"{"name": "b", "type": "text", "label": {"ja": "い", "en": "B"}, "pattern": "(a+)+"}"#), "uses a group or |"),
            (field(#"{"name": "b", "type": "text", "label": {"ja": "い", "en": "B"}, "pattern": "[a-"}"#), "has a [ without its ]"),
            (field(#"{"name": "b", "type": "text", "label": {"ja": "い", "en": "B"}, "pattern": "[z-a]"}"#), "is not a regular expression"),
            (field(#"{"name": "b", "type": "text", "label": {"ja": "い", "en": "B"}, "pattern": "x", "maxLength": 500}"#), "at most 200 for a field with a pattern"),
            (field(#"{"name": "b", "type": "checkbox", "label": {"ja": "い", "en": "B"}, "pattern": "x"}"#), "applies to text"),
            (field(#"{"name": "b", "type": "text", "label": {"ja": "い", "en": "B"}, "maxLength": 0}"#), #""maxLength" must be"#),
            (field(#"{"name": "b", "type": "text", "label": {"ja": "い", "en": "B"}, "required": "yes"}"#), #""required" must be"#),
            (field(#"{"name": "b", "type": "text", "label": {"ja": "い", "en": "B"}, "hint": "x"}"#), #"unknown key "hint""#),
        ]
        for (text, expected) in cases {
            let problem = try Self.problem(text)
            #expect(problem?.contains(expected) == true, "\(text): \(problem ?? "accepted")")
        }
    }

    /// Only patterns whose matching time is bounded are taken: no groups or alternation (the exponential cases), at
    /// most two unbounded repetitions (three in a row are polynomial), counts up to the patterned length.
    @Test func onlyPatternsThatCannotBacktrackBadlyAreTaken() {
        for pattern in [
            "(a+)+", "(a|a)*", "(a|aa)+", "[ab]*[ab]*[ab]*c", ".*.*.*=.*", "(x{2,}){3}", "a|b", "(a*)\\1*b", "(?=a*)(?:a|ab)*c",
            "a{0,1000}", "a**", "+a", "[a", "\\", "a{2,1}",
        ] {
            #expect(CompiledPattern.unsafeShape(pattern) != nil, "\(pattern)")
        }
        for pattern in ["[0-9]{6}", "\\+?[0-9-]+", "[a-z]+-?[a-z]*", "\\(a+\\)+", "[(a+)]+", "\\p{L}+", "[^0-9]+", "\\d{3}-\\d{4}", "x\\p{Lu}*", "a{2,}b"] {
            #expect(CompiledPattern.unsafeShape(pattern) == nil, "\(pattern): \(CompiledPattern.unsafeShape(pattern) ?? "")")
        }
    }

    /// The attack's patterns, had they been taken, took seconds on a value of 20 to 200 characters; what is taken
    /// matches a value of the longest patterned length, crafted to fail at the end, in well under a second.
    @Test func aTakenPatternMatchesTheLongestValueQuickly() throws {
        for pattern in ["[ab]*[ab]*c", "\\p{L}+[a-z]*\\d", ".*.*x", "a{2,}b{0,200}c"] {
            guard case .success(let compiled) = CompiledPattern.make(pattern) else {
                Issue.record("refused: \(pattern)")
                continue
            }
            let value = String(repeating: "a", count: CompiledPattern.maximumPatternedLength)
            let started = ContinuousClock.now
            #expect(!compiled.matches(value))
            #expect(ContinuousClock.now - started < .seconds(1), "\(pattern)")
        }
    }

    @Test func aBadFormInTheFileIsRefusedWithItsLine() throws {
        let file = #"""
            {
              "form": {
                "fields": [
                  {"name": "fullName", "type": "text", "label": {"ja": "氏名", "en": "Full name"}},
                  {"name": "email", "type": "mail", "label": {"ja": "メール", "en": "E-mail"}}
                ]
              }
            }
            """#
        var reader = try ConfigurationReader(fileContents: Array(file.utf8), fileName: "config.json", environment: [:])
        #expect(throws: ConfigurationError.self) { try TandemConfiguration(reader: &reader) }
        do {
            var again = try ConfigurationReader(fileContents: Array(file.utf8), fileName: "config.json", environment: [:])
            _ = try TandemConfiguration(reader: &again)
        } catch {
            #expect(error.description.contains(#"config.json key "form.fields" (line 5): field 2 ("email") "type" must be one of"#), "\(error.description)")
        }
        // From the environment, as JSON text.
        var fromEnvironment = try ConfigurationReader(fileContents: nil, fileName: "none", environment: ["FORM_FIELDS": Self.fiveFields])
        #expect(try TandemConfiguration(reader: &fromEnvironment).form.fields.count == 5)
        var notJSON = try ConfigurationReader(fileContents: nil, fileName: "none", environment: ["FORM_FIELDS": "[{"])
        #expect(throws: ConfigurationError.self) { try TandemConfiguration(reader: &notJSON) }
    }

    // MARK: Submissions

    @Test func aGoodSubmissionIsKeptInTheFormsOrderTidied() throws {
        let form = try Self.schema(Self.fiveFields)
        let result = Self.check(
            [
                "agree": .bool(true), "otp": .string("123456"), "plan": .string("pro"), "email": .string(" Taro@Example.COM "),
                "fullName": .string("  山田 太郎　"),
            ], form: form)
        guard case .success(let (id, submission)) = result else {
            Issue.record("refused: \(Self.codes(result))")
            return
        }
        #expect(id?.rawValue == "sess_ok")
        #expect(submission.fields.map(\.name) == ["fullName", "email", "plan", "otp", "agree"])
        #expect(submission.text(of: "fullName") == "山田 太郎")
        #expect(submission.text(of: "email") == "Taro@example.com")
        #expect(submission.fields.last?.value == .flag(true))
        #expect(!submission.isArticleForm)
    }

    @Test func eachRuleHasItsCode() throws {
        let form = try Self.schema(Self.fiveFields)
        let good: [String: JSONValue] = [
            "fullName": .string("山田"), "email": .string("a@example.com"), "plan": .string("basic"), "otp": .string("123456"), "agree": .bool(true),
        ]
        func codes(_ changes: [String: JSONValue?]) -> [String] {
            var body = good
            for (key, value) in changes { body[key] = value }
            return Self.codes(Self.check(body, form: form))
        }
        #expect(codes([:]) == [])
        #expect(codes(["otp": nil]) == [])  // optional
        #expect(codes(["fullName": .string("  ")]) == ["field_required"])
        #expect(codes(["fullName": .string(String(repeating: "あ", count: 31))]) == ["field_too_long"])
        #expect(codes(["fullName": .integer(3)]) == ["field_not_text"])
        #expect(codes(["fullName": .string("a\u{202E}b")]) == ["field_invalid_characters"])
        #expect(codes(["email": .string("not-an-address")]) == ["field_invalid_email"])
        #expect(codes(["email": .string("a@-x.com")]) == ["field_invalid_email"])
        #expect(codes(["plan": .string("gold")]) == ["field_not_an_option"])
        #expect(codes(["otp": .string("12345")]) == ["field_pattern_mismatch"])
        // A text field keeps what was typed: full-width digits are not the pattern's ASCII digits.
        #expect(codes(["otp": .string("１２３４５６")]) == ["field_pattern_mismatch"])
        #expect(codes(["agree": .bool(false)]) == ["field_must_be_checked"])
        #expect(codes(["agree": nil]) == ["field_must_be_checked"])
        #expect(codes(["agree": .string("true")]) == ["field_not_boolean"])
        #expect(codes(["extra": .string("x")]) == ["field_unknown"])
        #expect(codes(["name": .string("x"), "phone": .string("1")]) == ["field_unknown", "field_unknown"])
        // Errors come in the form's order, each naming its field's label in both languages.
        guard case .failure(let error) = Self.check(["email": .string("x"), "plan": .string("y")], form: form) else {
            Issue.record("accepted")
            return
        }
        #expect(error.fieldErrors.map(\.path) == ["fullName", "email", "plan", "agree"])
        #expect(error.fieldErrors[1].message.text(in: .japanese) == "「メールアドレス」はメールアドレスの形式で入力してください")
        #expect(error.fieldErrors[1].message.text(in: .english) == "E-mail must be an e-mail address.")
    }

    @Test func numbersAndPhonesTakeFullWidthDigits() throws {
        let form = try Self.schema(#"""
            [{"name": "age", "type": "number", "label": {"ja": "年齢", "en": "Age"}, "required": true, "maxLength": 3},
             {"name": "tel", "type": "tel", "label": {"ja": "電話", "en": "Phone"}}]
            """#)
        guard case .success(let (_, submission)) = Self.check(["age": .string("４２"), "tel": .string("０９０ー１２３４")], form: form) else {
            Issue.record("refused")
            return
        }
        #expect(submission.text(of: "age") == "42" && submission.text(of: "tel") == "090-1234")
        #expect(Self.codes(Self.check(["age": .string("4a")], form: form)) == ["field_not_a_number"])
        #expect(Self.codes(Self.check(["age": .integer(7), "tel": .string("abc")], form: form)) == ["field_invalid_phone"])
        #expect(Self.codes(Self.check(["age": .string("1234")], form: form)) == ["field_too_long"])
    }

    /// Keys the form does not have are refused; one that is not even shaped like a field's name is not echoed back
    /// (an empty key, a long one, one with control characters): one error for the body says so.
    @Test func unknownKeysAreNamedOnlyWhenTheyLookLikeFieldNames() throws {
        let form = try Self.schema(Self.fiveFields)
        var body: [String: JSONValue] = [
            "fullName": .string("山田"), "email": .string("a@example.com"), "plan": .string("basic"), "agree": .bool(true),
            "": .integer(1), String(repeating: "k", count: 40): .integer(1), "a\u{0}b": .integer(1), "extra": .integer(1),
        ]
        guard case .failure(let error) = Self.check(body, form: form) else {
            Issue.record("accepted")
            return
        }
        #expect(error.fieldErrors.map(\.path) == ["extra", "body"])
        for index in 0..<20 { body["x\(index)"] = .integer(1) }
        guard case .failure(let many) = Self.check(body, form: form) else { return }
        #expect(many.fieldErrors.count == SubmissionRules.maximumUnknownFieldsNamed + 1)
        #expect(many.fieldErrors.allSatisfy { $0.path.utf8.count <= 32 })
    }

    @Test func aNumberFieldTakesAJSONDecimalAndASelectAnyOfItsOptions() throws {
        let form = try Self.schema(#"""
            [{"name": "amount", "type": "number", "label": {"ja": "金額", "en": "Amount"}, "required": true},
             {"name": "size", "type": "select", "label": {"ja": "サイズ", "en": "Size"}, "maxLength": 2,
              "options": [{"value": "extra-large", "label": {"ja": "特大", "en": "XL"}}]}]
            """#)
        guard case .success(let (_, submission)) = Self.check(["amount": .number(1.5), "size": .string("extra-large")], form: form) else {
            Issue.record("refused")
            return
        }
        #expect(submission.text(of: "amount") == "1.5" && submission.text(of: "size") == "extra-large")
        #expect(Self.codes(Self.check(["amount": .number(1e20)], form: form)) == ["field_not_a_number"])
    }

    @Test func aNameGivenTwiceIsShownAtItsSecondLine() throws {
        let file = #"""
            {"form": {"fields": [
              {"name": "email", "type": "email", "label": {"ja": "メール", "en": "E-mail"}},
              {"name": "plan", "type": "text", "label": {"ja": "プラン", "en": "Plan"}},
              {"name": "email", "type": "text", "label": {"ja": "メール2", "en": "E-mail 2"}}
            ]}}
            """#
        do {
            var reader = try ConfigurationReader(fileContents: Array(file.utf8), fileName: "config.json", environment: [:])
            _ = try TandemConfiguration(reader: &reader)
            Issue.record("accepted")
        } catch {
            #expect(error.description.contains(#"(line 4): field 3 ("email") a second field named "email""#), "\(error.description)")
        }
    }

    /// Whatever JSON the phone sends for any field, the answer is an acceptance whose values keep the field's rules
    /// or field errors: never a trap.
    @Test func anyValueForAnyFieldIsAcceptedOnlyWithinItsRules() async throws {
        let form = try Self.schema(Self.fiveFields)
        let texts = Gen<String>.oneOf(
            Gen.character(in: "\u{0}"..."\u{FF}").string(of: 0...40), Gen.character(in: "\u{3000}"..."\u{30FF}").string(of: 0...40),
            Gen.character(in: "0"..."9").string(of: 0...8))
        let values = Gen<JSONValue>.oneOf(
            texts.map { JSONValue.string($0) }, Gen<Int>.int(in: -5...1_000_000).map { JSONValue.integer(Int64($0)) },
            Gen<Int>.int(in: 0...1).map { JSONValue.bool($0 == 1) }, Gen<Int>.int(in: 0...0).map { _ in JSONValue.null },
            Gen<Int>.int(in: 0...0).map { _ in JSONValue.array([.string("x")]) })
        let names = Gen<String?>.element(of: ["fullName", "email", "plan", "otp", "agree", "other"]).map { $0 ?? "fullName" }
        await propertyCheck(count: 400, input: zip(names, values).array(of: 0...7)) { (pairs: [(String, JSONValue)]) in
            var body: [String: JSONValue] = [:]
            for (name, value) in pairs { body[name] = value }
            guard case .success(let (_, submission)) = Self.check(body, form: form) else { return }
            for field in submission.fields {
                let rule = try #require(form.fields.first { $0.name == field.name })
                switch (rule.type, field.value) {
                case (.checkbox, .flag(let flag)): #expect(flag || !rule.required)
                case (.select, .text(let text)): #expect(rule.options.contains { $0.value == text })
                case (_, .text(let text)):
                    #expect(!text.isEmpty && text.count <= rule.maxLength)
                    #expect(SubmissionRules.firstRefusedScalar(in: text) == nil)
                    if let pattern = rule.compiled { #expect(pattern.matches(text)) }
                    if rule.type == .email { #expect(SubmissionRules.isEmailAddress(text)) }
                default: Issue.record("\(field) for \(rule.type)")
                }
            }
            #expect(!body.keys.contains("other"))
        }
    }

    // MARK: Over a real server

    @Test func theFormIsServedCheckedAndSentToThePCInItsOrder() async throws {
        let form = try Self.schema(Self.fiveFields)
        try await withTandem({ $0.form = form }) { _, pc in
            let served = try await pc.request("GET", "/api/form")
            #expect(served.status == 200)
            let fields = try JSONAny.object(from: served.bodyText)["fields"]
            guard case .array(let list)? = fields else {
                Issue.record("no fields: \(served.bodyText)")
                return
            }
            #expect(list.count == 5)
            let phone = pc.anotherDevice()
            let id = SeedFlowTests.newSessionID()
            let stream = try await pc.openEventStream("/api/events?session=\(id)")
            #expect(try await phone.request("GET", "/api/validate-session?session=\(id)").status == 200)
            let refused = try await phone.post("/api/submit", json: #"{"sessionId":"\#(id)","fullName":"山田","email":"x","plan":"pro","agree":true}"#)
            #expect(refused.status == 400)
            #expect(try json(refused)["code"]?.string == "field_invalid_email")
            let body = #"{"sessionId":"\#(id)","agree":true,"plan":"pro","email":"taro@example.com","fullName":"山田 太郎"}"#
            #expect(try await phone.post("/api/submit", json: body).status == 200)
            #expect(try await phone.post("/api/submit", json: body).status == 200)  // the same again: a retry
            let (events, _) = try await stream.all { $0.contains { $0.event == "complete" } }
            #expect(events.first { $0.event == "complete" }?.data == #"{"fullName":"山田 太郎","email":"taro@example.com","plan":"pro","agree":true}"#)
            await stream.close()
            // A reader that resumes from a point the log does not know gets the fields in its resync.
            let cookie = try #require(stream.cookie)
            let resumed = try await pc.openEventStream("/api/events?session=\(id)", headers: [("Last-Event-ID", "999"), ("Cookie", cookie)])
            let (again, _) = try await resumed.all { $0.contains { $0.event == "resync" } }
            let resync = try JSONAny.object(from: try #require(again.first { $0.event == "resync" }).data)
            #expect(resync["fullName"] == .string("山田 太郎") && resync["agree"] == .bool(true) && resync["status"] == .string("completed"))
            await resumed.close()
        }
    }

    @Test func theDefaultFormIsTheArticlesAndItsEventsAreUnchanged() async throws {
        try await withTandem { _, pc in
            let served = try JSONAny.object(from: try await pc.request("GET", "/api/form").bodyText)
            guard case .array(let list)? = served["fields"], list.count == 2 else {
                Issue.record("\(served)")
                return
            }
            let phone = pc.anotherDevice()
            let id = SeedFlowTests.newSessionID()
            let stream = try await pc.openEventStream("/api/events?session=\(id)")
            #expect(try await phone.request("GET", "/api/validate-session?session=\(id)").status == 200)
            #expect(try await phone.post("/api/submit", json: #"{"sessionId":"\#(id)","name":"山田","phone":"090"}"#).status == 200)
            let (events, _) = try await stream.all { $0.contains { $0.event == "complete" } }
            #expect(events.first { $0.event == "complete" }?.data == #"{"name":"山田","phone":"090"}"#)
            await stream.close()
        }
    }
}

import Broker
import Foundation
import TestSupport
import Testing

@testable import App

/// Every error case of the article, and the hostile variants a real client sends: status, `code`, message.
@Suite(.timeLimit(.minutes(1)))
struct ErrorCaseTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var label: String
        var method: String
        var path: String
        var body: String?
        var contentType: String? = "application/json"
        var language: String?
        var status: Int
        var code: String
        var message: String?
        var fieldCodes: [String]?

        var testDescription: String { label }
    }

    /// `{id}` in a case is replaced by a live session's ID.
    static let cases: [Case] = [
        Case(label: "validate without ID", method: "GET", path: "/api/validate-session", status: 400, code: "session_id_required",
             message: "セッションIDが指定されていません"),
        Case(label: "validate with empty ID", method: "GET", path: "/api/validate-session?session=", status: 400, code: "session_id_required"),
        Case(label: "validate unknown session", method: "GET", path: "/api/validate-session?session=sess_unknown1", status: 404,
             code: "session_not_found", message: "このセッションは無効です。QRコード画面が更新された可能性があります。"),
        Case(label: "validate malformed ID", method: "GET", path: "/api/validate-session?session=%3Cscript%3E", status: 400, code: "session_id_malformed"),
        Case(label: "validate too-long ID", method: "GET", path: "/api/validate-session?session=" + String(repeating: "a", count: 65), status: 400,
             code: "session_id_malformed"),
        Case(label: "events without ID", method: "GET", path: "/api/events", status: 400, code: "session_id_required"),
        Case(label: "input-started without ID", method: "POST", path: "/api/input-started", body: "{}", status: 400, code: "session_id_required",
             message: "セッションIDが必要です"),
        Case(label: "input-started unknown session", method: "POST", path: "/api/input-started", body: #"{"sessionId":"sess_nope"}"#, status: 404,
             code: "session_not_found", message: "セッションが見つからないか、有効期限が切れています"),
        Case(label: "input-started in English", method: "POST", path: "/api/input-started", body: #"{"sessionId":"sess_nope"}"#,
             language: "en-US,en;q=0.9,ja;q=0.8", status: 404, code: "session_not_found", message: "The session was not found or has expired."),
        Case(label: "submit name of 21 characters", method: "POST", path: "/api/submit",
             body: #"{"sessionId":"{id}","name":"\#(String(repeating: "あ", count: 21))","phone":"0312345678"}"#, status: 400,
             code: "name_too_long", message: "お名前は20文字以内で入力してください", fieldCodes: ["name_too_long"]),
        Case(label: "submit phone of 16 characters", method: "POST", path: "/api/submit",
             body: #"{"sessionId":"{id}","name":"山田","phone":"0123456789012345"}"#, status: 400, code: "phone_too_long",
             message: "電話番号は15文字以内で入力してください", fieldCodes: ["phone_too_long"]),
        Case(label: "submit full-width phone of 16 characters", method: "POST", path: "/api/submit",
             body: #"{"sessionId":"{id}","name":"山田","phone":"０１２３４５６７８９０１２３４５"}"#, status: 400, code: "phone_too_long"),
        Case(label: "submit missing name and phone", method: "POST", path: "/api/submit", body: #"{"sessionId":"{id}"}"#, status: 400,
             code: "name_required", message: "お名前を入力してください", fieldCodes: ["name_required", "phone_required"]),
        Case(label: "submit empty fields in English", method: "POST", path: "/api/submit", body: #"{"sessionId":"{id}","name":"","phone":""}"#,
             language: "en", status: 400, code: "name_required", message: "Please enter your name.", fieldCodes: ["name_required", "phone_required"]),
        Case(label: "submit without session ID", method: "POST", path: "/api/submit", body: #"{"name":"A","phone":"12"}"#, status: 400,
             code: "session_id_required", fieldCodes: ["session_id_required"]),
        Case(label: "submit name as object", method: "POST", path: "/api/submit", body: #"{"sessionId":"{id}","name":{"a":1},"phone":"12"}"#,
             status: 400, code: "name_not_text"),
        Case(label: "submit name with a line break", method: "POST", path: "/api/submit", body: #"{"sessionId":"{id}","name":"a\nb","phone":"12"}"#,
             status: 400, code: "name_invalid_characters"),
        Case(label: "submit unknown session", method: "POST", path: "/api/submit", body: #"{"sessionId":"sess_nope","name":"A","phone":"12"}"#,
             status: 404, code: "session_not_found"),
        Case(label: "malformed JSON", method: "POST", path: "/api/submit", body: #"{"sessionId":"#, status: 400, code: "malformed_json"),
        Case(label: "empty body", method: "POST", path: "/api/input-started", body: "", status: 400, code: "malformed_json"),
        Case(label: "JSON array body", method: "POST", path: "/api/submit", body: "[1,2]", status: 400, code: "body_not_object"),
        Case(label: "wrong content type", method: "POST", path: "/api/submit", body: "name=a", contentType: "text/plain", status: 415,
             code: "unsupported_media_type"),
        Case(label: "GET on a POST endpoint", method: "GET", path: "/api/submit", status: 405, code: "method_not_allowed"),
        Case(label: "POST on a GET endpoint", method: "POST", path: "/api/validate-session", body: "{}", status: 405, code: "method_not_allowed"),
        Case(label: "DELETE on events", method: "DELETE", path: "/api/events?session=a", status: 405, code: "method_not_allowed"),
        Case(label: "unknown API path", method: "GET", path: "/api/nothing", status: 404, code: "not_found"),
        Case(label: "body over the limit", method: "POST", path: "/api/submit",
             body: #"{"sessionId":"{id}","name":"\#(String(repeating: "x", count: 20_000))","phone":"1"}"#, status: 413, code: "body_too_large"),
    ]

    @Test(arguments: cases)
    func answersWithStatusCodeAndMessage(_ errorCase: Case) async throws {
        try await withTandem { _, client in
            let id = SeedFlowTests.newSessionID()
            let stream = try await client.openEventStream("/api/events?session=\(id)")
            var headers: [(String, String)] = []
            if let contentType = errorCase.contentType, errorCase.body != nil { headers.append(("Content-Type", contentType)) }
            if let language = errorCase.language { headers.append(("Accept-Language", language)) }
            let response = try await client.request(
                errorCase.method, errorCase.path, headers: headers, body: errorCase.body?.replacing("{id}", with: id))
            #expect(response.status == errorCase.status)
            let body = try json(response)
            #expect(body["code"]?.string == errorCase.code)
            if let message = errorCase.message { #expect(body["message"]?.string == message) }
            #expect(body["message"]?.string?.isEmpty == false)
            if let fieldCodes = errorCase.fieldCodes {
                #expect(body["errors"]?.array?.compactMap { $0["code"]?.string } == fieldCodes)
                #expect(body["errors"]?.array?.first?["msg"]?.string == body["message"]?.string)
            }
            if errorCase.path.hasPrefix("/api/validate-session"), errorCase.status != 405 {
                #expect(body["valid"]?.bool == false)
            } else {
                #expect(body["success"]?.bool == false)
            }
            if errorCase.status == 405 { #expect(response.header("allow") != nil) }
            // Nothing reached the main device.
            let (events, _) = try await stream.events(atLeast: 2)
            #expect(events.filter { !$0.event.isEmpty }.map(\.event) == ["message"])
            await stream.close()
        }
    }

    /// `stored` is the phone number as stored and sent to the PC, when it is not the one sent.
    @Test(arguments: [
        ("山田太郎山田太郎山田太郎山田太郎山田太郎", "０９０１２３４５６７８９０１２", "090123456789012"),  // 20 kanji, 15 full-width digits
        ("👨‍👩‍👧‍👦" + String(repeating: "a", count: 19), "+81-90-1234-567", nil),  // one grapheme cluster of seven scalars
        ("<script>x</script>", "12", nil),  // 18 characters, rendered as text by the pages
    ])
    func acceptsNamesAndPhonesAtTheLimit(name: String, phone: String, stored: String?) async throws {
        try await withTandem { _, client in
            let id = SeedFlowTests.newSessionID()
            let stream = try await client.openEventStream("/api/events?session=\(id)")
            let body = String(decoding: try JSONEncoder().encode(["sessionId": id, "name": name, "phone": phone]), as: UTF8.self)
            let response = try await client.post("/api/submit", json: body)
            #expect(response.status == 200)
            let (events, _) = try await stream.events(atLeast: 3)
            let complete = try #require(events.first { $0.event == "complete" })
            #expect(try JSONAny.object(from: complete.data) == ["name": .string(name), "phone": .string(stored ?? phone)])
            await stream.close()
        }
    }

    @Test func secondSubmitIsRefusedAndChangesNothing() async throws {
        try await withTandem { application, client in
            let id = SeedFlowTests.newSessionID()
            _ = try await client.request("GET", "/api/validate-session?session=\(id)")
            let stream = try await client.openEventStream("/api/events?session=\(id)")
            #expect(try await client.post("/api/submit", json: #"{"sessionId":"\#(id)","name":"First","phone":"11"}"#).status == 200)
            let second = try await client.post("/api/submit", json: #"{"sessionId":"\#(id)","name":"Second","phone":"22"}"#)
            #expect(second.status == 409)
            #expect(try json(second)["code"]?.string == "already_submitted")
            #expect(try await client.post("/api/input-started", json: #"{"sessionId":"\#(id)"}"#).status == 409)
            let record = try await application.broker.session(try #require(SessionID(id)))
            #expect(record?.submission == Submission(name: "First", phone: "11"))
            let (events, _) = try await stream.events(atLeast: 3)
            #expect(events.filter { $0.event == "complete" }.count == 1)
            await stream.close()
        }
    }

    /// A form or `text/plain` body is what another site's page can post without a CORS preflight: refused, and
    /// nothing reaches the session.
    @Test(arguments: [
        ("application/x-www-form-urlencoded", "sessionId={id}&name=%E5%B1%B1%E7%94%B0&phone=03+1234"),
        ("text/plain", #"{"sessionId":"{id}","name":"山田","phone":"0312"}"#),
        ("multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"sessionId\"\r\n\r\n{id}\r\n--x--\r\n"),
        (nil, #"{"sessionId":"{id}","name":"山田","phone":"0312"}"#),
    ] as [(String?, String)])
    func bodiesThatAreNotJSONAreRefused(contentType: String?, body: String) async throws {
        try await withTandem { _, client in
            let id = SeedFlowTests.newSessionID()
            let stream = try await client.openEventStream("/api/events?session=\(id)")
            for path in ["/api/submit", "/api/input-started"] {
                let response = try await client.request(
                    "POST", path, headers: contentType.map { [("Content-Type", $0)] } ?? [], body: body.replacing("{id}", with: id))
                #expect(response.status == 415)
                #expect(try json(response)["code"]?.string == "unsupported_media_type")
            }
            let (events, _) = try await stream.events(atLeast: 2)
            #expect(events.filter { !$0.event.isEmpty }.map(\.event) == ["message"])
            #expect(try await client.request("GET", "/api/validate-session?session=\(id)").status == 200)
            await stream.close()
        }
    }
}

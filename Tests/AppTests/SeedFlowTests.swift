import Broker
import Foundation
import TestSupport
import Testing

@testable import App

/// The seed's whole flow over real sockets, and every error case the article names.
@Suite(.timeLimit(.minutes(1)))
struct SeedFlowTests {
    static func newSessionID() -> String { "sess_" + UUID().uuidString.prefix(12).replacing("-", with: "").lowercased() }

    @Test func wholeFlowDeliversConnectedInputStartedAndCompleteInOrder() async throws {
        try await withTandem { _, client in
            let id = Self.newSessionID()
            let stream = try await client.openEventStream("/api/events?session=\(id)")
            #expect(stream.head.status == 200)
            #expect(stream.head.header("content-type") == "text/event-stream")
            #expect(stream.head.header("cache-control") == "no-cache")
            #expect(stream.head.header("x-accel-buffering") == "no")

            let opening = try await stream.events(atLeast: 1)
            let info = try JSONAny.object(from: try #require(opening.events.first { $0.event == "message" }).data)
            #expect(info["type"]?.string == "session-info")
            #expect(info["ttlMinutes"]?.number == 10)
            let expiry = try #require(info["expiryTime"]?.number)
            #expect(abs(expiry - Date().timeIntervalSince1970 * 1000 - 600_000) < 5_000)

            let validation = try await client.request("GET", "/api/validate-session?session=\(id)")
            #expect(validation.status == 200)
            let validBody = try json(validation)
            #expect(validBody["valid"]?.bool == true)
            #expect(validBody["expiryTime"]?.number == expiry)
            #expect(validBody["ttlMinutes"]?.number == 10)

            let started = try await client.post("/api/input-started", json: #"{"sessionId":"\#(id)"}"#)
            #expect(started.status == 200)
            #expect(try json(started)["success"]?.bool == true)

            let submitted = try await client.post("/api/submit", json: #"{"sessionId":"\#(id)","name":"山田太郎","phone":"090-1234-5678"}"#)
            #expect(submitted.status == 200)
            #expect(try json(submitted)["success"]?.bool == true)
            #expect(try json(submitted)["message"]?.string == "送信が完了しました")

            let (events, _) = try await stream.events(atLeast: 5)
            // retry hint, session-info, then the three events, each with its log position as id.
            let named = events.filter { $0.event != "" }
            #expect(named.map(\.event) == ["message", "connected", "input-started", "complete"])
            #expect(named.map(\.id) == ["0", "1", "2", "3"])
            // The phone's validate claimed the session: connected carries the pairing code both screens show.
            let code = try JSONAny.object(from: named[1].data)["code"]
            #expect(code.map { if case .string(let text) = $0 { SessionRecord.isPairingCode(text) } else { false } } == true)
            #expect(named[2].data == "{}")
            let complete = try JSONAny.object(from: named[3].data)
            #expect(complete == ["name": .string("山田太郎"), "phone": .string("090-1234-5678")])
            #expect(events.first?.retry == 2000)
            await stream.close()
        }
    }

    /// The same flow on a node whose broker is Redis (the server `scripts/test.sh` starts), on NIO's shared loops and
    /// on three loops of the node's own (three command connections to Redis, one per loop).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["TANDEM_TEST_REDIS_URL"] != nil), arguments: [0, 3])
    func wholeFlowThroughTheRedisBroker(eventLoops: Int) async throws {
        let url = try #require(ProcessInfo.processInfo.environment["TANDEM_TEST_REDIS_URL"])
        try await withTandem({ $0.broker = .redis; $0.redisURL = url; $0.eventLoops = eventLoops }) { application, client in
            try await eventually(timeout: .seconds(10)) { await application.broker.health.isAvailable }
            let id = Self.newSessionID()
            let stream = try await client.openEventStream("/api/events?session=\(id)")
            _ = try await stream.events(atLeast: 1)
            #expect(try await client.request("GET", "/api/validate-session?session=\(id)").status == 200)
            #expect(try await client.post("/api/input-started", json: #"{"sessionId":"\#(id)"}"#).status == 200)
            #expect(try await client.post("/api/submit", json: #"{"sessionId":"\#(id)","name":"山田太郎","phone":"12"}"#).status == 200)
            let (events, _) = try await stream.events(atLeast: 5)
            #expect(events.filter { !$0.event.isEmpty }.map(\.event) == ["message", "connected", "input-started", "complete"])
            #expect(events.filter { !$0.event.isEmpty }.map(\.id) == ["0", "1", "2", "3"])
            await stream.close()
        }
    }

    /// Redis hands a held session's whole log to the node again after every reconnect of its subscriber; the stream
    /// skips what it has, and what it skips must not count as written: a link that flaps more often than the
    /// heartbeat interval would otherwise keep the stream silent (and a proxy would cut it).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["TANDEM_TEST_REDIS_URL"] != nil))
    func heartbeatsKeepTheirIntervalWhileRedisRedeliversTheLog() async throws {
        let shared = try #require(ProcessInfo.processInfo.environment["TANDEM_TEST_REDIS_URL"])
        // A database of its own: its node's connections are told from the other suites' by their `db=` (CLIENT KILL
        // of every subscriber would break the suites running beside it on the shared Redis).
        let base = String(shared[..<(shared.lastIndex(of: "/") ?? shared.endIndex)])
        let url = base + "/9"
        try await withTandem({ $0.broker = .redis; $0.redisURL = url; $0.heartbeatSeconds = 1 }) { application, client in
            try await eventually(timeout: .seconds(10)) { await application.broker.health.isAvailable }
            let id = Self.newSessionID()
            let stream = try await client.openEventStream("/api/events?session=\(id)")
            _ = try await stream.events(atLeast: 1)
            #expect(try await client.request("GET", "/api/validate-session?session=\(id)").status == 200)
            _ = try await stream.events(atLeast: 2)
            let start = ContinuousClock.now
            for _ in 0..<8 {
                try await Task.sleep(for: .milliseconds(600))
                let list = try Self.redisCLI(url, ["CLIENT", "LIST", "TYPE", "pubsub"])
                for line in list.split(separator: "\n") where line.contains(" db=9 ") {
                    guard let id = line.split(separator: " ").first(where: { $0.hasPrefix("id=") })?.dropFirst(3) else { continue }
                    _ = try Self.redisCLI(url, ["CLIENT", "KILL", "ID", String(id)])
                }
            }
            let elapsed = ContinuousClock.now - start
            // What came while the link flapped (everything so far: `connected` came before).
            let (events, _) = try await stream.all(timeout: .seconds(1)) { $0.contains { $0.event == "connected" } }
            // About one a second for the 4.8 s: three at least (the first may come after up to a second).
            #expect(events.filter { $0.comment == "heartbeat" }.count >= 3, "\(events) in \(elapsed)")
            #expect(events.filter { !$0.isComment && !$0.event.isEmpty }.map(\.event) == ["message", "connected"])
            await stream.close()
        }
    }

    /// Runs `redis-cli -u url arguments...` and returns what it printed.
    static func redisCLI(_ url: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["redis-cli", "-u", url] + arguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    @Test func phonePollingValidateAnnouncesItOnlyOnce() async throws {
        try await withTandem { _, client in
            let id = Self.newSessionID()
            let stream = try await client.openEventStream("/api/events?session=\(id)")
            for _ in 0..<3 {
                #expect(try await client.request("GET", "/api/validate-session?session=\(id)").status == 200)
            }
            #expect(try await client.post("/api/input-started", json: #"{"sessionId":"\#(id)"}"#).status == 200)
            #expect(try await client.post("/api/input-started", json: #"{"sessionId":"\#(id)"}"#).status == 200)
            #expect(try await client.request("GET", "/api/validate-session?session=\(id)").status == 200)
            let (events, _) = try await stream.events(atLeast: 4)
            #expect(events.map(\.event).filter { !$0.isEmpty } == ["message", "connected", "input-started"])
            await stream.close()
        }
    }

    @Test func reconnectWithLastEventIDGetsOnlyMissedEventsAndDoesNotResetTheSession() async throws {
        try await withTandem { _, client in
            let id = Self.newSessionID()
            let first = try await client.openEventStream("/api/events?session=\(id)")
            let firstInfo = try JSONAny.object(from: try await first.events(atLeast: 2).events[1].data)
            _ = try await client.request("GET", "/api/validate-session?session=\(id)")
            _ = try await client.post("/api/input-started", json: #"{"sessionId":"\#(id)"}"#)
            _ = try await first.events(atLeast: 4)
            await first.close()

            // Submitted while the PC is disconnected.
            _ = try await client.post("/api/submit", json: #"{"sessionId":"\#(id)","name":"A","phone":"12"}"#)

            let cookie = try #require(first.cookie)
            let second = try await client.openEventStream("/api/events?session=\(id)", headers: [("Last-Event-ID", "2"), ("Cookie", cookie)])
            #expect(second.head.status == 200)
            let (events, _) = try await second.events(atLeast: 3)
            let named = events.filter { !$0.event.isEmpty }
            #expect(named.map(\.event) == ["message", "complete"])
            #expect(named.map(\.id) == ["2", "3"])
            let info = try JSONAny.object(from: named[0].data)
            #expect(info["expiryTime"] == firstInfo["expiryTime"], "reconnecting must not reset the session")
            await second.close()
        }
    }

    @Test func expiryEndsTheStreamAndTheSession() async throws {
        // Three seconds: long enough that the validation below is inside the TTL on a busy machine.
        try await withTandem({ $0.sessionTTLSeconds = 3 }) { application, client in
            let id = Self.newSessionID()
            let stream = try await client.openEventStream("/api/events?session=\(id)")
            _ = try await stream.events(atLeast: 2)
            #expect(try await client.request("GET", "/api/validate-session?session=\(id)").status == 200)
            let (_, ended) = try await stream.events(atLeast: 99, timeout: .seconds(5))
            #expect(ended, "the server closes the stream when the session expires")

            let validation = try await client.request("GET", "/api/validate-session?session=\(id)")
            #expect(validation.status == 404)
            #expect(try json(validation)["valid"]?.bool == false)
            #expect(try await client.post("/api/input-started", json: #"{"sessionId":"\#(id)"}"#).status == 404)
            let submit = try await client.post("/api/submit", json: #"{"sessionId":"\#(id)","name":"A","phone":"12"}"#)
            #expect(submit.status == 404)
            #expect(try json(submit)["message"]?.string == "セッションが見つからないか、有効期限が切れています")
            // The browser's automatic reconnect is refused, so EventSource stops instead of reviving the session.
            let reconnect = try await client.request("GET", "/api/events?session=\(id)", headers: [("Last-Event-ID", "1")])
            #expect(reconnect.status == 404)
            #expect(application.registry.streamCount == 0)
        }
    }

    @Test func serverMadeSessionsAreReadOnlyWithTheirKeyAndWrittenWithTheIDAlone() async throws {
        try await withTandem { _, client in
            let created = try await client.post("/api/sessions", json: "")
            #expect(created.status == 201)
            let body = try json(created)
            let id = try #require(body["sessionId"]?.string)
            let key = try #require(body["readerKey"]?.string)
            #expect(id.count == 34 && key.count == 32, "128 bits each, as hex")
            #expect(body["ttlMinutes"]?.number == 10)

            // What the QR code carries (the ID) does not open the stream.
            for target in ["/api/events?session=\(id)", "/api/events?session=\(id)&key=", "/api/events?session=\(id)&key=\(String(key.reversed()))"] {
                let refused = try await client.request("GET", target)
                #expect(refused.status == 403)
                #expect(try json(refused)["code"]?.string == "reader_key_required")
            }
            let stream = try await client.openEventStream("/api/events?session=\(id)&key=\(key)")
            #expect(stream.head.status == 200)
            // The QR code carries the ID and a pairing token; the ID alone claims nothing.
            let token = try #require(body["token"]?.string)
            #expect(try await client.request("GET", "/api/validate-session?session=\(id)").status == 410)
            #expect(try await client.request("GET", "/api/validate-session?session=\(id)&t=\(token)").status == 200)
            #expect(try await client.post("/api/submit", json: #"{"sessionId":"\#(id)","name":"A","phone":"12"}"#).status == 200)
            let (events, _) = try await stream.events(atLeast: 4)
            #expect(events.filter { !$0.event.isEmpty }.map(\.event) == ["message", "connected", "complete"])
            await stream.close()

            let other = try json(try await client.post("/api/sessions", json: ""))
            #expect(other["sessionId"]?.string != id && other["readerKey"]?.string != key)
        }
    }

    @Test func onlyTheOpenerReadsASessionTheSeedsWay() async throws {
        try await withTandem { _, client in
            let id = Self.newSessionID()
            let opener = try await client.openEventStream("/api/events?session=\(id)")
            let cookie = try #require(opener.cookie)
            #expect(cookie.hasPrefix("tandem_reader_\(id)="))
            #expect(opener.head.header("set-cookie")?.contains("HttpOnly") == true)
            #expect(opener.head.header("set-cookie")?.contains("SameSite=Strict") == true)
            _ = try await opener.events(atLeast: 2)

            // Someone who photographed the QR code knows the ID, not the key.
            for headers in [[], [("Cookie", "tandem_reader_\(id)=guess")], [("Cookie", "tandem_reader_other=\(cookie.split(separator: "=")[1])")]] {
                let intruder = try await client.request("GET", "/api/events?session=\(id)", headers: headers)
                #expect(intruder.status == 403)
                #expect(try json(intruder)["code"]?.string == "reader_key_required")
            }
            let resumed = try await client.openEventStream("/api/events?session=\(id)", headers: [("Cookie", cookie), ("Last-Event-ID", "0")])
            #expect(resumed.head.status == 200)
            #expect(resumed.head.header("set-cookie") == nil)
            _ = try await client.post("/api/submit", json: #"{"sessionId":"\#(id)","name":"秘密","phone":"12"}"#)
            let (events, _) = try await resumed.events(atLeast: 3)
            #expect(events.contains { $0.event == "complete" })
            await opener.close()
            await resumed.close()
        }
    }

    @Test func heartbeatsArriveAsComments() async throws {
        try await withTandem({ $0.heartbeatSeconds = 1 }) { _, client in
            let stream = try await client.openEventStream("/api/events?session=\(Self.newSessionID())")
            let (events, _) = try await stream.all(timeout: .seconds(5)) { $0.contains { $0.comment == "heartbeat" } }
            #expect(events.contains { $0.comment == "heartbeat" })
            await stream.close()
        }
    }

    @Test func healthReportsTheBrokerAndOpenStreams() async throws {
        try await withTandem { _, client in
            let stream = try await client.openEventStream("/api/events?session=\(Self.newSessionID())")
            _ = try await stream.events(atLeast: 1)
            let health = try await client.request("GET", "/healthz")
            #expect(health.status == 200)
            let body = try json(health)
            #expect(body["status"]?.string == "ok")
            #expect(body["streams"]?.number == 1)
            #expect(body["broker"]?["kind"]?.string == "memory")
            await stream.close()
        }
    }

    @Test func gracefulShutdownEndsOpenStreams() async throws {
        let (stream, ended) = try await withTandem { _, client in
            let stream = try await client.openEventStream("/api/events?session=\(Self.newSessionID())")
            _ = try await stream.events(atLeast: 1)
            return (stream, stream.connection)
        }
        // withTandem returned, so the node stopped; the stream's connection was closed by the server, after a
        // short retry hint so the browser comes back at once.
        #expect(await ended.isClosed(within: .seconds(2)))
        let (events, _) = try await stream.events(atLeast: 99, timeout: .seconds(1))
        #expect(events.last?.retry == API.drainRetryMilliseconds)
        await stream.close()
    }
}

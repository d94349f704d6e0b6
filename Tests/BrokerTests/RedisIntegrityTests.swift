import Foundation
import NIOCore
import Testing

@testable import Broker

/// What the Redis broker does with what it did not write itself, and with a Redis that cannot store: corrupt keys
/// change nothing and are refused as such, absurd log entries are never delivered, refusals to store are outages
/// that health reports until Redis stores again, and a session Redis lost is reported ended to the node's streams.
@Suite(.timeLimit(.minutes(1)))
struct RedisIntegrityTests {
    /// Ways a session's keys can hold what Tandem never writes (another program, a bad migration, a bug).
    enum Corruption: String, CaseIterable, Sendable {
        case logIsNotAList, recordIsNotAHash, lastEventIDMissing, lastEventIDNegative, lastEventIDPastTheRange
        case lastEventIDNotAnInteger, statusUnknown, createdAtMissing, expiresAtPastTheYear9999, halfASubmission
        case recordWithoutExpiry, claimWithoutItsCode, pairingCodeNotFourDigits, phoneKeyTooLong

        /// The commands that do it to the session of `session` and `log`.
        func commands(session: String, log: String) -> [[String]] {
            switch self {
            case .logIsNotAList: [["SET", log, "not a list", "PX", "60000"]]
            case .recordIsNotAHash: [["DEL", session], ["SET", session, "not a hash", "PX", "60000"]]
            case .lastEventIDMissing: [["HDEL", session, "lastEventID"]]
            case .lastEventIDNegative: [["HSET", session, "lastEventID", "-1"]]
            case .lastEventIDPastTheRange: [["HSET", session, "lastEventID", "9007199254740992"]]
            case .lastEventIDNotAnInteger: [["HSET", session, "lastEventID", "1.5"]]
            case .statusUnknown: [["HSET", session, "status", "garbage"]]
            case .createdAtMissing: [["HDEL", session, "createdAt"]]
            case .expiresAtPastTheYear9999: [["HSET", session, "expiresAt", "253402300800000"]]
            case .halfASubmission: [["HSET", session, "name", "A"]]
            case .recordWithoutExpiry: [["PERSIST", session]]
            case .claimWithoutItsCode: [["HSET", session, "phoneKey", String(repeating: "a", count: 32)]]
            case .pairingCodeNotFourDigits: [["HSET", session, "phoneKey", String(repeating: "a", count: 32), "pairingCode", "12345"]]
            case .phoneKeyTooLong: [["HSET", session, "phoneKey", String(repeating: "a", count: 65), "pairingCode", "1234"]]
            }
        }
    }

    /// Everything Redis holds under a session's two keys (types, values, and whether each expires).
    static func snapshot(_ id: SessionID, over connection: RedisConnection) async throws -> [RESPValue] {
        var state: [RESPValue] = []
        for key in [RedisKeys.session(id), RedisKeys.log(id)] {
            let type = try await connection.send(["TYPE", key]).get()
            state.append(type)
            switch type.string {
            case "hash": state.append(try await connection.send(["HGETALL", key]).get())
            case "list": state.append(try await connection.send(["LRANGE", key, "0", "-1"]).get())
            case "string": state.append(try await connection.send(["GET", key]).get())
            default: break
            }
            let ttl = try await connection.send(["PTTL", key]).get().integer ?? -3
            state.append(.integer(ttl > 0 ? 1 : ttl))
        }
        return state
    }

    static func expectCorrupt(_ operation: String, _ body: () async throws -> Void) async {
        do {
            try await body()
            Issue.record("\(operation) succeeded on a corrupt session")
        } catch let error as BrokerError {
            #expect(error.code == .corruptSession, "\(operation): \(error)")
        } catch {
            Issue.record("\(operation): \(error)")
        }
    }

    @Test(.enabled(if: BrokerUnderTest.available.contains(.redis)), arguments: Corruption.allCases)
    func aCorruptSessionIsRefusedAndNothingChanges(_ corruption: Corruption) async throws {
        guard let url = BrokerUnderTest.redisURL else { throw RedisNotConfigured() }
        let sink = RecordingSink()
        try await withRedisBroker(.init(url: url), sink: sink) { broker in
            let connection = try await RedisConnection.connect(to: url, commandTimeout: .seconds(2))
            defer { connection.close() }
            let id = SessionID.random()
            _ = try await broker.openSession(id, ttl: .seconds(60), readerKey: "key")
            try await broker.subscribe(id)
            _ = try await broker.publish(.connected(), to: id)
            try await waitUntil { sink.events(of: id).count == 1 }
            for command in corruption.commands(session: RedisKeys.session(id), log: RedisKeys.log(id)) {
                _ = try await connection.send(command).get().throwingError()
            }
            let before = try await Self.snapshot(id, over: connection)

            await Self.expectCorrupt("publish complete") { _ = try await broker.publish(.complete(Submission(name: "山田", phone: "090")), to: id) }
            await Self.expectCorrupt("publish input-started") { _ = try await broker.publish(.inputStarted, to: id) }
            await Self.expectCorrupt("open") { _ = try await broker.openSession(id, ttl: .seconds(60), readerKey: "other") }
            // Reads refuse what they read and cannot trust; a read that does not touch the damage sees the session.
            if ![.logIsNotAList, .recordWithoutExpiry].contains(corruption) {
                await Self.expectCorrupt("session") { _ = try await broker.session(id) }
            }
            if [.logIsNotAList, .recordIsNotAHash, .lastEventIDNegative, .lastEventIDPastTheRange, .lastEventIDNotAnInteger].contains(corruption) {
                await Self.expectCorrupt("events") { _ = try await broker.events(of: id, after: 0) }
            }

            #expect(try await Self.snapshot(id, over: connection) == before, "the call changed the session's keys")
            try await Task.sleep(for: .milliseconds(100))
            #expect(sink.events(of: id).map(\.id) == [1], "an event was published from a corrupt session")
            await broker.unsubscribe(id)
        }
    }

    /// A Redis broker, a connection of the test's own to the same Redis, and a session opened (60 s, a reader key).
    static func withOpenedSession(_ body: (RedisBroker, RedisConnection, SessionID) async throws -> Void) async throws {
        guard let url = BrokerUnderTest.redisURL else { throw RedisNotConfigured() }
        try await withRedisBroker(.init(url: url), sink: RecordingSink()) { broker in
            let connection = try await RedisConnection.connect(to: url, commandTimeout: .seconds(2))
            defer { connection.close() }
            let id = SessionID.random()
            _ = try await broker.openSession(id, ttl: .seconds(60), readerKey: "key")
            try await body(broker, connection, id)
        }
    }

    /// A step that moves nothing answers with the session's summary, as a published one does: a damaged field it
    /// neither reads nor answers with (found by the next whole read) does not make it fail after it stored its claim.
    @Test(.enabled(if: BrokerUnderTest.available.contains(.redis)), arguments: [
        ["cancelReason", "bogus"], ["idem:bogus", "k"], ["form", "not json"],
    ])
    func aStepThatMovesNothingAnswersWithItsSummaryWhateverFieldsItDoesNotRead(_ damage: [String]) async throws {
        try await Self.withOpenedSession { broker, connection, id in
            // Connected (as a session opened the article's way can be) but claimed by nobody, with one field Tandem
            // never writes.
            _ = try await connection.send(["HSET", RedisKeys.session(id), "status", "connected", "lastEventID", "1", damage[0], damage[1]])
                .get().throwingError()
            let claim = PhoneClaim(presentedKey: nil, newKey: SessionID.randomHex128(), pairingCode: "1234", mayClaim: true)
            guard case .unchanged(let summary) = try await broker.publish(.connected(), to: id, from: claim, idempotencyKey: nil) else {
                Issue.record("the step that moves nothing was not unchanged")
                return
            }
            #expect(summary.status == .connected && summary.lastEventID == 1)
            #expect(summary.phoneKey == claim.newKey && summary.pairingCode == "1234", "the claim it made is in its answer")
            #expect(try await connection.send(["HGET", RedisKeys.session(id), "phoneKey"]).get().string == claim.newKey)
            // The whole read still refuses the damage.
            await Self.expectCorrupt("session") { _ = try await broker.session(id) }
        }
    }

    /// A record past its `expiresAt` is a session that is over, whatever its keys' TTL says (as in the memory
    /// broker): a step finds no session and writes nothing.
    @Test(.enabled(if: BrokerUnderTest.available.contains(.redis)))
    func aSessionPastItsExpiryTimeTakesNoStep() async throws {
        try await Self.withOpenedSession { broker, connection, id in
            _ = try await connection.send(["HSET", RedisKeys.session(id), "createdAt", "0", "expiresAt", "0"]).get().throwingError()
            let before = try await Self.snapshot(id, over: connection)
            let claim = PhoneClaim(presentedKey: nil, newKey: SessionID.randomHex128(), pairingCode: "1234", mayClaim: true)
            #expect(try await broker.publish(.connected(), to: id, from: claim, idempotencyKey: nil) == .sessionNotFound)
            #expect(try await broker.publish(.complete(Submission(name: "A", phone: "1")), to: id) == .sessionNotFound)
            #expect(try await Self.snapshot(id, over: connection) == before, "a step changed an expired session")
        }
    }

    @Test(.enabled(if: BrokerUnderTest.available.contains(.redis)))
    func absurdLogEntriesAreNeverDeliveredNorReplayed() async throws {
        guard let url = BrokerUnderTest.redisURL else { throw RedisNotConfigured() }
        let sink = RecordingSink()
        try await withRedisBroker(.init(url: url), sink: sink) { broker in
            let connection = try await RedisConnection.connect(to: url, commandTimeout: .seconds(2))
            defer { connection.close() }
            let id = SessionID.random()
            _ = try await broker.openSession(id, ttl: .seconds(60))
            try await broker.subscribe(id)
            // 2^64 − 1 (the id that made every node trap), 2^53 and 0, in the log and on the channel; in the log only,
            // an id ahead of the record's lastEventID (a live message carries no record to compare with).
            let absurd = ["18446744073709551615", "9007199254740992", "0"].map { #"{"id":\#($0),"event":"connected","t":"1"}"# }
            for entry in absurd {
                _ = try await connection.send(["RPUSH", RedisKeys.log(id), entry]).get().throwingError()
                _ = try await connection.send(["PUBLISH", RedisKeys.channel(id), entry]).get().throwingError()
            }
            _ = try await connection.send(["RPUSH", RedisKeys.log(id), #"{"id":2,"event":"input-started"}"#]).get().throwingError()
            _ = try await connection.send(["PUBLISH", RedisKeys.channel(id), #"{"id":1,"event":"connected","t":"-9223372036854775808"}"#]).get()
            guard case .published(let first, _) = try await broker.publish(.connected(), to: id) else {
                Issue.record("connected was not published")
                return
            }
            #expect(first.id == 1)
            #expect(try await broker.events(of: id, after: 0) == [first])
            try await waitUntil { !sink.events(of: id).isEmpty }
            try await Task.sleep(for: .milliseconds(100))
            #expect(sink.events(of: id) == [first])
            await broker.unsubscribe(id)
        }
    }

    @Test func redisRefusalsAreOutagesWithTheirKindAndWrongTypeIsCorruption() {
        for code in ["OOM", "READONLY", "MASTERDOWN", "LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "MISCONF"] {
            let error = RedisBroker.error("\(code) something went wrong")
            #expect(error.code == .unavailable && error.refusal == code.lowercased(), "\(code)")
        }
        let oomInScript = RedisBroker.error("OOM command not allowed when used memory > 'maxmemory'. script: 78f0, on @user_script:1.")
        #expect(oomInScript.refusal == "oom")
        #expect(RedisBroker.error("BUSYKEY Target key name already exists.").code == .protocolViolation)
        #expect(RedisBroker.error("ERR unknown command").code == .protocolViolation)
        #expect(RedisBroker.error("WRONGTYPE Operation against a key holding the wrong kind of value").code == .corruptSession)
    }

    // MARK: With a redis-server of the test's own

    @Test(.enabled(if: RedisServerProcess.available))
    func refusalsToStoreAre503sAndHealthReportsThemUntilRedisStoresAgain() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let sink = RecordingSink()
        try await withRedisBroker(.init(url: redis.url, refusalProbeInterval: .milliseconds(200)), sink: sink) { broker in
            let held = SessionID.random()
            _ = try await broker.openSession(held, ttl: .seconds(60))
            _ = try await redis.command(["CONFIG", "SET", "maxmemory-policy", "noeviction"]).throwingError()
            _ = try await redis.command(["CONFIG", "SET", "maxmemory", "1"]).throwingError()

            for (operation, call) in [
                ("open", { @Sendable in _ = try await broker.openSession(SessionID.random(), ttl: .seconds(60)) }),
                ("publish", { @Sendable in _ = try await broker.publish(.connected(), to: held) }),
            ] as [(String, @Sendable () async throws -> Void)] {
                do {
                    try await call()
                    Issue.record("\(operation) was stored by a Redis out of memory")
                } catch let error as BrokerError {
                    #expect(error.code == .unavailable && error.refusal == "oom", "\(operation): \(error)")
                }
            }
            #expect(try await broker.session(held)?.status == .waiting, "reads still work, and nothing was stored")
            let refusing = await broker.health
            #expect(refusing.isAvailable && refusing.refusal?.contains("OOM") == true, "\(refusing)")
            // Past the probe interval, the probe write is refused too: still reported.
            try await Task.sleep(for: .milliseconds(400))
            #expect(await broker.health.refusal != nil)

            _ = try await redis.command(["CONFIG", "SET", "maxmemory", "0"]).throwingError()
            let deadline = ContinuousClock.now + .seconds(3)
            while await broker.health.refusal != nil, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            #expect(await broker.health == .ok)
            #expect(try await broker.publish(.connected(), to: held).summary?.lastEventID == 1)
        }
    }

    @Test(.enabled(if: RedisServerProcess.available))
    func sessionsRedisLostAreReportedEndedAfterTheReconnect() async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let sink = RecordingSink()
        try await withRedisBroker(.init(url: redis.url, initialBackoff: .milliseconds(20)), sink: sink) { broker in
            let lost = SessionID.random()
            let kept = SessionID.random()
            for id in [lost, kept] {
                _ = try await broker.openSession(id, ttl: .seconds(60))
                try await broker.subscribe(id)
                _ = try await broker.publish(.connected(), to: id)
            }
            try await waitUntil { sink.events(of: kept).count == 1 && sink.events(of: lost).count == 1 }
            // An absurd entry in the kept session's log must not come back with the redelivery either.
            _ = try await redis.command(["RPUSH", RedisKeys.log(kept), #"{"id":18446744073709551615,"event":"complete"}"#]).throwingError()
            _ = try await redis.command(["DEL", RedisKeys.session(lost), RedisKeys.log(lost)]).throwingError()
            _ = try await redis.command(["CLIENT", "KILL", "TYPE", "normal"])
            try await waitUntil(timeout: .seconds(5)) { sink.endedSessions.contains(lost) }
            #expect(sink.endedSessions == [lost])
            // The kept session's log was redelivered (the stream skips what it has), and nothing absurd with it.
            try await waitUntil { sink.events(of: kept).count >= 2 }
            #expect(Set(sink.events(of: kept).map(\.id)) == [1])

            // Redis emptied: every held session is gone.
            _ = try await redis.command(["FLUSHALL"]).throwingError()
            _ = try await redis.command(["CLIENT", "KILL", "TYPE", "normal"])
            try await waitUntil(timeout: .seconds(5)) { sink.endedSessions.contains(kept) }
            #expect(Set(sink.endedSessions) == [lost, kept])
        }
    }
}

import Broker
import Testing

/// The pairing's contract (docs/protocol.md): the first phone claims the session, the phones' presence notices, and
/// a presence reviewed once its grace is over. Run against every broker, as the rest of the contract.
@Suite(.timeLimit(.minutes(1)))
struct BrokerPairingContractTests {
    static func phone(_ key: String, code: String = "1234", mayClaim: Bool = true) -> PhoneClaim {
        PhoneClaim(key: key, pairingCode: code, mayClaim: mayClaim)
    }

    static let first = String(repeating: "a", count: 32)
    static let second = String(repeating: "b", count: 32)

    /// Whatever a publish answers (published, unchanged, claimed by another, not claimed, completed, cancelled, or
    /// cancelled because the PC left), the summary or record it carries is the one the broker holds right after: Redis's script
    /// builds it from what it read and wrote, without reading the hash a second time. Random steps, claims and
    /// idempotency keys, on sessions with and without a reader key.
    @Test(arguments: BrokerUnderTest.available)
    func everyPublishAnswersWithTheRecordTheBrokerHolds(_ kind: BrokerUnderTest) async throws {
        try await withBroker(kind) { fixture throws in
            let broker = fixture.broker
            let form = Submission(fields: [.init("email", .text("a@example.com")), .init("agree", .flag(true))])
            let events: [SessionEvent] = [
                .connected(), .inputStarted, .complete(Submission(name: "山田", phone: "090")), .complete(form), .cancelled(.pcCancelled),
                .cancelled(.phoneRejected),
            ]
            let phones: [PhoneClaim?] = [
                nil, Self.phone(Self.first), Self.phone(Self.second), Self.phone(Self.first, mayClaim: false),
                PhoneClaim(presentedKey: nil, newKey: Self.second, pairingCode: "4321", mayClaim: true),
            ]
            func check(_ outcome: PublishOutcome, _ id: SessionID, _ what: String) async throws {
                let held = try await broker.session(id)
                // A published step and one that moves nothing answer with the session's summary, any other outcome
                // with the whole record.
                switch outcome {
                case .published(_, let summary), .unchanged(let summary):
                    #expect(summary == held?.summary, "\(what): answered \(outcome), holds \(String(describing: held))")
                default:
                    #expect(outcome.record != nil && outcome.record == held, "\(what): answered \(outcome), holds \(String(describing: held))")
                }
            }
            for round in 0..<30 {
                let id = SessionID.random()
                _ = try await broker.openSession(id, ttl: .seconds(60), readerKey: round.isMultiple(of: 2) ? "reader" : nil, heldByStream: true)
                for step in 0..<6 {
                    let event = events.randomElement()!
                    let phone = event.isPhoneStep ? phones.randomElement()! : nil
                    let key = Bool.random() ? "idem-\(Int.random(in: 0..<3))" : nil
                    let outcome = try await broker.publish(event, to: id, from: phone, idempotencyKey: key)
                    try await check(outcome, id, "round \(round) step \(step): \(event) from \(String(describing: phone)) key \(key ?? "-")")
                }
            }
            // A phone's step after the PC left: the session is cancelled in the same step.
            let left = SessionID.random()
            _ = try await broker.openSession(left, ttl: .seconds(60), readerKey: nil, heldByStream: true)
            _ = try await broker.publish(.connected(), to: left, from: Self.phone(Self.first), idempotencyKey: "k")
            try await broker.releasePresence(of: left)
            try await fixture.pass(BrokerFixture.presenceGrace + .milliseconds(300))
            let outcome = try await broker.publish(.inputStarted, to: left, from: Self.phone(Self.first), idempotencyKey: "k2")
            guard case .cancelled(let record) = outcome, record.cancelReason == .pcLeft else {
                Issue.record("a step after the PC left did not cancel the session: \(outcome)")
                return
            }
            try await check(outcome, left, "after the PC left")
        }
    }

    /// A configured form (not the article's name and phone) is stored and delivered whole, in its order, on every
    /// broker: the record, the log and the live event all carry the same fields.
    @Test(arguments: BrokerUnderTest.available)
    func aConfiguredFormIsStoredAndDeliveredInItsOrder(_ kind: BrokerUnderTest) async throws {
        try await withBroker(kind) { fixture throws in
            let broker = fixture.broker
            let id = SessionID.random()
            _ = try await broker.openSession(id, ttl: .seconds(60))
            try await broker.subscribe(id)
            let form = Submission(fields: [
                .init("fullName", .text("山田 \"太郎\"\\")), .init("email", .text("taro@example.com")), .init("plan", .text("pro")),
                .init("agree", .flag(true)), .init("newsletter", .flag(false)),
            ])
            _ = try await broker.publish(.connected(), to: id, from: Self.phone(Self.first), idempotencyKey: nil)
            guard case .published(let stored, let record) = try await broker.publish(.complete(form), to: id, from: Self.phone(Self.first), idempotencyKey: nil) else {
                Issue.record("the form was not published")
                return
            }
            #expect(stored.event == .complete(form))
            #expect(record.status == .completed)
            #expect(try await broker.session(id)?.submission == form)
            #expect(try await broker.events(of: id, after: 1).map(\.event) == [.complete(form)])
            try await waitUntil { fixture.sink.events(of: id).contains { $0.event == .complete(form) } }
            #expect(fixture.sink.events(of: id).contains { $0.event == .complete(form) })
            // The same form again is the same submission (a retry); another one is not.
            guard case .alreadyCompleted(let again) = try await broker.publish(.complete(form), to: id, from: Self.phone(Self.first), idempotencyKey: nil) else {
                Issue.record("a second submission was not refused")
                return
            }
            #expect(again.submission == form)
            await broker.unsubscribe(id)
        }
    }

    @Test(arguments: BrokerUnderTest.available)
    func theFirstPhoneClaimsTheSessionAndNoOtherPhoneCanAct(_ kind: BrokerUnderTest) async throws {
        try await withBroker(kind) { fixture throws in
            let broker = fixture.broker
            let id = SessionID.random()
            _ = try await broker.openSession(id, ttl: .seconds(60))
            try await broker.subscribe(id)
            guard case .published(let connected, let record) = try await broker.publish(.connected(), to: id, from: Self.phone(Self.first, code: "0042"), idempotencyKey: nil) else {
                Issue.record("the first phone's validate was not published")
                return
            }
            // The claim is in the record and the code in the event the PC gets; the key never leaves the broker.
            #expect(connected == StoredEvent(id: 1, event: .connected(pairingCode: "0042")))
            #expect(record.phoneKey == Self.first && record.pairingCode == "0042")
            #expect(try await broker.events(of: id, after: 0) == [connected])
            // Another phone, with its own fresh claim: refused, nothing stored, the first claim unchanged.
            for event in [SessionEvent.connected(), .inputStarted, .complete(Submission(name: "X", phone: "1"))] {
                guard case .claimedByAnother(let current) = try await broker.publish(event, to: id, from: Self.phone(Self.second, code: "9999"), idempotencyKey: nil) else {
                    Issue.record("a second phone's \(event.name) was not refused")
                    return
                }
                #expect(current.phoneKey == Self.first && current.pairingCode == "0042" && current.lastEventID == 1)
            }
            // The first phone again: its steps go on; its validate again changes nothing.
            guard case .unchanged = try await broker.publish(.connected(), to: id, from: Self.phone(Self.first, code: "7777"), idempotencyKey: nil),
                case .published = try await broker.publish(.inputStarted, to: id, from: Self.phone(Self.first), idempotencyKey: nil),
                case .published(_, let done) = try await broker.publish(.complete(Submission(name: "A", phone: "1")), to: id, from: Self.phone(Self.first), idempotencyKey: nil)
            else {
                Issue.record("the claiming phone could not go on")
                return
            }
            #expect(done.status == .completed && done.pairingCode == "0042")
            // Delivery comes back through Pub/Sub on Redis: not necessarily before publish returns.
            try await waitUntil { fixture.sink.events(of: id).map(\.event.name).contains("connected") }
            #expect(fixture.sink.events(of: id).map(\.event.name).contains("connected"))
            await broker.unsubscribe(id)
        }
    }

    @Test(arguments: BrokerUnderTest.available)
    func aStepThatMayNotClaimLeavesAnUnclaimedSessionAlone(_ kind: BrokerUnderTest) async throws {
        try await withBroker(kind) { fixture throws in
            let broker = fixture.broker
            let id = SessionID.random()
            _ = try await broker.openSession(id, ttl: .seconds(60))
            for event in [SessionEvent.connected(), .inputStarted, .complete(Submission(name: "X", phone: "1"))] {
                guard case .notClaimed(let record) = try await broker.publish(event, to: id, from: Self.phone(Self.first, mayClaim: false), idempotencyKey: nil) else {
                    Issue.record("\(event.name) without the right to claim was not refused")
                    return
                }
                #expect(record.phoneKey == nil && record.status == .waiting && record.lastEventID == 0)
            }
            // Two phones at once: exactly one claims.
            async let one = broker.publish(.connected(), to: id, from: Self.phone(Self.first), idempotencyKey: nil)
            async let other = broker.publish(.connected(), to: id, from: Self.phone(Self.second), idempotencyKey: nil)
            let outcomes = try await [one, other]
            #expect(outcomes.filter { if case .published = $0 { true } else { false } }.count == 1)
            #expect(outcomes.filter { if case .claimedByAnother = $0 { true } else { false } }.count == 1)
        }
    }

    @Test(arguments: BrokerUnderTest.available)
    func aPCNotBackAfterTheGraceIsCancelledByTheReviewAndOneThatCameBackIsNot(_ kind: BrokerUnderTest) async throws {
        try await withBroker(kind) { fixture throws in
            let broker = fixture.broker
            let gone = SessionID.random()
            let back = SessionID.random()
            for id in [gone, back] {
                _ = try await broker.openSession(id, ttl: .seconds(60), readerKey: nil, heldByStream: true)
                try await broker.releasePresence(of: id)
            }
            guard case .unchanged = try await broker.reviewPresence(of: gone, side: .pc) else {
                Issue.record("a PC within its grace was taken for gone")
                return
            }
            _ = try await broker.holdPresence(of: [back])
            try await fixture.pass(BrokerFixture.presenceGrace + .milliseconds(300))
            guard case .published(let cancelled, let record) = try await broker.reviewPresence(of: gone, side: .pc) else {
                Issue.record("a PC gone past its grace was not cancelled by the review")
                return
            }
            #expect(cancelled == StoredEvent(id: 1, event: .cancelled(.pcLeft)))
            #expect(record.status == .cancelled)
            #expect(try await broker.session(gone)?.cancelReason == .pcLeft)
            guard case .unchanged = try await broker.reviewPresence(of: gone, side: .pc),
                case .unchanged = try await broker.reviewPresence(of: back, side: .pc)
            else {
                Issue.record("a review published twice, or cancelled a PC that came back")
                return
            }
            #expect(try await broker.reviewPresence(of: SessionID.random(), side: .pc) == .sessionNotFound)
        }
    }

    @Test(arguments: BrokerUnderTest.available)
    func aPhoneWhoseChannelIsGoneIsToldToThePCAndItsReturnToo(_ kind: BrokerUnderTest) async throws {
        try await withBroker(kind) { fixture throws in
            let broker = fixture.broker
            let id = SessionID.random()
            _ = try await broker.openSession(id, ttl: .seconds(60), readerKey: nil, heldByStream: true)
            _ = try await broker.publish(.connected(), to: id, from: Self.phone(Self.first), idempotencyKey: nil)
            // A phone that never had a channel (the article's pages) is never "gone".
            try await fixture.pass(BrokerFixture.presenceGrace + .milliseconds(300))
            _ = try await broker.holdPresence(of: [id])
            guard case .unchanged = try await broker.reviewPresence(of: id, side: .phone) else {
                Issue.record("a phone without a channel was announced as gone")
                return
            }
            #expect(try await broker.holdPresence(of: [id], side: .phone) == [])
            try await broker.releasePresence(of: id, side: .phone)
            guard case .unchanged = try await broker.reviewPresence(of: id, side: .phone) else {
                Issue.record("a phone within its grace was announced as gone")
                return
            }
            try await fixture.pass(BrokerFixture.presenceGrace + .milliseconds(300))
            _ = try await broker.holdPresence(of: [id])  // the PC is still there
            guard case .published(let left, let away) = try await broker.reviewPresence(of: id, side: .phone) else {
                Issue.record("a phone gone past its grace was not announced")
                return
            }
            #expect(left == StoredEvent(id: 2, event: .phoneLeft) && away.status == .connected && away.lastEventID == 2)
            #expect(try await broker.session(id)?.phoneAway == true)
            guard case .unchanged = try await broker.reviewPresence(of: id, side: .phone) else {
                Issue.record("phone-left was published twice")
                return
            }
            // The phone's channel comes back: phone-returned, once.
            #expect(try await broker.holdPresence(of: [id], side: .phone) == [])
            #expect(try await broker.holdPresence(of: [id], side: .phone) == [])
            #expect(try await broker.events(of: id, after: 1) == [left, StoredEvent(id: 3, event: .phoneReturned)])
            #expect(try await broker.session(id)?.phoneAway == false)
            // The presence notices move the session nowhere: the phone's steps go on.
            guard case .published(let started, _) = try await broker.publish(.inputStarted, to: id, from: Self.phone(Self.first), idempotencyKey: nil) else {
                Issue.record("the phone's step after its return was refused")
                return
            }
            #expect(started.id == 4)
        }
    }

    /// A presence round's review of many sessions at once publishes exactly what one review of each would, once:
    /// a PC gone past its grace cancelled, a phone whose channel is gone announced; a PC that came back, a phone that
    /// never had a channel, a finished session and an unknown id left alone. What it publishes is fanned out.
    @Test(arguments: BrokerUnderTest.available)
    func aRoundsReviewOfManySessionsPublishesWhatEachReviewWould(_ kind: BrokerUnderTest) async throws {
        try await withBroker(kind) { fixture throws in
            let broker = fixture.broker
            let (gonePC, backPC, finished, goneP, neverP, unknown) = (SessionID.random(), SessionID.random(), SessionID.random(), SessionID.random(), SessionID.random(), SessionID.random())
            for id in [gonePC, backPC, finished, goneP, neverP] {
                _ = try await broker.openSession(id, ttl: .seconds(60), readerKey: nil, heldByStream: true)
                try await broker.subscribe(id)
            }
            for id in [goneP, neverP] { _ = try await broker.publish(.connected(), to: id, from: Self.phone(Self.first), idempotencyKey: nil) }
            _ = try await broker.publish(.cancelled(.pcCancelled), to: finished)
            #expect(try await broker.holdPresence(of: [goneP], side: .phone) == [])
            try await broker.releasePresence(of: goneP, side: .phone)
            for id in [gonePC, finished] { try await broker.releasePresence(of: id) }
            let all = [gonePC, backPC, finished, goneP, neverP, unknown]
            // Within the grace: nothing, on either side.
            #expect(try await broker.reviewPresence(of: all, side: .pc) == [])
            #expect(try await broker.reviewPresence(of: all, side: .phone) == [])
            try await fixture.pass(BrokerFixture.presenceGrace + .milliseconds(300))
            _ = try await broker.holdPresence(of: [backPC, goneP, neverP])
            #expect(try await broker.reviewPresence(of: all, side: .pc) == [StoredEvent(id: 1, event: .cancelled(.pcLeft))])
            #expect(try await broker.reviewPresence(of: all, side: .phone) == [StoredEvent(id: 2, event: .phoneLeft)])
            // Once each.
            #expect(try await broker.reviewPresence(of: all + all, side: .pc) == [])
            #expect(try await broker.reviewPresence(of: all + all, side: .phone) == [])
            #expect(try await broker.session(gonePC)?.cancelReason == .pcLeft)
            #expect(try await broker.session(goneP)?.phoneAway == true)
            #expect(try await broker.session(backPC)?.status == .waiting)
            #expect(try await broker.session(neverP)?.phoneAway == false)
            try await waitUntil { fixture.sink.events(of: gonePC).count == 1 && fixture.sink.events(of: goneP).count == 2 }
            #expect(fixture.sink.events(of: gonePC) == [StoredEvent(id: 1, event: .cancelled(.pcLeft))])
            #expect(fixture.sink.events(of: goneP).last == StoredEvent(id: 2, event: .phoneLeft))
            #expect(try await broker.reviewPresence(of: [], side: .pc) == [])
        }
    }

    @Test(arguments: BrokerUnderTest.available)
    func theReasonOfACancelIsKept(_ kind: BrokerUnderTest) async throws {
        try await withBroker(kind) { fixture throws in
            let broker = fixture.broker
            let id = SessionID.random()
            _ = try await broker.openSession(id, ttl: .seconds(60))
            _ = try await broker.publish(.connected(), to: id, from: Self.phone(Self.first), idempotencyKey: nil)
            guard case .published(let stored, let record) = try await broker.publish(.cancelled(.phoneRejected), to: id) else {
                Issue.record("not my phone was not published")
                return
            }
            #expect(stored.event == .cancelled(.phoneRejected) && record.status == .cancelled)
            #expect(try await broker.session(id)?.cancelReason == .phoneRejected)
        }
    }
}

@Suite(.timeLimit(.minutes(1)))
struct BrokerClaimFixationTests {
    /// Found by the attack: a key the phone presents is only ever checked against a claim, never adopted by one, so a
    /// key planted in a victim's browser is not the key of the victim's claim.
    @Test(arguments: BrokerUnderTest.available)
    func aPresentedKeyIsNeverTheKeyOfANewClaim(_ kind: BrokerUnderTest) async throws {
        try await withBroker(kind) { fixture throws in
            let broker = fixture.broker
            let id = SessionID.random()
            _ = try await broker.openSession(id, ttl: .seconds(60))
            let planted = String(repeating: "c", count: 32)
            let minted = String(repeating: "d", count: 32)
            let claim = PhoneClaim(presentedKey: planted, newKey: minted, pairingCode: "5555", mayClaim: true)
            guard case .published(_, let record) = try await broker.publish(.connected(), to: id, from: claim, idempotencyKey: nil) else {
                Issue.record("the claim was not made")
                return
            }
            #expect(record.phoneKey == minted)
            let attacker = PhoneClaim(presentedKey: planted, newKey: String(repeating: "e", count: 32), pairingCode: "0000", mayClaim: true)
            guard case .claimedByAnother = try await broker.publish(.complete(Submission(name: "M", phone: "1")), to: id, from: attacker, idempotencyKey: nil) else {
                Issue.record("the planted key acted on the session")
                return
            }
        }
    }
}

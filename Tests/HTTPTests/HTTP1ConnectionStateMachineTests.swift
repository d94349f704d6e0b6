@testable import HTTP
import NIOCore
import NIOHTTP1
import TestSupport
import Testing

/// `HTTP1ConnectionStateMachine` on its own: no channel, no clock, no socket. The handler's behaviour over real
/// sockets is in `HTTPConnectionTests`, through `EmbeddedChannel` in `HTTPConnectionHandlerTests`.
struct HTTP1ConnectionStateMachineTests {
    typealias Machine = HTTP1ConnectionStateMachine

    private static let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    private static func exchange(_ id: UInt64, keepAlive: Bool = true) -> HTTPExchange {
        HTTPExchange(
            version: .http1_1, method: .GET, path: "/\(id)", isKeepAlive: keepAlive, request: Request(method: .GET, uri: "/\(id)"),
            started: start, requestID: id)
    }

    private func turnID(_ turn: Machine.Turn?) -> String {
        switch turn {
        case .request(let exchange)?: "request \(exchange.requestID)"
        case .bodyTooLarge(let exchange)?: "too large \(exchange.requestID)"
        case .unparsable(let error)?: "unparsable \(error)"
        case .timedOut?: "timed out"
        case nil: "none"
        }
    }

    // MARK: One request

    @Test func aRequestIsAnsweredAndTheConnectionIsIdleAgainFromThatMoment() {
        var machine = Machine(pipelineLimit: 4, openedAt: Self.start)
        #expect(machine.isIdle(before: Self.start + .nanoseconds(1)))
        let first = Self.exchange(1)
        do {
            let result = machine.headArrived(first, awaitsContinue: false)
            #expect(result == false)
        }
        #expect(machine.isIdle(before: Self.start + .hours(1)) == false, "a request in flight is never idle")
        #expect(machine.wantsRequestTimer, "its body may trickle in")
        do {
            let result = machine.requestEnded(upgrade: false)
            #expect(result === first)
        }
        #expect(machine.wantsRequestTimer == false)
        #expect(machine.responding === first)
        #expect(machine.mayWriteResponse)
        #expect(machine.keepsAlive(first, serverDraining: false))
        machine.responseEnded()
        do {
            let result = machine.nextTurn()
            #expect(result == nil)
        }
        let later = Self.start + .seconds(5)
        do {
            let result = machine.closesWhenIdle(now: later, serverDraining: false)
            #expect(result == false)
        }
        #expect(machine.isIdle(before: later) == false)
        #expect(machine.isIdle(before: later + .nanoseconds(1)))
        #expect(machine.phase == .serving)
    }

    // MARK: Pipelining

    @Test func pipelinedRequestsWaitTheirTurnInArrivalOrder() {
        var machine = Machine(pipelineLimit: 4, openedAt: Self.start)
        let exchanges = (1...3).map { Self.exchange($0) }
        var answered: [UInt64] = []
        for exchange in exchanges {
            _ = machine.headArrived(exchange, awaitsContinue: false)
            if let now = machine.requestEnded(upgrade: false) { answered.append(now.requestID) }
        }
        #expect(answered == [1], "only the first is answered at once")
        #expect(machine.inFlight == 3)
        while machine.responding != nil {
            machine.responseEnded()
            if case .request(let next)? = machine.nextTurn() { answered.append(next.requestID) }
        }
        #expect(answered == [1, 2, 3])
        #expect(machine.isIdle)
    }

    @Test func readingStopsAtThePipelineLimitWhenTheClientDoesNotReadAndBehindABodyThatWaits() {
        var machine = Machine(pipelineLimit: 2, openedAt: Self.start)
        #expect(machine.mayRead(isWritable: true))
        #expect(machine.mayRead(isWritable: false) == false, "a client that does not read its answers is not read")
        _ = machine.headArrived(Self.exchange(1), awaitsContinue: false)
        _ = machine.requestEnded(upgrade: false)
        #expect(machine.mayRead(isWritable: true))
        _ = machine.headArrived(Self.exchange(2), awaitsContinue: false)
        #expect(machine.mayRead(isWritable: true) == false, "a queued request's body waits in the client's socket")
        do {
            let result = machine.readRequested(isWritable: true)
            #expect(result == false)
        }
        #expect(machine.parsesNext(isWritable: true), "its bytes already here are parsed")
        _ = machine.requestEnded(upgrade: false)
        #expect(machine.inFlight == 2)
        #expect(machine.parsesNext(isWritable: true) == false, "the pipeline is full")
        do {
            let result = machine.resumeReading(isWritable: true)
            #expect(result == false)
        }
        machine.responseEnded()
        _ = machine.nextTurn()
        do {
            let result = machine.resumeReading(isWritable: true)
            #expect(result, "the read held back goes out once there is room")
        }
        do {
            let result = machine.resumeReading(isWritable: true)
            #expect(result == false, "once")
        }
    }

    // MARK: Expect: 100-continue

    @Test func continueIsSentOnlyWhenTheRequestsTurnHasCome() {
        var machine = Machine(pipelineLimit: 4, openedAt: Self.start)
        do {
            let result = machine.parseStarted()
            #expect(result)
        }
        do {
            let result = machine.headArrived(Self.exchange(1), awaitsContinue: true)
            #expect(result, "nothing ahead: at once")
        }
        do {
            let result = machine.parseEnded()
            #expect(result, "and flushed at the parse's end")
        }
        _ = machine.requestEnded(upgrade: false)
        do {
            let result = machine.headArrived(Self.exchange(2), awaitsContinue: true)
            #expect(result == false, "behind the first: not yet")
        }
        machine.responseEnded()
        do {
            let result = machine.nextTurn()
            #expect(result == nil, "the second is still being read")
        }
        do {
            let result = machine.continueDue()
            #expect(result)
        }
        do {
            let result = machine.flushDue()
            #expect(result, "no parse runs: flushed now")
        }
        do {
            let result = machine.continueDue()
            #expect(result == false, "once")
        }
    }

    // MARK: Refusals

    @Test func aRefusalWaitsForTheResponsesBeforeItAndThenClosesWithoutAReset() {
        var machine = Machine(pipelineLimit: 4, openedAt: Self.start)
        _ = machine.headArrived(Self.exchange(1), awaitsContinue: false)
        _ = machine.requestEnded(upgrade: false)
        do {
            let result = machine.refuse(.unparsable(.malformed))
            #expect(result == nil, "the first response comes first")
        }
        #expect(machine.phase == .refusing)
        #expect(machine.parsesRequests == false)
        #expect(machine.mayRead(isWritable: true), "read and dropped while the refusal goes out")
        machine.responseEnded()
        do {
            let result = machine.nextTurn()
            #expect(turnID(result) == "unparsable malformed")
        }
        machine.closeAfterWriting(now: Self.start)
        #expect(machine.phase == .closing(afterRefusal: true))
        #expect(machine.lastBytesWritten() == .closeOutputAndDrain)
        #expect(machine.isClosing)
    }

    @Test func aBodyOverTheLimitIsRefusedInItsTurn() {
        var machine = Machine(pipelineLimit: 4, openedAt: Self.start)
        let large = Self.exchange(1)
        do {
            let result = machine.headArrivedTooLarge(large)
            #expect(turnID(result) == "too large 1")
        }
        #expect(machine.responding === large, "its refusal is the response being written")
        #expect(machine.reading == nil)
    }

    @Test func aRequestThatDoesNotArriveInTimeIsRefusedButNotAfterItEnded() {
        var machine = Machine(pipelineLimit: 4, openedAt: Self.start)
        do {
            let result = machine.requestTimedOut()
            #expect(result == nil, "nothing being read")
        }
        _ = machine.headArrived(Self.exchange(1), awaitsContinue: false)
        do {
            let result = machine.requestTimedOut()
            #expect(turnID(result) == "timed out")
        }
        #expect(machine.phase == .refusing)
        do {
            let result = machine.requestTimedOut()
            #expect(result == nil, "once")
        }
        machine.closeAfterWriting(now: Self.start)
        #expect(machine.lastBytesWritten() == .closeOutputAndDrain)
    }

    @Test func aHeadStillArrivingHasADeadlineThatItsArrivalKeepsForTheBody() {
        var machine = Machine(pipelineLimit: 4, openedAt: Self.start)
        machine.headBytesReceived(pending: false)
        #expect(machine.wantsRequestTimer == false, "no bytes, no deadline: the idle sweep's business")
        machine.headBytesReceived(pending: true)
        #expect(machine.wantsRequestTimer, "part of a head")
        _ = machine.headArrived(Self.exchange(1), awaitsContinue: false)
        #expect(machine.wantsRequestTimer, "the body may still trickle in, under the same deadline")
        _ = machine.requestEnded(upgrade: false)
        machine.headBytesReceived(pending: true)
        #expect(machine.wantsRequestTimer == false, "the next head waits while the response is written")
        machine.responseEnded()
        #expect(machine.wantsRequestTimer, "its turn has come")
        do {
            let result = machine.requestTimedOut()
            #expect(turnID(result) == "timed out")
        }
        #expect(machine.wantsRequestTimer == false)
        do {
            let result = machine.requestTimedOut()
            #expect(result == nil, "once")
        }
    }

    @Test func anUpgradeIsAnsweredLikeAnyRequestAndNothingAfterItIsParsed() {
        var machine = Machine(pipelineLimit: 4, openedAt: Self.start)
        let upgrade = Self.exchange(1, keepAlive: false)
        _ = machine.headArrived(upgrade, awaitsContinue: false)
        do {
            let result = machine.requestEnded(upgrade: true)
            #expect(result === upgrade)
        }
        #expect(machine.parsesNext(isWritable: true) == false)
        #expect(machine.keepsAlive(upgrade, serverDraining: false) == false)
        machine.responseEnded()
        machine.closeAfterWriting(now: Self.start)
        #expect(machine.lastBytesWritten() == .closeOutputAndDrain)
    }

    @Test func aResponseWithoutKeepAliveClosesPlainly() {
        var machine = Machine(pipelineLimit: 4, openedAt: Self.start)
        let exchange = Self.exchange(1, keepAlive: false)
        _ = machine.headArrived(exchange, awaitsContinue: false)
        _ = machine.requestEnded(upgrade: false)
        machine.responseEnded()
        machine.closeAfterWriting(now: Self.start + .seconds(2))
        #expect(machine.phase == .closing(afterRefusal: false))
        #expect(machine.mayRead(isWritable: true) == false)
        #expect(machine.lastBytesWritten() == .close)
        #expect(machine.isIdle(before: Self.start + .seconds(3)), "the idle sweep closes a client that never reads it")
        _ = machine.closed()
        #expect(machine.lastBytesWritten() == CloseAction.none)
    }

    typealias CloseAction = Machine.CloseAction

    // MARK: Draining

    @Test func drainingClosesAnIdleConnectionAtOnceAndABusyOneAfterItsResponse() {
        var idle = Machine(pipelineLimit: 4, openedAt: Self.start)
        do {
            let result = idle.drain()
            #expect(result == .close)
        }

        var busy = Machine(pipelineLimit: 4, openedAt: Self.start)
        let exchange = Self.exchange(1)
        _ = busy.headArrived(exchange, awaitsContinue: false)
        _ = busy.requestEnded(upgrade: false)
        do {
            let result = busy.drain()
            #expect(result == Machine.DrainAction.none)
        }
        #expect(busy.keepsAlive(exchange, serverDraining: false) == false)
        busy.responseEnded()
        do {
            let result = busy.closesWhenIdle(now: Self.start, serverDraining: false)
            #expect(result)
        }

        var serverDraining = Machine(pipelineLimit: 4, openedAt: Self.start)
        _ = serverDraining.headArrived(Self.exchange(2), awaitsContinue: false)
        _ = serverDraining.requestEnded(upgrade: false)
        serverDraining.responseEnded()
        do {
            let result = serverDraining.closesWhenIdle(now: Self.start, serverDraining: true)
            #expect(result)
        }
    }

    // MARK: Event streams

    @Test func anEventStreamEndsTheParsingAndEndsOnce() {
        var machine = Machine(pipelineLimit: 4, openedAt: Self.start)
        let stream = Self.exchange(1)
        _ = machine.headArrived(stream, awaitsContinue: false)
        _ = machine.requestEnded(upgrade: false)
        _ = machine.headArrived(Self.exchange(2), awaitsContinue: false)  // pipelined behind it: dropped
        machine.eventStreamStarted(.init(exchange: stream, status: .ok, chunked: true))
        #expect(machine.phase == .eventStream)
        #expect(machine.parsesRequests == false)
        #expect(machine.mayRead(isWritable: false), "read, to notice the client leaving")
        #expect(machine.inFlight == 0)
        #expect(machine.isIdle == false)
        #expect(machine.isIdle(before: Self.start + .hours(1)) == false)
        do {
            let result = machine.drain()
            #expect(result == .endEventStream)
        }
        do {
            let result = machine.eventStreamEnded()
            #expect(result?.exchange === stream)
        }
        do {
            let result = machine.eventStreamEnded()
            #expect(result == nil, "once")
        }
        #expect(machine.phase == .closing(afterRefusal: false))
    }

    @Test func aStreamWhoseClientLeftFirstIsLoggedByTheCloseNotByItsEnd() {
        var machine = Machine(pipelineLimit: 4, openedAt: Self.start)
        let stream = Self.exchange(1)
        _ = machine.headArrived(stream, awaitsContinue: false)
        _ = machine.requestEnded(upgrade: false)
        machine.eventStreamStarted(.init(exchange: stream, status: .ok, chunked: true))
        do {
            let result = machine.closed()
            #expect(result.eventStream?.exchange === stream)
        }
        do {
            let result = machine.eventStreamEnded()
            #expect(result == nil)
        }
        #expect(machine.mayWriteResponse == false)
    }

    // MARK: Parsing and flushing

    @Test func aResponseWrittenDuringTheParseIsFlushedAtItsEndOnce() {
        var machine = Machine(pipelineLimit: 4, openedAt: Self.start)
        do {
            let result = machine.flushNow()
            #expect(result, "no parse: now")
        }
        do {
            let result = machine.parseStarted()
            #expect(result)
        }
        do {
            let result = machine.parseStarted()
            #expect(result == false, "a parse does not start inside another")
        }
        do {
            let result = machine.flushNow()
            #expect(result == false)
        }
        do {
            let result = machine.flushDue()
            #expect(result == false, "the parse flushes it")
        }
        do {
            let result = machine.parseEnded()
            #expect(result)
        }
        do {
            let result = machine.parseStarted()
            #expect(result)
        }
        do {
            let result = machine.parseEnded()
            #expect(result == false)
        }
    }

    // MARK: Any order of events

    /// A seeded random walk over the connection's events, as a handler would make them (only what its guards allow),
    /// checking after every step what must always hold: requests are answered once each, in arrival order, one at a
    /// time, with at most `pipelineLimit` in flight; nothing is parsed after a refusal, an upgrade or a stream; a
    /// connection with nothing in flight and no stream is idle.
    @Test(arguments: 0..<200)
    func invariantsHoldUnderAnyOrderOfEvents(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        let limit = Int.random(in: 1...4, using: &random)
        var machine = Machine(pipelineLimit: limit, openedAt: Self.start)
        var nextID: UInt64 = 1
        var ended: [UInt64] = []  // requests whose end was parsed, in order
        var answered: [UInt64] = []  // turns begun, in order
        var refusedAt: Int?  // the number of requests ended when parsing stopped
        // What the handler does with a turn that begins: a refusal of an unreadable request is its last write.
        func take(_ turn: Machine.Turn?) {
            switch turn {
            case .request(let exchange)?, .bodyTooLarge(let exchange)?: answered.append(exchange.requestID)
            case .unparsable?, .timedOut?: machine.closeAfterWriting(now: Self.start)
            case nil: break
            }
        }
        for _ in 0..<100 {
            let writable = Bool.random(using: &random)
            switch Int.random(in: 0..<7, using: &random) {
            case 0 where machine.parsesNext(isWritable: true) && machine.reading == nil:
                _ = machine.headArrived(Self.exchange(nextID), awaitsContinue: Bool.random(using: &random))
                nextID += 1
            case 1 where machine.parsesNext(isWritable: true) && machine.reading != nil:
                let upgrade = Int.random(in: 0..<10, using: &random) == 0
                ended.append(machine.reading!.requestID)
                if upgrade { refusedAt = refusedAt ?? ended.count }
                if let now = machine.requestEnded(upgrade: upgrade) { answered.append(now.requestID) }
            case 2 where machine.parsesNext(isWritable: true) && Int.random(in: 0..<6, using: &random) == 0:
                refusedAt = refusedAt ?? ended.count
                take(machine.refuse(.unparsable(.malformed)))
            case 3 where machine.responding != nil && !machine.isClosing:
                let keepAlive = machine.keepsAlive(machine.responding!, serverDraining: false)
                machine.responseEnded()
                if keepAlive {
                    take(machine.nextTurn())
                    if !machine.isClosing, machine.closesWhenIdle(now: Self.start, serverDraining: false) {
                        machine.closeAfterWriting(now: Self.start)
                    }
                } else {
                    machine.closeAfterWriting(now: Self.start)
                }
            case 4 where Int.random(in: 0..<10, using: &random) == 0:  // rare, as refusals are: most walks pipeline
                let wasServing = machine.phase == .serving
                take(machine.requestTimedOut())
                if wasServing, machine.phase != .serving { refusedAt = refusedAt ?? ended.count }
            case 5:
                _ = machine.readRequested(isWritable: writable)
                _ = machine.resumeReading(isWritable: writable)
            case 6 where machine.responding != nil && !machine.isClosing && Int.random(in: 0..<8, using: &random) == 0:
                machine.eventStreamStarted(.init(exchange: machine.responding!, status: .ok, chunked: true))
                refusedAt = refusedAt ?? ended.count
            default:
                break
            }
            #expect(machine.inFlight <= limit)
            #expect(answered == Array(ended.prefix(answered.count)), "answered in arrival order")
            #expect(Set(answered).count == answered.count, "each once")
            if refusedAt != nil { #expect(machine.parsesRequests == false, "nothing parsed after a refusal, an upgrade or a stream") }
            if machine.phase == .eventStream { #expect(machine.mayRead(isWritable: false)) }
            if machine.inFlight == 0, machine.eventStream == nil { #expect(machine.isIdle) }
        }
    }
}

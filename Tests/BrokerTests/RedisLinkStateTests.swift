@testable import Broker
import Testing

/// The Redis broker's reconnect and health bookkeeping on its own, time moved by hand.
struct RedisLinkStateTests {
    private let start = ContinuousClock.now

    @Test func beforeTheFirstConnectionEachDistinctProblemIsLoggedOnce() {
        var link = RedisLinkState(now: start)
        #expect(link.wentDown("connection refused", now: start) == true)
        #expect(link.wentDown("connection refused", now: start + .seconds(1)) == false)
        #expect(link.wentDown("WRONGPASS", now: start + .seconds(2)) == true, "a different problem is worth a line")
        #expect(link.problem == "WRONGPASS")
        #expect(link.connected(now: start + .seconds(3)) == nil, "the first connection ends no outage")
        #expect(link.problem == "ok")
    }

    @Test func anOutageIsLoggedOnceAndItsLengthWhenItEnds() {
        var link = RedisLinkState(now: start)
        _ = link.connected(now: start)
        #expect(link.wentDown("connection lost", now: start + .seconds(10)) == true)
        #expect(link.wentDown("connection refused", now: start + .seconds(11)) == false, "once per outage, whatever the problem")
        #expect(link.connected(now: start + .seconds(14)) == .seconds(4))
        #expect(link.wentDown("connection lost", now: start + .seconds(20)) == true, "the next outage is a new one")
        link.shutDown()
        #expect(link.problem == "shut down")
    }

    @Test func theBackoffDoublesUpToItsMaximumAndStartsOverOnceConnected() {
        var backoff = RedisLinkState.Backoff(initial: .milliseconds(100), maximum: .milliseconds(700))
        let delays = (0..<6).map { _ in backoff.nextDelay(jitter: 1) }
        #expect(delays == [100, 200, 400, 700, 700, 700].map { Duration.milliseconds($0) })
        #expect(backoff.nextDelay(jitter: 0.5) == .milliseconds(350))
        backoff.reset()
        #expect(backoff.nextDelay(jitter: 1) == .milliseconds(100))
        var inverted = RedisLinkState.Backoff(initial: .seconds(2), maximum: .seconds(1))
        #expect(inverted.nextDelay(jitter: 1) == .seconds(2))
        #expect(inverted.nextDelay(jitter: 1) == .seconds(2), "a maximum below the initial wait does not shrink it")
    }

    @Test func aRefusalIsLoggedOnceAndEndsOnlyWithAProbeThatAnswersIt() {
        var link = RedisLinkState(now: start)
        _ = link.connected(now: start)
        let interval = Duration.seconds(1)
        #expect(link.refused("OOM command not allowed", now: start) == true)
        #expect(link.refused("OOM command not allowed", now: start + .milliseconds(500)) == false)
        let lastRefusal = start + .milliseconds(500)
        #expect(link.probeDue(now: start + .milliseconds(1_400), interval: interval) == .none, "not within the interval after the last refusal")
        let decision = link.probeDue(now: start + .milliseconds(1_500), interval: interval)
        #expect(decision == .probe(answering: lastRefusal))
        #expect(link.probeDue(now: start + .seconds(5), interval: interval) == .none, "one probe at a time")
        #expect(link.probeAnswered(.stored, answering: lastRefusal, now: start + .seconds(2)) == true)
        #expect(link.refusal == nil)
    }

    @Test func aProbeAcceptedAfterANewerRefusalDoesNotEndIt() {
        var link = RedisLinkState(now: start)
        _ = link.connected(now: start)
        _ = link.refused("READONLY", now: start)
        #expect(link.probeDue(now: start + .seconds(1), interval: .seconds(1)) == .probe(answering: start))
        _ = link.refused("READONLY", now: start + .milliseconds(1_100))  // a request met a newer one meanwhile
        #expect(link.probeAnswered(.stored, answering: start, now: start + .milliseconds(1_200)) == false)
        #expect(link.refusal?.message == "READONLY")
    }

    @Test func withoutARefusalHealthProbesOncePerIntervalAndARefusedProbeStartsOne() {
        var link = RedisLinkState(now: start)
        _ = link.connected(now: start)
        #expect(link.probeDue(now: start, interval: .seconds(1)) == .probe(answering: nil))
        #expect(link.probeAnswered(.noAnswer, answering: nil, now: start) == false)
        #expect(link.probeDue(now: start + .milliseconds(900), interval: .seconds(1)) == .none)
        #expect(link.probeDue(now: start + .seconds(1), interval: .seconds(1)) == .probe(answering: nil))
        #expect(link.probeAnswered(.refused("MISCONF"), answering: nil, now: start + .seconds(1)) == false)
        #expect(link.refusal?.message == "MISCONF")
        #expect(link.probeAnswered(.stored, answering: nil, now: start + .seconds(2)) == false, "a probe that answered no refusal ends none")
    }
}

/// Whether this node reaches Redis and whether Redis stores: the outage (since when, why, logged once), the
/// reconnect backoff, and the last refusal to store with the health probes that end it. A value type whose methods
/// say what to log or probe; ``RedisBroker`` keeps it under its lock and does the I/O. Time comes in as arguments,
/// so tests move it by hand.
struct RedisLinkState {
    typealias Instant = ContinuousClock.Instant

    /// The wait between reconnect attempts: doubles from `initial` up to `maximum`, back to `initial` once connected.
    struct Backoff {
        let initial: Duration
        let maximum: Duration
        private(set) var current: Duration

        init(initial: Duration, maximum: Duration) {
            self.initial = initial
            self.maximum = max(initial, maximum)
            self.current = initial
        }

        /// The wait before the next attempt, scaled by `jitter` (0.5...1: many nodes must not reconnect in lockstep
        /// after a Redis restart); the one after it is twice as long, up to the maximum.
        mutating func nextDelay(jitter: Double) -> Duration {
            let delay = current * jitter
            current = min(current * 2, maximum)
            return delay
        }

        mutating func reset() {
            current = initial
        }
    }

    /// What a probe write got.
    enum ProbeReply {
        case stored
        case refused(String)
        /// No answer, or another error: the connection's own timeout and the reconnect loop deal with that.
        case noAnswer
    }

    /// Whether health makes a probe write now.
    enum ProbeDecision: Equatable {
        case none
        /// `answering`: the refusal the probe answers (nil: no refusal known, the probe looks for one).
        case probe(answering: Instant?)
    }

    private(set) var outageStarted: Instant?
    /// Why Redis is unreachable ("ok" while it is reachable).
    private(set) var problem = "not connected yet"
    private(set) var everConnected = false
    /// The last time Redis refused to store, and what it said; nil once a probe write was accepted.
    private(set) var refusal: (at: Instant, message: String)?
    private var probing = false
    /// When health last asked Redis with a probe write.
    private var lastProbe: Instant?

    /// Not connected yet: an outage from `now` until the first connection.
    init(now: Instant) {
        outageStarted = now
    }

    /// Redis went away, or could not be reached. True when this is to be logged: once per outage, and before the
    /// first connection once per distinct problem (a wrong address and a wrong password are both worth a line).
    mutating func wentDown(_ problem: String, now: Instant) -> Bool {
        let first = outageStarted == nil || (!everConnected && self.problem != problem)
        self.problem = problem
        if outageStarted == nil { outageStarted = now }
        return first
    }

    /// Connected: the outage this ends, for its log line; nil for the node's first connection.
    mutating func connected(now: Instant) -> Duration? {
        let outage = outageStarted.map { now - $0 }
        let wasConnected = everConnected
        outageStarted = nil
        everConnected = true
        problem = "ok"
        return wasConnected ? outage : nil
    }

    mutating func shutDown() {
        problem = "shut down"
    }

    /// Redis refused to store (out of memory, read-only, ...). True when this begins an episode, to be logged once.
    mutating func refused(_ message: String, now: Instant) -> Bool {
        defer { refusal = (now, message) }
        return refusal == nil
    }

    /// Health is asked while Redis is reachable: a probe write is made at most one at a time and one per `interval`:
    /// after a refusal, once `interval` has passed since it (readiness comes back by itself once Redis stores again);
    /// without one, every `interval` (a node that writes nothing still notices that Redis refuses).
    mutating func probeDue(now: Instant, interval: Duration) -> ProbeDecision {
        guard !probing else { return .none }
        if let refusal {
            guard now - refusal.at >= interval else { return .none }
        } else if let lastProbe, now - lastProbe < interval {
            return .none
        }
        probing = true
        lastProbe = now
        return .probe(answering: refusal?.at)
    }

    /// The probe's reply. True when it ends the refusal it answered (a newer refusal, met since, still stands).
    mutating func probeAnswered(_ reply: ProbeReply, answering refusedAt: Instant?, now: Instant) -> Bool {
        probing = false
        switch reply {
        case .stored:
            guard let refusedAt, refusal?.at == refusedAt else { return false }
            refusal = nil
            return true
        case .refused(let message):
            refusal = (now, message)
            return false
        case .noAnswer:
            return false
        }
    }
}

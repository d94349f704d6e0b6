import Synchronization

/// Token buckets per client address: each address may spend `perMinute` tokens a minute, in bursts up to that
/// many. Memory is bounded: at most `maximumTracked` addresses are remembered, and full buckets (idle addresses)
/// are dropped by a sweep every few thousand calls.
final class RateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: Int64
    }

    private struct State {
        var buckets: [String: Bucket] = [:]
        var callsSinceSweep = 0
    }

    private let perMinute: Int
    private let maximumTracked: Int
    private let state = Mutex(State())

    /// - Parameter perMinute: 0 turns the limit off.
    init(perMinute: Int, maximumTracked: Int = 100_000) {
        self.perMinute = perMinute
        self.maximumTracked = maximumTracked
    }

    /// Spends one token of `key`; nil when allowed, else the seconds until a token is back.
    func spend(_ key: String, now: Int64) -> Int? {
        guard perMinute > 0 else { return nil }
        let capacity = Double(perMinute)
        let refillPerMillisecond = capacity / 60_000
        return state.withLock { state -> Int? in
            state.callsSinceSweep += 1
            if state.callsSinceSweep >= 4096 || state.buckets.count >= maximumTracked {
                state.callsSinceSweep = 0
                state.buckets = state.buckets.filter { Double(now - $0.value.updated) * refillPerMillisecond + $0.value.tokens < capacity }
                // Still full of active addresses: forget the fullest buckets rather than grow.
                if state.buckets.count >= maximumTracked { state.buckets.removeAll(keepingCapacity: true) }
            }
            var bucket = state.buckets[key] ?? Bucket(tokens: capacity, updated: now)
            bucket.tokens = min(capacity, bucket.tokens + Double(max(0, now - bucket.updated)) * refillPerMillisecond)
            bucket.updated = now
            guard bucket.tokens >= 1 else {
                state.buckets[key] = bucket
                return max(1, Int(((1 - bucket.tokens) / refillPerMillisecond / 1000).rounded(.up)))
            }
            bucket.tokens -= 1
            state.buckets[key] = bucket
            return nil
        }
    }

    /// The seconds until `key` may spend again, or nil when it may now; spends nothing.
    func refusal(_ key: String, now: Int64) -> Int? {
        guard perMinute > 0 else { return nil }
        let refillPerMillisecond = Double(perMinute) / 60_000
        return state.withLock { state -> Int? in
            guard let bucket = state.buckets[key] else { return nil }
            let tokens = bucket.tokens + Double(max(0, now - bucket.updated)) * refillPerMillisecond
            return tokens >= 1 ? nil : max(1, Int(((1 - tokens) / refillPerMillisecond / 1000).rounded(.up)))
        }
    }

    var trackedAddresses: Int { state.withLock { $0.buckets.count } }
}

import NIOCore

/// Which server speaks to the bench.
enum Flavor: String, Sendable {
    case tandem
    case nchan

    /// Events a stream carries before it is replaced by one on a new session: a Tandem session ends after its
    /// third event; an nchan channel takes any number, so it churns only when asked (`nchanChurn`, 0: never).
    func eventsPerStream(nchanChurn: Int) -> Int {
        self == .tandem ? 3 : nchanChurn
    }
}

/// What a shard does with its streams.
enum Mode: String, Sendable {
    /// Open the streams and keep them, counting heartbeats.
    case hold
    /// Each slot runs full handoffs back to back: stream, validate, input-started, submit, `complete`, close.
    case flow
    /// Events at a fixed rate to random ready streams; Tandem's sessions are re-created after their third event.
    case fanout
}

/// Everything one shard needs; a shard lives on one event loop and owns its streams and publishing connections.
struct ShardSpec: Sendable {
    var mode: Mode
    var flavor: Flavor
    var streamTarget: SocketAddress
    var publishTarget: SocketAddress
    var sources: [SocketAddress]
    var sourceOffset: Int
    var slots: Int
    var ratePerSecond: Double
    var poolSize: Int
    var lossDeadline: TimeAmount
    var maxConnecting: Int
    var idPrefix: String
    /// Events a stream carries before it is closed and replaced by a stream on a new session (0: no limit). Tandem's
    /// sessions end after three; nchan's channels take any number, and churn only when asked to, for a like-for-like
    /// comparison.
    var eventsPerStream: Int
}

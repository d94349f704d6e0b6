/// Counters and samples of one shard, merged across shards (and worker processes) at the end.
struct ShardResult: Sendable {
    var established = 0
    var openAtEnd = 0
    var failedOpens = 0
    var dropped = 0
    var heartbeats = 0
    var published = 0
    var publishFailed = 0
    var delivered = 0
    var lost = 0
    var misordered = 0
    var unexpected = 0
    var unsent = 0
    var flows = 0
    var statuses: [Int: Int] = [:]
    var latencies: [UInt64] = []
    var lags: [UInt64] = []

    mutating func merge(_ other: ShardResult) {
        established += other.established
        openAtEnd += other.openAtEnd
        failedOpens += other.failedOpens
        dropped += other.dropped
        heartbeats += other.heartbeats
        published += other.published
        publishFailed += other.publishFailed
        delivered += other.delivered
        lost += other.lost
        misordered += other.misordered
        unexpected += other.unexpected
        unsent += other.unsent
        flows += other.flows
        for (status, count) in other.statuses { statuses[status, default: 0] += count }
        latencies += other.latencies
        lags += other.lags
    }
}

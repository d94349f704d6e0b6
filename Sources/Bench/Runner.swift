import Foundation
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// One in-process run: shards on `threads` event loops, each with its streams and publishing pool.
struct RunPlan {
    var mode: Mode
    var flavor: Flavor
    var streamPorts: [Int]
    var publishPort: Int
    var slots: Int
    var rate: Double = 0
    var window: Double
    var threads: Int
    var pool: Int
    var sources: Int
    var sourceOffset: Int = 0
    var lossDeadline: Double = 5
    var maxConnecting = 256
    var establishTimeout: Double = 60
    /// nchan's churn (see ``Flavor/eventsPerStream(nchanChurn:)``); Tandem's sessions always take three.
    var eventsPerStream = 0
}

struct RunOutcome {
    var result: ShardResult
    var establishSeconds: Double
    var clientCPU: Double
}

func sourceAddresses(_ count: Int, offset: Int) -> [SocketAddress] {
    (0..<max(1, count)).map { k in
        let host = 2 + (offset + k) % 250
        return try! SocketAddress(ipAddress: "127.0.0.\(host)", port: 0)
    }
}

/// Runs `plan`: opens every stream, calls `established`, runs the window, calls `windowEnded`, waits for what is
/// still in flight (up to the loss deadline), closes everything. Bounded in time at every step.
func runInProcess(_ plan: RunPlan, established: () -> Void = {}, windowEnded: () -> Void = {}, waitForGo: () -> Void = {}) throws -> RunOutcome {
    try withEventLoopGroup(threads: plan.threads) { group in
        try run(plan, on: group, established: established, windowEnded: windowEnded, waitForGo: waitForGo)
    }
}

/// The runner is synchronous (it blocks its own thread between the steps of a window, which NIO's async
/// `withEventLoopGroup` does not allow), so this is that function's synchronous twin: the group lives exactly as long
/// as `body`, and is shut down on every way out of it.
func withEventLoopGroup<Result>(threads: Int, _ body: (MultiThreadedEventLoopGroup) throws -> Result) throws -> Result {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    defer { try? group.syncShutdownGracefully() }
    return try body(group)
}

private func run(
    _ plan: RunPlan, on group: MultiThreadedEventLoopGroup, established: () -> Void, windowEnded: () -> Void, waitForGo: () -> Void
) throws -> RunOutcome {
    let cpuStart = selfCPUSeconds()
    let nonce = String(UInt64.random(in: 0..<UInt64(1) << 40), radix: 36)
    var shards: [Shard] = []
    var loops = group.makeIterator()
    for t in 0..<plan.threads {
        let share = plan.slots / plan.threads + (t < plan.slots % plan.threads ? 1 : 0)
        let spec = ShardSpec(
            mode: plan.mode, flavor: plan.flavor,
            streamTarget: try SocketAddress(ipAddress: "127.0.0.1", port: plan.streamPorts[t % plan.streamPorts.count]),
            publishTarget: try SocketAddress(ipAddress: "127.0.0.1", port: plan.publishPort),
            sources: sourceAddresses(plan.sources, offset: plan.sourceOffset), sourceOffset: t,
            slots: share, ratePerSecond: plan.rate / Double(plan.threads), poolSize: plan.pool,
            lossDeadline: .nanoseconds(Int64(plan.lossDeadline * 1e9)), maxConnecting: plan.maxConnecting,
            idPrefix: "b\(nonce)t\(t)s\(plan.sourceOffset)",
            eventsPerStream: plan.flavor.eventsPerStream(nchanChurn: plan.eventsPerStream))
        shards.append(Shard(loop: loops.next()!, spec: spec, seed: UInt64.random(in: 1...UInt64.max)))
    }
    try EventLoopFuture.andAllSucceed(shards.map { $0.start() }, on: group.any()).wait()
    let openStart = Date()
    while true {
        let progress = try shards.map { try $0.progress().wait() }
        let done = progress.reduce(0) { $0 + $1.established + $1.failed }
        if done >= plan.slots || Date().timeIntervalSince(openStart) > plan.establishTimeout { break }
        usleep(50_000)
    }
    let establishSeconds = Date().timeIntervalSince(openStart)
    established()
    waitForGo()
    let window = TimeAmount.nanoseconds(Int64(plan.window * 1e9))
    for shard in shards { try shard.beginWindow(duration: window).wait() }
    usleep(useconds_t(plan.window * 1e6))
    for shard in shards { try shard.endWindow().wait() }
    windowEnded()
    let drainStart = Date()
    while Date().timeIntervalSince(drainStart) < plan.lossDeadline + 0.5 {
        let pending = try shards.reduce(0) { $0 + (try $1.pendingCount().wait()) }
        if pending == 0 { break }
        usleep(20_000)
    }
    var result = ShardResult()
    for shard in shards { result.merge(try shard.finish().wait()) }
    return RunOutcome(result: result, establishSeconds: establishSeconds, clientCPU: selfCPUSeconds() - cpuStart)
}

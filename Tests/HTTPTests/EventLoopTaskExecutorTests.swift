import HTTP
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// The loop-bound task executor: jobs enqueued from its loop wait in its own queue and run when the handler runs it
/// (in the same read), or else by the one loop task scheduled for them; jobs from elsewhere hop to the loop.
@Suite(.timeLimit(.minutes(1)))
struct EventLoopTaskExecutorTests {
    final class Record: Sendable {
        let entries = Mutex<[String]>([])
        func add(_ entry: String) { entries.withLock { $0.append(entry) } }
        var all: [String] { entries.withLock { $0 } }
    }

    static func withLoop(_ body: (any EventLoop, EventLoopTaskExecutor) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        try await body(loop, EventLoopTaskExecutor(loop))
        try await group.shutdownGracefully()
    }

    /// Waits (bounded) until `record` has `count` entries.
    static func waitFor(_ record: Record, count: Int) async throws {
        for _ in 0..<200 where record.all.count < count { try await Task.sleep(for: .milliseconds(5)) }
    }

    @Test func jobsEnqueuedOnTheLoopRunInOrderWhenThePendingQueueIsRun() async throws {
        try await Self.withLoop { loop, executor in
            let record = Record()
            let seenInTheSameTurn = try await loop.submit { () -> [String] in
                for name in ["a", "b", "c"] {
                    Task(executorPreference: executor) { record.add(name + (loop.inEventLoop ? "" : " off the loop")) }
                }
                let before = record.all
                executor.runPending()
                return before + ["|"] + record.all
            }.get()
            #expect(seenInTheSameTurn == ["|", "a", "b", "c"])
        }
    }

    @Test func jobsNobodyRunsAreRunByTheLoopAnyway() async throws {
        try await Self.withLoop { loop, executor in
            let record = Record()
            try await loop.submit {
                for name in ["a", "b"] { Task(executorPreference: executor) { record.add(name) } }
            }.get()
            try await Self.waitFor(record, count: 2)
            #expect(record.all == ["a", "b"])
        }
    }

    @Test func jobsFromAnotherThreadRunOnTheLoop() async throws {
        try await Self.withLoop { loop, executor in
            let record = Record()
            await Task(executorPreference: executor) { record.add(loop.inEventLoop ? "on the loop" : "elsewhere") }.value
            #expect(record.all == ["on the loop"])
        }
    }

    /// A task that suspends and is resumed from the loop (as a stream's task by an event) continues in the same run;
    /// a run nested in a job returns at once, and the outer run goes on.
    @Test func aTaskResumedByAJobContinuesInTheSameRun() async throws {
        try await Self.withLoop { loop, executor in
            let record = Record()
            let (items, continuation) = AsyncStream.makeStream(of: Int.self)
            let afterRun = try await loop.submit { () -> [String] in
                Task(executorPreference: executor) {
                    for await item in items { record.add("got \(item)") }
                    record.add("ended")
                }
                Task(executorPreference: executor) {
                    continuation.yield(1)
                    executor.runPending()  // nested: returns at once
                    continuation.yield(2)
                    continuation.finish()
                }
                executor.runPending()
                return record.all
            }.get()
            #expect(afterRun == ["got 1", "got 2", "ended"])
        }
    }

    /// Jobs that keep enqueueing jobs do not hold the loop in one run; they all run, over several.
    @Test func aLongChainOfJobsRunsToTheEndOverSeveralRuns() async throws {
        try await Self.withLoop { loop, executor in
            let record = Record()
            let total = 5000
            let firstRunCount = try await loop.submit { () -> Int in
                for index in 0..<total { Task(executorPreference: executor) { record.add(String(index)) } }
                executor.runPending()
                return record.all.count
            }.get()
            #expect(firstRunCount < total)
            try await Self.waitFor(record, count: total)
            #expect(record.all == (0..<total).map(String.init))
        }
    }
}

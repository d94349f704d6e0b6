import Dispatch
import LoopOrder
import NIOCore
import NIOPosix
import Synchronization
import Testing

struct LoopOrderedSubmitterTests {
    private final class Log: Sendable {
        let entries = Mutex<[Int]>([])
        func append(_ value: Int) { entries.withLock { $0.append(value) } }
        var values: [Int] { entries.withLock { $0 } }
    }

    @Test func onTheLoopWithNothingQueuedItRunsAtOnce() async throws {
        try await MultiThreadedEventLoopGroup.withEventLoopGroup(numberOfThreads: 1) { group in
            let loop = group.next()
            let submitter = LoopOrderedSubmitter(eventLoop: loop)
            let log = Log()
            try await loop.submit {
                submitter.submit(log) { $0.append(1) }
                log.append(2)
            }.get()
            #expect(log.values == [1, 2])
        }
    }

    @Test func workFromTheLoopNeverOvertakesWorkQueuedFromOtherThreads() async throws {
        try await MultiThreadedEventLoopGroup.withEventLoopGroup(numberOfThreads: 1) { group in
            let loop = group.next()
            let submitter = LoopOrderedSubmitter(eventLoop: loop)
            let log = Log()
            let inside = DispatchSemaphore(value: 0)
            let release = DispatchSemaphore(value: 0)
            // The loop is kept busy, so what is submitted from this thread waits in its queue; then the loop itself
            // submits, in the same turn: it must queue behind them, not run at once.
            loop.execute {
                inside.signal()
                release.wait()
                submitter.submit((log, 100)) { $0.0.append($0.1) }
            }
            inside.wait()
            for value in 0..<100 { submitter.submit((log, value)) { $0.0.append($0.1) } }
            release.signal()
            try await loop.submit {}.get()
            try await loop.submit {}.get()
            #expect(log.values == Array(0...100))
        }
    }

    @Test func manyThreadsKeepTheirOwnOrder() async throws {
        try await MultiThreadedEventLoopGroup.withEventLoopGroup(numberOfThreads: 1) { group in
            let loop = group.next()
            let submitter = LoopOrderedSubmitter(eventLoop: loop)
            let log = Log()
            await withTaskGroup(of: Void.self) { tasks in
                for thread in 0..<4 {
                    tasks.addTask {
                        for index in 0..<500 { submitter.submit((log, thread * 1000 + index)) { $0.0.append($0.1) } }
                    }
                }
                tasks.addTask {
                    for index in 0..<500 {
                        try? await loop.submit { submitter.submit((log, 9000 + index)) { $0.0.append($0.1) } }.get()
                    }
                }
        }
        try await loop.submit {}.get()
        let values = log.values
        #expect(values.count == 2500)
        for thread in [0, 1, 2, 3, 9] {
            let own = values.filter { $0 / 1000 == thread }
            #expect(own == own.sorted(), "thread \(thread) in its order")
        }
        }
    }
}

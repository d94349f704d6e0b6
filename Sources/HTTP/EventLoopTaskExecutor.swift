import NIOCore

/// Runs a task's jobs on one event loop. A request's task prefers the loop of its connection, so the request is
/// handled where its bytes were read and its response is written: no wake-up of a pool thread to start it and none
/// of the loop to finish it. Work that would block still must not run here (see the README).
///
/// A job enqueued from the loop itself (an event stream's task resumed by an event a request just published, a
/// request resumed by its broker) waits in this executor's own queue, not in the loop's: the connection handler
/// runs that queue as soon as the code that filled it returns (``runPending()``), still in the same read, so an
/// event reaches its stream's socket in the read that published it rather than after every other ready socket of
/// the loop's turn. A loop turn is unbounded (SwiftNIO reads every ready socket before it runs any task), so under
/// load that wait was the p99. A queue nobody runs is run by one loop task, scheduled with its first job: jobs are
/// never left behind, and a burst of them costs one closure, not one each.
public final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    public let eventLoop: any EventLoop
    // Touched only on `eventLoop`'s thread (checked by `inEventLoop` before every access).
    private var pending = CircularBuffer<UnownedJob>(initialCapacity: 16)
    private var runScheduled = false
    private var running = false
    /// This executor as jobs are run on it, made once: making it per job looked up the type's metadata each time.
    private lazy var unownedSelf = asUnownedTaskExecutor()

    /// Jobs run by one ``runPending()`` call at most, so jobs that keep enqueueing jobs cannot hold the loop for long;
    /// the rest wait for the next scheduled run. The bound is per call: a socket read up to 16 times in one loop turn
    /// (SwiftNIO's `maxMessagesPerRead`) calls it each time.
    private static let batchLimit = 1024

    public init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        guard eventLoop.inEventLoop else {
            eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
            return
        }
        pending.append(job)
        // A job enqueued by a job this executor is running is run by the same run.
        if !running { scheduleRunIfNeeded() }
    }

    /// Runs the jobs enqueued from the loop so far, and those they enqueue, up to ``batchLimit``. Called on the loop,
    /// outside any job of this executor (a call from inside one returns at once: the outer run goes on).
    public func runPending() {
        eventLoop.preconditionInEventLoop()
        guard !running else { return }
        running = true
        defer { running = false }
        var ran = 0
        let executor = unownedSelf
        while ran < Self.batchLimit, let job = pending.popFirst() {
            job.runSynchronously(on: executor)
            ran += 1
        }
        if !pending.isEmpty { scheduleRunIfNeeded() }
    }

    private func scheduleRunIfNeeded() {
        guard !runScheduled else { return }
        runScheduled = true
        eventLoop.execute {
            self.runScheduled = false
            self.runPending()
        }
    }
}

/// One value per event loop of a group, made once when the server starts (a task executor, an idle sweeper), so a
/// connection finds its loop's without making its own.
struct PerEventLoop<Value: Sendable>: Sendable {
    private let values: [ObjectIdentifier: Value]

    init(_ group: any EventLoopGroup, make: (any EventLoop) -> Value) {
        var values: [ObjectIdentifier: Value] = [:]
        for loop in group.makeIterator() { values[ObjectIdentifier(loop)] = make(loop) }
        self.values = values
    }

    /// The value of `eventLoop`; nil for a loop outside the group.
    subscript(_ eventLoop: any EventLoop) -> Value? {
        values[ObjectIdentifier(eventLoop)]
    }

    var all: Dictionary<ObjectIdentifier, Value>.Values { values.values }
}

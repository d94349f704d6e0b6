import NIOCore

/// Runs a task's jobs on one event loop. A request's task prefers the loop of its connection, so the request is
/// handled where its bytes were read and its response is written: no wake-up of a pool thread to start it and none
/// of the loop to finish it. Work that would block still must not run here (see the README).
public final class EventLoopTaskExecutor: TaskExecutor {
    public let eventLoop: any EventLoop

    public init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
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

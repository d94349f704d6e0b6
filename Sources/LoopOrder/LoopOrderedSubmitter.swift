import NIOCore
import Synchronization

/// Runs work on one event loop in the order it was submitted, from any thread: on the loop itself the work runs at
/// once, unless work submitted from other threads still waits there, and then it queues behind that work so it never
/// overtakes it. Used wherever writes to one channel come from the loop and from other threads alike and must keep
/// their order (an event stream's chunks, pipelined Redis commands).
///
/// `perform` takes its input as an argument: a closure literal that captures nothing allocates nothing, so the
/// common case (on the loop, nothing queued) costs an atomic load and a call.
public final class LoopOrderedSubmitter: Sendable {
    public let eventLoop: any EventLoop
    /// Work handed to the loop from other threads and not yet run.
    @usableFromInline let queued = Atomic<Int>(0)

    public init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Runs `perform(input)` on the loop, after all work submitted before it.
    @inlinable
    public func submit<Input: Sendable>(_ input: Input, _ perform: @escaping @Sendable (Input) -> Void) {
        if eventLoop.inEventLoop, queued.load(ordering: .acquiring) == 0 {
            perform(input)
            return
        }
        queued.wrappingAdd(1, ordering: .acquiringAndReleasing)
        eventLoop.execute {
            perform(input)
            self.queued.wrappingSubtract(1, ordering: .acquiringAndReleasing)
        }
    }
}

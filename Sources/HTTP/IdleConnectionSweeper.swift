import NIOCore

/// Closes the idle connections of one event loop: one repeating sweep over the loop's connections, instead of a
/// timer per connection set and cancelled around every request. A connection is closed between `timeout` and
/// `timeout` plus one sweep interval after its last response.
final class IdleConnectionSweeper: @unchecked Sendable {
    // Unchecked: every property is touched only on `eventLoop` (handlers call in from their channel's loop, which is
    // this one; `stop` hops there).
    private let eventLoop: any EventLoop
    private let timeout: TimeAmount
    private let interval: TimeAmount
    private var handlers: [ObjectIdentifier: HTTPConnectionHandler] = [:]
    private var sweep: RepeatedTask?
    private var stopped = false

    init(eventLoop: any EventLoop, timeout: Duration) {
        self.eventLoop = eventLoop
        self.timeout = Self.timeAmount(timeout)
        // A quarter of the timeout, between 50 ms and 1 s: precise enough, and cheap with thousands of connections.
        self.interval = .nanoseconds(min(max(self.timeout.nanoseconds / 4, 50_000_000), 1_000_000_000))
    }

    func register(_ handler: HTTPConnectionHandler) {
        eventLoop.preconditionInEventLoop()
        guard !stopped else { return }
        handlers[ObjectIdentifier(handler)] = handler
        if sweep == nil {
            sweep = eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] _ in closeIdleConnections() }
        }
    }

    func unregister(_ handler: HTTPConnectionHandler) {
        handlers.removeValue(forKey: ObjectIdentifier(handler))
    }

    private func closeIdleConnections() {
        let deadline = eventLoop.now - timeout
        // Collected first: closing removes handlers from the dictionary.
        let idle = handlers.values.filter { $0.isIdle(before: deadline) }
        for handler in idle { handler.closeIdle() }
    }

    static func timeAmount(_ duration: Duration) -> TimeAmount {
        .nanoseconds(max(1, TimeAmount(duration).nanoseconds))
    }

    /// Ends the sweep (the server has stopped).
    func stop() {
        eventLoop.execute { [self] in
            stopped = true
            sweep?.cancel()
            sweep = nil
            handlers = [:]
        }
    }
}

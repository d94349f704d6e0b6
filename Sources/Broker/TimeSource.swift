import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Wall-clock time in milliseconds since the Unix epoch, injectable so tests can move time instead of sleeping.
public struct TimeSource: Sendable {
    public let now: @Sendable () -> Int64

    public init(now: @escaping @Sendable () -> Int64) {
        self.now = now
    }

    /// The system's real-time clock.
    public static let system = TimeSource {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }
}

extension TimeSource {
    /// The real-time clock in microseconds since the epoch, for latencies across nodes on synchronized clocks.
    public static func wallMicroseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1_000_000 + Int64(spec.tv_nsec) / 1000
    }
}

extension Duration {
    /// Whole milliseconds, rounded down; clamped rather than trapping for a duration beyond 292 years (through
    /// SwiftNIO's `TimeAmount(Duration)`, the one conversion every module uses).
    public var milliseconds: Int64 {
        TimeAmount(self).nanoseconds / 1_000_000
    }
}

import ArgumentParser
import Foundation

/// The options of every scenario: the binary under test and the client's shape, all reported on the `machine` line.
struct ClientOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The tandem binary (default: .build/release/tandem, built when missing).", valueName: "path"))
    var tandem: String?

    @Option(help: "Client event loops.")
    var threads = 2

    @Option(help: "Publishing connections per client event loop.")
    var pool = 32

    @Option(help: "Client source addresses 127.0.0.2... (at most \(maximumSources)).")
    var sources = 16

    @Option(help: ArgumentHelp("Heartbeat / nchan ping interval given to the servers.", valueName: "seconds"))
    var heartbeat = 5

    @Option(help: "Event loops of each Tandem node, as EVENT_LOOPS (1, like nginx's one worker; 0: one per core).")
    var eventLoops = 1

    /// Source addresses are 127.0.0.2 to 127.0.0.251 (``sourceAddresses(_:offset:)``): more would repeat them.
    static let maximumSources = 250

    func validate() throws {
        if let tandem, !FileManager.default.isExecutableFile(atPath: tandem) {
            throw ValidationError("--tandem \(tandem): no executable file there")
        }
        try Check.atLeast(1, threads, "--threads")
        try Check.atLeast(1, pool, "--pool")
        try Check.within(1...Self.maximumSources, sources, "--sources")
        try Check.atLeast(1, heartbeat, "--heartbeat")
        try Check.atLeast(0, eventLoops, "--event-loops")
    }
}

/// `--per-worker`, for the commands that run hold.
struct HoldWorkerOptions: ParsableArguments {
    static let defaultPerWorker = 15000

    @Option(help: "Streams per client process before hold re-execs itself as workers.")
    var perWorker = Self.defaultPerWorker

    func validate() throws { try Check.atLeast(1, perWorker, "--per-worker") }
}

extension TargetKind {
    /// `--target`'s comma-separated names, in the order given; an unknown name is refused, not skipped.
    @Sendable static func list(_ text: String) throws -> [TargetKind] {
        try text.split(separator: ",", omittingEmptySubsequences: false).map { name in
            guard let kind = TargetKind(rawValue: String(name)) else {
                throw ValidationError("'\(name)' is not a target; the targets are \(allNames)")
            }
            return kind
        }
    }

    static var allNames: String { allCases.map(\.rawValue).joined(separator: ",") }
}

extension Flavor: ExpressibleByArgument {}

/// Checks of the values that parse but make no sense; each names the flag it refuses.
enum Check {
    static func atLeast(_ minimum: Int, _ value: Int, _ flag: String) throws {
        guard value >= minimum else { throw ValidationError("\(flag) must be at least \(minimum), not \(value)") }
    }

    static func within(_ range: ClosedRange<Int>, _ value: Int, _ flag: String) throws {
        guard range.contains(value) else {
            throw ValidationError("\(flag) must be from \(range.lowerBound) to \(range.upperBound), not \(value)")
        }
    }

    /// A duration or a rate: a finite number above zero.
    static func positive(_ value: Double, _ flag: String) throws {
        guard value.isFinite, value > 0 else { throw ValidationError("\(flag) must be a number above 0, not \(value)") }
    }

    /// `--rates`' comma-separated steps, in the order given; each a number above 0.
    @Sendable static func rates(_ text: String) throws -> [Double] {
        try text.split(separator: ",", omittingEmptySubsequences: false).map { step in
            guard let rate = Double(step), rate.isFinite, rate > 0 else { throw ValidationError("'\(step)' is not a rate above 0") }
            return rate
        }
    }
}

/// What a scenario writes besides its JSON lines: the charts of the run, and its progress on stderr.
struct OutputOptions: ParsableArguments {
    static let defaultChartsDirectory = "bench-charts"

    @Option(
        help: ArgumentHelp(
            "Folder the run's SVG charts are written to when it ends, made if missing (knee*.svg, rss-per-stream.svg, flows-per-second.svg, fanout-latency.svg, cpu-per-event.svg: those the run has data for; no file is removed, an earlier run's chart left there is named on stderr).",
            valueName: "dir"))
    var charts = Self.defaultChartsDirectory

    @Flag(help: "Write no charts.") var noCharts = false

    @Flag(help: "No progress on stderr (the step, the rate, elapsed and remaining time).") var quiet = false

    /// Where the charts go; nil with `--no-charts`.
    var chartsDirectory: String? { noCharts ? nil : charts }

    func validate() throws {
        if charts.isEmpty { throw ValidationError("--charts needs a folder") }
        // Before the run, not after its minutes: a folder that cannot take the charts is refused at once.
        if !noCharts, let problem = ChartFolder.problem(charts, create: false) { throw ValidationError("--charts \(charts): \(problem)") }
    }
}

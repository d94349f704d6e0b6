import ArgumentParser
import Foundation

/// `tandem-bench`: one subcommand per scenario. Each takes only the flags it uses, so a misspelled or misplaced flag
/// is refused instead of silently leaving a default in place. See BENCHMARKS.md.
@main
struct TandemBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem-bench",
        abstract: "Measures Tandem, and nginx + nchan in the same run, on this machine: one JSON line per measure.",
        discussion: """
            See BENCHMARKS.md. `tandem-bench help <scenario>` lists a scenario's flags and their defaults.

            stdout carries JSON lines only. Progress (the step, the rate, elapsed and remaining time) goes to stderr: one \
            line rewritten in place on a terminal, plain lines otherwise; --quiet turns it off. When a run ends, its SVG \
            charts are written to \(OutputOptions.defaultChartsDirectory)/ (--charts DIR elsewhere, --no-charts for none): \
            only the charts it has data for; no other file there is removed, and a chart of an earlier run left there is \
            named on stderr. `tandem-bench charts FILE.jsonl... --out DIR` draws them from recorded lines.
            """,
        subcommands: [Hold.self, Flow.self, Fanout.self, Knee.self, All.self, Smoke.self, Charts.self, Worker.self]
    )

    /// No scenario named: the help, with status 2 (a call without a scenario is a mistake, as it always was).
    func run() throws {
        print(Self.helpMessage())
        throw ExitCode(2)
    }
}

/// Help shared by several subcommands.
enum Help {
    static let target = ArgumentHelp(
        "Comma-separated targets: \(TargetKind.allNames) (default: all but tandem-cluster).", valueName: "list")
    static let duration = ArgumentHelp("Seconds the measurement window lasts.", valueName: "seconds")
    static let nchanChurn = ArgumentHelp(
        "nchan only: a new channel and stream every N events, as Tandem's sessions (0: never).", valueName: "n")
    static let rates = ArgumentHelp(
        "Knee steps in events per second, comma-separated, run in this order (default: \(TandemBench.Knee.defaultRatesText)).",
        valueName: "list")
}

extension TandemBench {
    struct Hold: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Idle streams held open: the server's memory per stream, heartbeats, and one handoff under that load.")

        @Option(help: Help.target, transform: TargetKind.list) var target: [TargetKind]?
        @Option(help: "Idle streams.") var streams = 19000
        @Option(help: "tandem-redis, tandem-cluster: Tandem nodes sharing Redis (2: streams on A, publishes on B; more: streams on every node).") var nodes = 2
        @Option(help: ArgumentHelp("Seconds the streams are held.", valueName: "seconds")) var duration = 20.0
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var workers: HoldWorkerOptions

        func validate() throws {
            try Check.atLeast(1, streams, "--streams")
            // startTarget runs at least two: one node alone would not show the hop through Redis.
            try Check.atLeast(2, nodes, "--nodes")
            try Check.positive(duration, "--duration")
        }

        func run() throws {
            let kinds = target ?? TargetKind.defaults
            try BenchRun.execute(client, output: output, perWorker: workers.perWorker) { run in
                run.progress.expectScenarios(kinds.count)
                for kind in kinds {
                    run.withTarget(kind, nodes: nodes) { target in try run.hold(target, streams: streams, duration: duration) }
                }
            }
        }
    }

    struct Flow: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Full handoffs back to back (stream, validate, input-started, submit, complete), Tandem only.")

        @Option(
            help: ArgumentHelp("Comma-separated Tandem targets (default: tandem-memory,tandem-redis).", valueName: "list"),
            transform: TargetKind.list)
        var target: [TargetKind]?
        @Option(help: "Concurrent handoffs.") var flows = 1000
        @Option(help: Help.duration) var duration = 10.0
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions

        func validate() throws {
            if let nchan = target?.first(where: { $0.flavor != .tandem }) {
                throw ValidationError("flow measures Tandem only; \(nchan.rawValue) is not a Tandem target")
            }
            try Check.atLeast(1, flows, "--flows")
            try Check.positive(duration, "--duration")
        }

        func run() throws {
            let kinds = target ?? [.tandemMemory, .tandemRedis]
            try BenchRun.execute(client, output: output) { run in
                run.progress.expectScenarios(kinds.count)
                for kind in kinds {
                    run.withTarget(kind) { target in try run.flow(target, concurrency: flows, duration: duration) }
                }
            }
        }
    }

    struct Fanout: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Events at a fixed rate to random ready streams: latency, losses, the server's CPU per event.")

        @Option(help: Help.target, transform: TargetKind.list) var target: [TargetKind]?
        @Option(help: "Streams.") var streams = 1000
        @Option(help: "Events per second.") var rate = 1000.0
        @Option(help: Help.duration) var duration = 10.0
        @Option(help: Help.nchanChurn) var nchanChurn = 0
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions

        func validate() throws {
            try Check.atLeast(1, streams, "--streams")
            try Check.positive(rate, "--rate")
            try Check.positive(duration, "--duration")
            try Check.atLeast(0, nchanChurn, "--nchan-churn")
        }

        func run() throws {
            let kinds = target ?? TargetKind.defaults
            try BenchRun.execute(client, output: output) { run in
                run.progress.expectScenarios(kinds.count)
                for kind in kinds {
                    run.withTarget(kind) { target in
                        try run.fanout(target, streams: streams, rate: rate, duration: duration, nchanChurn: nchanChurn)
                    }
                }
            }
        }
    }

    struct Knee: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fanout at rising rates: the highest step with p99 <= 10 ms, nothing lost and <= 1% unsent.")

        static let defaultRates: [Double] = [
            1000, 2000, 3000, 4000, 6000, 8000, 10000, 12000, 16000, 20000, 24000, 32000, 40000, 48000, 64000,
        ]
        static var defaultRatesText: String { defaultRates.map { String(Int($0)) }.joined(separator: ",") }

        @Option(help: Help.target, transform: TargetKind.list) var target: [TargetKind]?
        @Option(help: "Streams.") var streams = 1000
        @Option(help: Help.rates, transform: Check.rates) var rates: [Double]?
        @Option(help: ArgumentHelp("Seconds each step lasts.", valueName: "seconds")) var duration = 5.0
        @Option(help: Help.nchanChurn) var nchanChurn = 0
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions

        func validate() throws {
            try Check.atLeast(1, streams, "--streams")
            try Check.positive(duration, "--duration")
            try Check.atLeast(0, nchanChurn, "--nchan-churn")
        }

        func run() throws {
            let kinds = target ?? TargetKind.defaults
            try BenchRun.execute(client, output: output) { run in
                run.progress.expectScenarios(kinds.count)
                for kind in kinds {
                    run.withTarget(kind) { target in
                        try run.knee(target, streams: streams, rates: rates ?? Self.defaultRates, duration: duration, nchanChurn: nchanChurn)
                    }
                }
            }
        }
    }

    struct All: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "hold, then flow, fanout and knee on each target; nchan both in its own shape and in Tandem's.",
            discussion: "fanout and knee run 1000 streams; --streams is hold's.")

        @Option(help: Help.target, transform: TargetKind.list) var target: [TargetKind]?
        @Option(help: "hold: idle streams.") var streams = 19000
        @Option(help: ArgumentHelp("Seconds hold holds its streams.", valueName: "seconds")) var holdDuration = 20.0
        @Option(help: "flow: concurrent handoffs.") var flows = 1000
        @Option(help: ArgumentHelp("Seconds of the flow and fanout windows.", valueName: "seconds")) var duration = 10.0
        @Option(help: "fanout: events per second.") var rate = 1000.0
        @Option(help: Help.rates, transform: Check.rates) var rates: [Double]?
        @Option(help: ArgumentHelp("Seconds each knee step lasts.", valueName: "seconds")) var kneeDuration = 5.0
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var workers: HoldWorkerOptions

        func validate() throws {
            try Check.atLeast(1, streams, "--streams")
            try Check.positive(holdDuration, "--hold-duration")
            try Check.atLeast(1, flows, "--flows")
            try Check.positive(duration, "--duration")
            try Check.positive(rate, "--rate")
            try Check.positive(kneeDuration, "--knee-duration")
        }

        func run() throws {
            let rates = rates ?? Knee.defaultRates
            let kinds = target ?? TargetKind.defaults
            try BenchRun.execute(client, output: output, perWorker: workers.perWorker) { run in
                // hold, flow, fanout and knee on Tandem; hold and both shapes' fanout and knee on nchan.
                run.progress.expectScenarios(kinds.reduce(0) { $0 + ($1.flavor == .tandem ? 4 : 5) })
                for kind in kinds {
                    run.withTarget(kind) { target in try run.hold(target, streams: streams, duration: holdDuration) }
                    run.withTarget(kind) { target in
                        if kind.flavor == .tandem { try run.flow(target, concurrency: flows, duration: duration) }
                        try run.fanout(target, streams: 1000, rate: rate, duration: duration)
                        try run.knee(target, streams: 1000, rates: rates, duration: kneeDuration)
                        if kind.flavor == .nchan {
                            // nchan in Tandem's shape too: a new channel and stream every three events.
                            try run.fanout(target, streams: 1000, rate: rate, duration: duration, nchanChurn: 3)
                            try run.knee(target, streams: 1000, rates: rates, duration: kneeDuration, nchanChurn: 3)
                        }
                    }
                }
            }
        }
    }

    struct Smoke: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A few seconds of hold, flow and fanout on tandem-memory, small counts: exits 1 on any loss (CI).")

        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var workers: HoldWorkerOptions

        func run() throws {
            try BenchRun.execute(client, output: output, perWorker: workers.perWorker) { run in
                run.progress.expectScenarios(3)
                run.withTarget(.tandemMemory, heartbeatSeconds: 1) { target in
                    try run.hold(target, streams: 200, duration: 2.5, heartbeat: 1)
                    try run.flow(target, concurrency: 50, duration: 2)
                    try run.fanout(target, streams: 100, rate: 300, duration: 2)
                }
            }
        }
    }

    struct Charts: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Draws the SVG charts of recorded JSON lines (a run's stdout, or files in benchmarks/) without running anything.",
            discussion: """
                Several files are read as one run (its rounds): each point and bar is then the median of its repeats. \
                A line that is not JSON, or a measure that is missing, not finite, negative or implausibly large, is \
                skipped with a warning on stderr. Prints the paths written, one per line. Only the charts the lines \
                have data for are written: no other file in the folder is touched, and a chart of an earlier run left \
                there (one these lines have no data for) is named on stderr. A chart draws at most \(Chart.mostSeries) \
                targets; it says how many more it left out.
                """)

        @Argument(help: ArgumentHelp("JSON-lines files of one run.", valueName: "file.jsonl")) var files: [String]
        @Option(help: ArgumentHelp("Folder the charts are written to, made if missing; only the charts with data are written, no file is removed.", valueName: "dir"))
        var out = OutputOptions.defaultChartsDirectory
        @Option(
            help: ArgumentHelp(
                "The run's date for the titles, used only when its machine line records none (runs before the charts); cut after \(RunCharts.longestDate) characters.",
                valueName: "text"))
        var date: String?

        /// Larger is not a bench run's output (the 17-minute `all` writes about 60 KB).
        static let largestFile = 64 << 20

        func validate() throws {
            if files.isEmpty { throw ValidationError("name at least one JSON-lines file") }
            if out.isEmpty { throw ValidationError("--out needs a folder") }
            // Before any file is read: a folder that cannot take the charts is refused at once.
            if let problem = ChartFolder.problem(out, create: false) { throw ValidationError("--out \(out): \(problem)") }
        }

        func run() throws {
            var recorded = RecordedRun()
            for file in files {
                let data = try RecordedFile.contents(of: file, limit: Self.largestFile)
                recorded.read(String(decoding: data, as: UTF8.self), source: (file as NSString).lastPathComponent)
            }
            if let date {
                if let recordedDate = recorded.date {
                    print("# note: --date \(date) not used: the machine line records the run's date, \(recordedDate)", to: &standardError)
                } else {
                    recorded.date = date
                }
            }
            for warning in recorded.warnings { print("# warning: \(warning)", to: &standardError) }
            let charts = RunCharts(recorded)
            guard !charts.charts.isEmpty else { throw BenchError("nothing to draw in \(files.joined(separator: ", ")): no hold, flow, fanout or knee-step line with its measures") }
            let (paths, notes) = try charts.write(to: out, flag: "--out")
            for note in notes { print(note, to: &standardError) }
            for path in paths { print(path) }
        }
    }
}

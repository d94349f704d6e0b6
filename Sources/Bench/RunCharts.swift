import Foundation

/// The charts of one run: built from a ``RecordedRun``, written as SVG files into a folder. Where a run repeated a
/// measure (several rounds in one file), each point and bar is the median of the repeats, and the chart says so.
struct RunCharts {
    /// Each chart this can draw, in the order the files are written.
    enum Name: CaseIterable {
        case knee, kneeMemory, kneeRedis, rssPerStream, flowsPerSecond, fanoutLatency, cpuPerEvent

        /// Its file: BENCHMARKS.md and the README link these names.
        var fileName: String {
            switch self {
            case .knee: "knee.svg"
            case .kneeMemory: "knee-memory.svg"
            case .kneeRedis: "knee-redis.svg"
            case .rssPerStream: "rss-per-stream.svg"
            case .flowsPerSecond: "flows-per-second.svg"
            case .fanoutLatency: "fanout-latency.svg"
            case .cpuPerEvent: "cpu-per-event.svg"
            }
        }
    }

    var charts: [(name: Name, chart: Chart)] = []

    /// The latency limit of a knee step: the line drawn across the knee charts.
    static let kneeLimitMilliseconds = 10.0

    init(_ run: RecordedRun) {
        let machine = run.machine.flatMap { $0.isEmpty ? nil : $0 } ?? "machine not recorded"
        // A long processor name must not run off the chart: the machine gives way, the date stays (cut too when it
        // is a long text of `--date`'s, not a date).
        let about = Self.shortened(machine, to: Self.longestMachine) + " · "
            + (run.date.map { Self.shortened(MachineDescription.readable($0), to: Self.longestDate) } ?? "date not recorded")
        let kneeStreams = Self.counts(run.kneeStreams).map { "\($0) streams; " } ?? ""
        for (name, storage) in [(Name.knee, "every target"), (.kneeMemory, "in memory"), (.kneeRedis, "through Redis")] {
            let series = Self.kneeSeries(run, storage: name == .knee ? nil : name == .kneeMemory)
            guard !series.isEmpty else { continue }
            let repeated = run.kneeSteps.values.contains { steps in Set(steps.map(\.rate)).count < steps.count }
            charts.append((name, Chart(
                title: "Latency as the event rate rises, \(storage)",
                subtitle: about,
                kind: .lines(
                    x: ChartAxis(label: "events per second (log scale)", scale: .logarithmic, tickFormat: .thousands),
                    y: ChartAxis(label: "latency, ms (log scale)", scale: .logarithmic)),
                series: series,
                thresholds: [ChartThreshold(value: Self.kneeLimitMilliseconds, label: "10 ms: the knee's p99 limit")],
                footnote: "knee steps, \(kneeStreams)solid p99, dashed p50; a curve ends at its first failing step"
                    + (repeated ? "; median of repeated steps" : ""))))
        }
        // Fanout lines at one rate only (the most common; `all` runs them all at 1,000 events/s): latencies and costs
        // at different rates would not compare.
        let fanoutRate = Self.mostCommon(run.fanouts.values.flatMap { $0.map(\.latency.rate) })
        let fanouts = run.fanouts.mapValues { $0.filter { $0.latency.rate == fanoutRate } }.filter { !$0.value.isEmpty }
        let atRate = fanoutRate.map { " at \(ChartScale.valueLabel($0)) events/s" } ?? ""

        let bars: [(Name, [String: [Double]], String, String, String)] = [
            (.rssPerStream, run.rssPerStream, "Server memory per held stream", "KiB per stream (RSS)",
             "hold" + (Self.counts(run.holdStreams).map { ", \($0) idle streams" } ?? "") + "; the server's RSS growth over the streams established"),
            (.flowsPerSecond, run.flowsPerSecond, "Full handoffs per second (Tandem)", "handoffs per second",
             "flow: stream, validate, input-started, submit, complete, back to back"),
            (.fanoutLatency, fanouts.mapValues { $0.map(\.latency.p99) }, "p99 latency\(atRate)", "p99 latency, ms (POST to event)",
             "fanout; nchan churn 3: a new channel and stream every 3 events, as Tandem's sessions"),
            (.cpuPerEvent, fanouts.mapValues { $0.compactMap(\.cpuPerEventMicroseconds) }.filter { !$0.value.isEmpty },
             "Server CPU per event\(atRate)", "µs of server CPU per event", "fanout window, every server process (Tandem or nginx, and Redis)"),
        ]
        for (name, values, title, axis, footnote) in bars where !values.isEmpty {
            let repeated = values.values.contains { $0.count > 1 }
            charts.append((name, Chart(
                title: title, subtitle: about, kind: .bars(y: ChartAxis(label: axis, scale: .linear)),
                series: values.map { ChartSeries(name: $0.key, bar: Self.median($0.value)) },
                footnote: footnote + (repeated ? "; median of repeated runs" : ""))))
        }
    }

    /// p99 (solid) and p50 (dashed) against the rate, one series per target and shape; `memory` nil for all of them.
    private static func kneeSeries(_ run: RecordedRun, storage memory: Bool?) -> [ChartSeries] {
        run.kneeSteps.compactMap { name, steps in
            if let memory, name.contains("memory") != memory { return nil }
            let rates = Array(Set(steps.map(\.rate))).sorted()
            func curve(_ percentile: KeyPath<RecordedRun.LatencyAtRate, Double>) -> [ChartPoint] {
                rates.map { rate in ChartPoint(x: rate, y: median(steps.filter { $0.rate == rate }.map { $0[keyPath: percentile] })) }
            }
            return ChartSeries(name: name, lines: [
                ChartLine(name: "p99", dash: .solid, points: curve(\.p99)),
                ChartLine(name: "p50", dash: .dashed, points: curve(\.p50)),
            ])
        }
    }

    /// Characters of the machine's description, and of the date, a subtitle shows.
    static let longestMachine = 90
    static let longestDate = 40

    /// `text`'s first `count` characters, and `…` when there were more.
    static func shortened(_ text: String, to count: Int) -> String {
        text.count > count ? text.prefix(count) + "…" : text
    }

    /// `1,000` or `100, 1,000`; nil for none.
    private static func counts(_ values: Set<Int>) -> String? {
        values.isEmpty ? nil : values.sorted().map { ChartScale.valueLabel(Double($0)) }.joined(separator: ", ")
    }

    /// The value seen most often; the lowest of those tied.
    private static func mostCommon(_ values: [Double]) -> Double? {
        let counts = Dictionary(values.map { ($0, 1) }, uniquingKeysWith: +)
        return counts.min { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }?.key
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return .nan }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    /// Writes the charts this run has data for into `directory` (made if missing, ``ChartFolder``) and touches no
    /// other file: a chart of ``Name`` this run has no data for, left there by an earlier run, stays, and a note
    /// says so. Returns the paths written and those notes (and a warning for each chart that left targets out).
    func write(to directory: String, flag: String) throws -> (paths: [String], notes: [String]) {
        try ChartFolder.check(directory, flag: flag, create: true)
        var paths: [String] = []
        var notes: [String] = []
        for name in Name.allCases {
            let path = (directory as NSString).appendingPathComponent(name.fileName)
            if let chart = charts.first(where: { $0.name == name })?.chart {
                try ChartFolder.writeAtomically(chart.svg, to: path)
                paths.append(path)
                if chart.undrawnSeries > 0 {
                    notes.append("# warning: \(path): \(chart.series.count) targets, the first \(Chart.mostSeries) drawn, \(chart.undrawnSeries) more left out")
                }
            } else if FileManager.default.fileExists(atPath: path) {
                notes.append("# note: \(path) is from an earlier run (this one has no data for it): left as it was")
            }
        }
        return (paths, notes)
    }
}

import Foundation
import PropertyBased
import Testing

@testable import Bench

#if canImport(FoundationXML)
import FoundationXML
#endif

/// The charts: drawn from a recorded run in `benchmarks/`, parsed back as XML; hostile lines give warnings, never a
/// crash or an invalid document.
@Suite struct ChartTests {
    /// The run BENCHMARKS.md's charts are drawn from.
    static let recordedRun = "benchmarks/all-current.jsonl"
    /// An earlier run, recorded before the fanout's CPU per event was.
    static let earlierRecordedRun = "benchmarks/all-2026-11-25.jsonl"

    static func read(_ path: String) throws -> RecordedRun {
        var run = RecordedRun()
        run.read(try String(contentsOfFile: path, encoding: .utf8), source: path)
        return run
    }

    @Test func theRecordedRunGivesEveryChartWithOneSeriesPerTarget() throws {
        let run = try Self.read(Self.recordedRun)
        #expect(run.warnings.isEmpty, "\(run.warnings)")
        let charts = RunCharts(run)
        let names = Set(charts.charts.map(\.name))
        #expect(names == [.knee, .kneeMemory, .kneeRedis, .rssPerStream, .flowsPerSecond, .fanoutLatency, .cpuPerEvent])

        let knee = try SVGOutline(charts.svg(.knee))
        #expect(knee.series == [
            "tandem-memory", "tandem-redis", "nchan-memory", "nchan-memory churn 3", "nchan-redis", "nchan-redis churn 3",
        ])
        #expect(knee.title.contains("Latency") && knee.title.contains("2 cores"))
        // p99 and p50 per target, told apart by the dash; the 10 ms line drawn.
        #expect(knee.polylines == 12)
        #expect(knee.texts.contains("10 ms: the knee's p99 limit"))
        #expect(knee.texts.contains("events per second (log scale)") && knee.texts.contains("latency, ms (log scale)"))
        #expect(try SVGOutline(charts.svg(.kneeMemory)).series == ["tandem-memory", "nchan-memory", "nchan-memory churn 3"])
        #expect(try SVGOutline(charts.svg(.kneeRedis)).series == ["tandem-redis", "nchan-redis", "nchan-redis churn 3"])

        let rss = try SVGOutline(charts.svg(.rssPerStream))
        #expect(rss.series == ["tandem-memory", "tandem-redis", "nchan-memory", "nchan-redis"])
        #expect(rss.bars == 4 && rss.texts.contains("KiB per stream (RSS)"))
        let flows = try SVGOutline(charts.svg(.flowsPerSecond))
        #expect(flows.series == ["tandem-memory", "tandem-redis"])
        #expect(flows.texts.contains("1,739"))  // all-current.jsonl's tandem-memory flows_per_s, 1739.1
        let fanout = try SVGOutline(charts.svg(.fanoutLatency))
        #expect(fanout.series.count == 6 && fanout.title.contains("p99 latency at 1,000 events/s"))
    }

    /// A target has one colour in every chart, and no two targets share one.
    @Test func aTargetKeepsItsColour() throws {
        let charts = RunCharts(try Self.read(Self.recordedRun))
        var colours: [String: Set<String>] = [:]
        for (_, chart) in charts.charts {
            for series in chart.series { colours[series.name, default: []].insert(SeriesStyle.of(series.name).colour) }
        }
        #expect(colours.values.allSatisfy { $0.count == 1 })
        let distinct = Set(SeriesStyle.order.map { SeriesStyle.of($0).colour })
        #expect(distinct.count == SeriesStyle.order.count)
    }

    @Test func theTitlesNameTheMachineAndTheDate() throws {
        var run = RecordedRun()
        run.read(
            #"{"scenario":"machine","cores":2,"memory_gib":23.5,"load_average_1m":"0.5","cpu":"Some CPU","os":"Debian","date":"2026-11-28T12:45:03Z"}"#
                + "\n" + #"{"scenario":"flow","target":"tandem-memory","flows_per_s":100.0}"#,
            source: "test")
        let flows = try SVGOutline(try #require(RunCharts(run).charts.first).chart.svg)
        #expect(flows.texts.contains("Some CPU, 2 cores, 23.5 GiB, Debian, load 0.5 · 2026-11-28 12:45 UTC"))
        // A run that timed the machine's fixed work says how long it took.
        var timed = RecordedRun()
        timed.read(
            #"{"scenario":"machine","cores":2,"load_average_1m":"0.5","calibration_ms":33.8,"date":"2026-11-29T19:09:15Z"}"#
                + "\n" + #"{"scenario":"flow","target":"tandem-memory","flows_per_s":100.0}"#,
            source: "test")
        #expect(try SVGOutline(try #require(RunCharts(timed).charts.first).chart.svg).texts.contains("2 cores, load 0.5, calibration 33.8 ms · 2026-11-29 19:09 UTC"))
        // A calibration that is not a measure (zero, negative, absurd) is left out of the title.
        for value in ["0", "-1", "0.01", "1e999", "1e7", "\"fast\""] {
            var odd = RecordedRun()
            odd.read(
                #"{"scenario":"machine","cores":2,"calibration_ms":\#(value)}"# + "\n" + #"{"scenario":"flow","target":"tandem-memory","flows_per_s":100.0}"#,
                source: "test")
            let svg = try #require(RunCharts(odd).charts.first).chart.svg
            #expect(!svg.contains("calibration"), "\(value)")
        }
        // Older runs recorded no date: the chart says so rather than guess.
        var old = RecordedRun()
        old.read(#"{"scenario":"flow","target":"tandem-memory","flows_per_s":100.0}"#, source: "test")
        #expect(try SVGOutline(try #require(RunCharts(old).charts.first).chart.svg).texts.contains("machine not recorded · date not recorded"))
    }

    @Test func hostileLinesAreSkippedWithAWarning() throws {
        let lines = [
            "not json",
            "[1,2]",
            #"{"target":"tandem-memory"}"#,
            #"{"scenario":"hold","rss_per_stream_kib":3}"#,
            #"{"scenario":"hold","target":"tandem-memory","rss_per_stream_kib":-3}"#,
            #"{"scenario":"hold","target":"tandem-memory","rss_per_stream_kib":1e300}"#,
            #"{"scenario":"hold","target":"tandem-memory","rss_per_stream_kib":null}"#,
            #"{"scenario":"flow","target":"tandem-memory","flows_per_s":"fast"}"#,
            #"{"scenario":"knee-step","target":"nchan-memory","rate":1000,"latency_ms":null}"#,
            #"{"scenario":"knee-step","target":"<script>&","events_per_stream":3,"rate":1000,"latency_ms":{"p50":0,"p99":1e-9}}"#,
            #"{"scenario":"knee-step","target":"nchan-redis","events_per_stream":3,"rate":2000,"latency_ms":{"p50":0.5,"p99":1.5}}"#,
        ]
        var run = RecordedRun()
        run.read(lines.joined(separator: "\n"), source: "hostile.jsonl")
        #expect(run.warnings.count == 9, "\(run.warnings)")
        #expect(run.warnings.first == "hostile.jsonl:1: not a JSON object, skipped")
        #expect(run.warnings.contains("hostile.jsonl:5: rss_per_stream_kib is -3.0, not a measure, skipped"))
        #expect(run.rssPerStream.isEmpty && run.flowsPerSecond.isEmpty)
        let knee = try SVGOutline(try #require(RunCharts(run).charts.first { $0.name == .knee }).chart.svg)
        // A target name is text like any other: escaped, and a series of its own.
        #expect(knee.series == ["nchan-redis churn 3", "<script>& churn 3"])
    }

    /// Whatever the numbers (NaN, infinities, zero, negative, subnormal, huge), a chart is well-formed SVG with
    /// finite coordinates and a group per series.
    @Test func anyNumbersGiveWellFormedSVG() async {
        let specials: [Double] = [.nan, .infinity, -.infinity, 0, -0.0, -1, .leastNonzeroMagnitude, .greatestFiniteMagnitude, 1e-300, 10]
        let number = Gen.oneOf(Gen.uint64().map { Double(bitPattern: $0) }, Gen.element(of: specials).map { $0 ?? 0 })
        await propertyCheck(count: 300, input: number.array(of: 0...12), number.array(of: 1...6)) { values, bars in
            let points = stride(from: 0, to: values.count - 1, by: 2).map { ChartPoint(x: values[$0], y: values[$0 + 1]) }
            let lines = Chart(
                title: "t", subtitle: "s",
                kind: .lines(x: ChartAxis(label: "x", scale: .logarithmic, tickFormat: .thousands), y: ChartAxis(label: "y", scale: .logarithmic)),
                series: [
                    ChartSeries(name: "tandem-memory", lines: [ChartLine(name: "p99", dash: .solid, points: points)]),
                    ChartSeries(name: "nchan-redis churn 3", lines: [ChartLine(name: "p50", dash: .dashed, points: points.reversed())]),
                ],
                thresholds: [ChartThreshold(value: values.first ?? 10, label: "limit")])
            let columns = Chart(
                title: "t", subtitle: "s", kind: .bars(y: ChartAxis(label: "y", scale: .linear)),
                series: bars.enumerated().map { ChartSeries(name: "target \($0.offset)", bar: $0.element) })
            for (chart, count) in [(lines, 2), (columns, bars.count)] {
                let svg = chart.svg
                let outline = try? SVGOutline(svg)
                #expect(outline?.series.count == count, "\(values) \(bars)")
                #expect(!svg.contains("nan") && !svg.contains("inf"), "\(values) \(bars)")
            }
        }
    }

    /// Lines of any text, and JSON lines with any numbers in their measures, are read without a crash; what they
    /// give is drawn as well-formed SVG.
    @Test func anyLinesAreReadAndDrawnSafely() async {
        let text = Gen.character(in: " "..."~").string(of: 0...80)
        let number = Gen.element(of: ["-1", "0", "1e-320", "1e308", "1e999", "-0", "3.5", "null", "\"x\"", "[]", "{}", "12345678901234567890"])
        await propertyCheck(count: 300, input: text, number, number) { garbage, first, second in
            let lines = [
                garbage,
                #"{"scenario":"machine","cores":2,"calibration_ms":\#(first ?? "0")}"#,
                #"{"scenario":"knee-step","target":"nchan-memory","events_per_stream":\#(first ?? "0"),"rate":\#(second ?? "0"),"#
                    + #""latency_ms":{"p50":\#(first ?? "0"),"p99":\#(second ?? "0")}}"#,
                #"{"scenario":"hold","target":"\#(garbage.replacingOccurrences(of: "\"", with: ""))","rss_per_stream_kib":\#(first ?? "0")}"#,
                #"{"scenario":"fanout","target":"tandem-redis","rate":\#(second ?? "0"),"latency_ms":{"p50":1,"p99":\#(first ?? "0")},"#
                    + #""server_cpu_per_event_us":\#(second ?? "0")}"#,
            ]
            var run = RecordedRun()
            run.read(lines.joined(separator: "\r\n"), source: "random")
            for (name, chart) in RunCharts(run).charts {
                #expect((try? SVGOutline(chart.svg)) != nil, "\(name): \(lines)")
            }
        }
    }

    @Test func escapingLeavesNoMarkupAndNoForbiddenCharacters() {
        #expect(SVGDocument.escape(#"a<b>&"c'"#) == "a&lt;b&gt;&amp;&quot;c&apos;")
        #expect(SVGDocument.escape("x\u{0}y\u{1B}z\u{FFFE}") == "x\u{FFFD}y\u{FFFD}z\u{FFFD}")
        // Bidirectional controls could show a title reversed: replaced like the forbidden ones.
        let controls = Self.bidiControls.map(String.init)
        #expect(SVGDocument.escape(controls.joined(separator: "a")) == Array(repeating: "\u{FFFD}", count: controls.count).joined(separator: "a"))
        #expect(SVGDocument.escape("tandem \u{05D0}\u{05D1} é") == "tandem \u{05D0}\u{05D1} é")  // right-to-left letters stay
    }

    /// The marks, embeddings, overrides and isolates that can reverse a text's direction.
    static let bidiControls: [Unicode.Scalar] = [
        "\u{200E}", "\u{200F}", "\u{202A}", "\u{202B}", "\u{202C}", "\u{202D}", "\u{202E}", "\u{2066}", "\u{2067}", "\u{2068}", "\u{2069}",
    ]

    /// No bidirectional control reaches the document, wherever it came from: the machine line or a target's name.
    @Test func bidiControlsInTheLinesNeverReachTheSVG() throws {
        var run = RecordedRun()
        run.read(
            #"{"scenario":"machine","cpu":"CPU \u202Egnp.exe\u202C","os":"\u2067x\u2069","date":"\u200F2026"}"#
                + "\n" + #"{"scenario":"flow","target":"tandem-\u202Emem","flows_per_s":100.0}"#,
            source: "test")
        let svg = try #require(RunCharts(run).charts.first).chart.svg
        #expect(!svg.unicodeScalars.contains { Self.bidiControls.contains($0) })
        #expect(try SVGOutline(svg).texts.contains { $0.hasPrefix("CPU \u{FFFD}gnp.exe\u{FFFD}") })
    }

    @Test func scalesSpanTheDataAndPlaceOnlyWhatTheyCan() {
        let log = ChartScale(fitting: [0.12, 350, 0, -4, .nan], scale: .logarithmic)
        #expect(log.ticks.first == 0.1 && log.ticks.last == 1000)
        #expect(log.position(0.1) == 0 && log.position(1000) == 1)
        #expect(log.position(0) == nil && log.position(.nan) == nil && log.position(-1) == nil)
        let linear = ChartScale(fitting: [0, 5403.3], scale: .linear)
        #expect(linear.ticks == [0, 2000, 4000, 6000])
        #expect(ChartScale.tickLabel(64000, .thousands) == "64k" && ChartScale.tickLabel(0.1, .plain) == "0.1")
        #expect(ChartScale.tickLabel(6000, .plain) == "6,000" && ChartScale.tickLabel(1e12, .plain) == "1e+12")
        #expect(ChartScale.valueLabel(5403.3) == "5,403" && ChartScale.valueLabel(4.35) == "4.35")
    }

    /// `tandem-bench charts` on the recorded run: writes the files, prints their paths, and leaves a folder's chart of
    /// an earlier run (a kind this run has no data for) as it was, naming it on stderr.
    @Test(.timeLimit(.minutes(1))) func theChartsCommandDrawsARecordedRun() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("bench-charts-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let stale = folder + "/cpu-per-event.svg"
        _ = FileManager.default.createFile(atPath: stale, contents: Data("old".utf8))
        // The 25 Nov run: it has no CPU per event, so the folder's chart of it is left.
        let result = try await BinaryRun.run(["charts", Self.earlierRecordedRun, "--out", folder, "--date", "2026-11-26"])
        #expect(result.status == 0, "\(result.errors)")
        let paths = result.output.split(separator: "\n").map(String.init)
        #expect(paths.map { ($0 as NSString).lastPathComponent }.sorted()
            == ["fanout-latency.svg", "flows-per-second.svg", "knee-memory.svg", "knee-redis.svg", "knee.svg", "rss-per-stream.svg"])
        for path in paths { #expect(try SVGOutline(String(contentsOfFile: path, encoding: .utf8)).title.contains("2026-11-26")) }
        #expect(FileManager.default.contents(atPath: stale) == Data("old".utf8))
        #expect(result.errors.contains("# note: \(stale) is from an earlier run (this one has no data for it): left as it was"), "\(result.errors)")
        let refused = try await BinaryRun.run(["charts", "/nonexistent.jsonl", "--out", folder])
        #expect(refused.status != 0 && refused.errors.contains("/nonexistent.jsonl: no such file"), "\(refused.errors)")
    }
}

extension RunCharts {
    func svg(_ name: Name) throws -> String { try #require(charts.first { $0.name == name }).chart.svg }
}

/// What the tests look at in an SVG document, read with Foundation's XMLParser (which fails on malformed XML).
struct SVGOutline {
    var root = ""
    var title = ""
    /// `data-series` of each series group, in document order.
    var series: [String] = []
    var polylines = 0
    var bars = 0
    var texts: [String] = []

    init(_ svg: String) throws {
        let reader = Reader()
        let parser = XMLParser(data: Data(svg.utf8))
        parser.delegate = reader
        guard parser.parse() else { throw BenchError("not XML: \(parser.parserError.map { "\($0)" } ?? "?")") }
        self = reader.outline
        guard root == "svg", !title.isEmpty else { throw BenchError("root \(root), title '\(title)'") }
    }

    private init() {}

    private final class Reader: NSObject, XMLParserDelegate {
        var outline = SVGOutline()
        private var path: [String] = []
        private var text = ""

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String]) {
            if path.isEmpty { outline.root = name }
            path.append(name)
            text = ""
            if name == "g", attributes["class"] == "series" { outline.series.append(attributes["data-series"] ?? "") }
            if name == "polyline" { outline.polylines += 1 }
            if name == "rect", attributes["class"] == "bar" { outline.bars += 1 }
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            if name == "title", path.count == 2 { outline.title = text }
            if name == "text" { outline.texts.append(text) }
            path.removeLast()
            text = ""
        }
    }
}

extension ChartTests {
    /// benchmarks/charts/ is what the renderer draws from benchmarks/all-current.jsonl today: a change to the charts
    /// regenerates them (the command in BENCHMARKS.md), or this fails.
    @Test func theCommittedChartsAreCurrent() throws {
        var run = try Self.read(Self.recordedRun)
        run.date = "2026-11-29 19:09 UTC"
        for (name, chart) in RunCharts(run).charts {
            let committed = try String(contentsOfFile: "benchmarks/charts/\(name.fileName)", encoding: .utf8)
            #expect(committed == chart.svg, "benchmarks/charts/\(name.fileName) is stale: regenerate it (BENCHMARKS.md)")
        }
    }

    /// Several files are one run's rounds: a repeated step is drawn at its median.
    @Test func repeatedStepsAreDrawnAtTheirMedian() throws {
        var run = RecordedRun()
        for p99 in [1.0, 9.0, 2.0] {
            run.read(#"{"scenario":"knee-step","target":"tandem-memory","rate":1000,"latency_ms":{"p50":0.5,"p99":\#(p99)}}"#, source: "round")
        }
        let knee = try #require(RunCharts(run).charts.first { $0.name == .knee }).chart
        #expect(knee.series.first?.lines.first?.points == [ChartPoint(x: 1000, y: 2)])
        #expect(knee.footnote.contains("median of repeated steps"))
    }
}

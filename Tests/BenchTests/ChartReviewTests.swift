import ArgumentParser
import Foundation
import Testing

@testable import Bench

#if canImport(Glibc)
import Glibc
#endif

/// Charts with many targets, unknown targets and long names; the date a title shows.
@Suite struct ChartManyTargetsTests {
    static func barChart(_ names: [String]) -> Chart {
        Chart(
            title: "t", subtitle: "s", kind: .bars(y: ChartAxis(label: "y", scale: .linear)),
            series: names.enumerated().map { ChartSeries(name: $0.element, bar: Double($0.offset + 1)) })
    }

    static func lineChart(_ names: [String]) -> Chart {
        Chart(
            title: "t", subtitle: "s",
            kind: .lines(x: ChartAxis(label: "x", scale: .logarithmic), y: ChartAxis(label: "y", scale: .logarithmic)),
            series: names.map { name in
                ChartSeries(name: name, lines: [
                    ChartLine(name: "p99", dash: .solid, points: [ChartPoint(x: 1000, y: 2), ChartPoint(x: 2000, y: 4)]),
                    ChartLine(name: "p50", dash: .dashed, points: [ChartPoint(x: 1000, y: 1), ChartPoint(x: 2000, y: 2)]),
                ])
            })
    }

    /// Thousands of targets: the first twelve drawn (known targets first), the rest counted in the chart.
    @Test func manyTargetsAreCappedAndCounted() throws {
        let names = (0..<3000).map { "target-\($0)" } + ["tandem-memory"]
        for chart in [Self.barChart(names), Self.lineChart(names)] {
            let outline = try SVGOutline(chart.svg)
            #expect(outline.series.count == Chart.mostSeries)
            #expect(outline.series.first == "tandem-memory")
            #expect(outline.texts.contains("+2989 more targets not drawn"))
        }
        let bars = try SVGOutline(Self.barChart(names).svg)
        #expect(bars.bars == Chart.mostSeries)
        // Twelve or fewer: no count.
        let few = try SVGOutline(Self.lineChart(Array(names.prefix(12))).svg)
        #expect(few.series.count == 12 && !few.texts.contains { $0.contains("not drawn") })
        #expect(try SVGOutline(Self.barChart(Array(names.prefix(13))).svg).texts.contains("+1 more target not drawn"))
    }

    /// Every legend row fits in the chart, the count and the dashes' rows included.
    @Test func theLegendFitsAboveTheFootnote() throws {
        let svg = Self.lineChart((0..<40).map { "target-\($0)" }).svg
        let rows = svg.split(separator: "\n").drop { !$0.contains(#"class="legend""#) }.prefix { !$0.contains("</g>") }
        let ys = rows.compactMap { row -> Double? in
            guard row.contains("<text"), let range = row.range(of: #" y=""#) else { return nil }
            return Double(row[range.upperBound...].prefix { $0 != "\"" })
        }
        #expect(ys.count == Chart.mostSeries + 3)  // the series, the count, p99 and p50
        #expect(ys.allSatisfy { $0 < 470 - 82 })
    }

    /// Unknown targets: a style picked by a hash of the name, the same every time, never a known target's.
    @Test func unknownTargetsGetAStableStyleOfTheirOwn() {
        let known = SeriesStyle.order.map(SeriesStyle.of)
        let unknown = (0..<40).map { SeriesStyle.of("nginx-variant-\($0)") }
        #expect(unknown == (0..<40).map { SeriesStyle.of("nginx-variant-\($0)") })
        #expect(unknown.allSatisfy { style in !known.contains { $0.colour == style.colour || $0.marker == style.marker } })
        #expect(Set(unknown.map { "\($0.colour) \($0.marker)" }).count >= 8)
        #expect(Set(SeriesStyle.fallback.map(\.colour)).isDisjoint(with: known.map(\.colour) + ["#C00000"]))
        // FNV-1a, not `hashValue`: the same in every process (this value is fixed).
        #expect(SeriesStyle.of("tandem-memory churn 5") == SeriesStyle(colour: "#44AA99", marker: .triangleDown))
    }

    /// A long name ends in `…` where the legend or a bar's band ends; its series' title and data-series keep it whole.
    @Test func longNamesAreCutWithAnEllipsisAndKeptWhole() throws {
        let long = "nchan-memory-with-a-very-long-variant-name churn 3"
        let outline = try SVGOutline(Self.lineChart([long, "tandem-memory"]).svg)
        #expect(outline.series.contains(long))
        let shown = try #require(outline.texts.first { $0.hasPrefix("nchan-memory-with") })
        #expect(shown.hasSuffix("…") && shown.count < long.count)
        let legendRoom: Double = 800 - 6 - (800 - 200 - 10 + 18 + 34)
        #expect(TextWidth.estimate(shown, fontSize: 12) <= legendRoom)
        #expect(Self.lineChart([long]).svg.contains("<title>\(long)</title>"))
        // The committed charts' names fit whole.
        #expect(TextWidth.fitted("nchan-memory churn 3", width: 150, fontSize: 12) == "nchan-memory churn 3")
        let bars = try SVGOutline(Self.barChart((0..<12).map { "\(long)-\($0) x" }).svg)
        #expect(bars.texts.filter { $0.hasPrefix("nchan-memory") }.allSatisfy { $0.hasSuffix("…") })
    }

    /// `--date` fills in a date the machine line does not record, cut like the machine's text when long.
    @Test func aLongDateIsCut() throws {
        var run = RecordedRun()
        run.read(#"{"scenario":"flow","target":"tandem-memory","flows_per_s":100.0}"#, source: "test")
        run.date = String(repeating: "x", count: 500)
        let subtitle = try #require(RunCharts(run).charts.first).chart.subtitle
        #expect(subtitle.hasSuffix(" · " + String(repeating: "x", count: RunCharts.longestDate) + "…"))
    }
}

/// Where the charts go and what they are read from: plain refusals, no file removed, no FIFO opened.
@Suite struct ChartFilesTests {
    static func temporaryFolder() throws -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("chart-files-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        return folder
    }

    @Test func aFolderThatCannotTakeTheChartsIsRefusedInPlainWords() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let file = folder + "/a-file"
        _ = FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        #expect(ChartFolder.problem(file, create: false) == "is a file, not a folder")
        #expect(ChartFolder.problem(file + "/", create: true) == "is a file, not a folder")
        #expect(ChartFolder.problem(file + "/charts", create: false) == "cannot be created (\(file) is a file, not a folder)")
        #expect(ChartFolder.problem(folder, create: false) == nil)
        // Looking makes nothing; making makes the parents too.
        #expect(ChartFolder.problem(folder + "/new/charts", create: false) == nil)
        #expect(!FileManager.default.fileExists(atPath: folder + "/new"))
        #expect(ChartFolder.problem(folder + "/new/charts", create: true) == nil)
        var isFolder: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: folder + "/new/charts", isDirectory: &isFolder) && isFolder.boolValue)
        // (As root, as the tests run here, no folder is closed: the reasons are checked as words.)
        #expect(PlainError.reason(EACCES) == "permission denied" && PlainError.reason(ENOENT) == "no such parent folder")
        #expect(PlainError.reason(EROFS) == "read-only file system")
    }

    @Test(.timeLimit(.minutes(1))) func theCommandsRefuseAFileAsTheirFolderWithoutAFoundationDump() async throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let file = folder + "/a-file"
        _ = FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        let charts = try await BinaryRun.run(["charts", ChartTests.recordedRun, "--out", file])
        #expect(charts.status != 0 && charts.errors.contains("--out \(file): is a file, not a folder"), "\(charts.errors)")
        let nested = try await BinaryRun.run(["charts", ChartTests.recordedRun, "--out", file + "/charts"])
        #expect(nested.status != 0 && nested.errors.contains("--out \(file)/charts: cannot be created (\(file) is a file, not a folder)"))
        for errors in [charts.errors, nested.errors] { #expect(!errors.contains("Error Domain") && !errors.contains("NSCocoaErrorDomain")) }
        #expect(FileManager.default.contents(atPath: file) == Data("x".utf8))
        // A scenario's --charts is refused before anything runs.
        let message = CommandLineTests.expectRefusal(["smoke", "--charts", file])
        #expect(message.contains("--charts \(file): is a file, not a folder"), "\(message)")
        _ = try TandemBench.parseAsRoot(["smoke", "--charts", file, "--no-charts"])  // no charts: no folder to check
    }

    @Test(.timeLimit(.minutes(1))) func onlyRegularFilesOfAtMostTheLimitAreRead() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        func refusal(_ path: String, limit: Int = TandemBench.Charts.largestFile) -> String {
            do {
                _ = try RecordedFile.contents(of: path, limit: limit)
                return "read"
            } catch { return "\(error)" }
        }
        #expect(refusal(folder + "/missing.jsonl") == "\(folder)/missing.jsonl: no such file")
        #expect(refusal(folder) == "\(folder): is a directory, not a file")
        #expect(refusal("/dev/zero") == "/dev/zero: not a regular file")
        // A FIFO with no writer: refused before it is opened (opening it to read would block).
        let fifo = folder + "/lines.fifo"
        try #require(mkfifo(fifo, 0o600) == 0)
        #expect(refusal(fifo) == "\(fifo): not a regular file")
        // Too large: refused from its size alone (a sparse file, never read).
        let large = folder + "/large.jsonl"
        _ = FileManager.default.createFile(atPath: large, contents: nil)
        try #require(truncate(large, off_t(TandemBench.Charts.largestFile + 1)) == 0)
        #expect(refusal(large) == "\(large): \(TandemBench.Charts.largestFile + 1) bytes, more than a run's JSON lines (at most \(TandemBench.Charts.largestFile) bytes)")
        let small = folder + "/small.jsonl"
        _ = FileManager.default.createFile(atPath: small, contents: Data("0123456789".utf8))
        #expect(refusal(small, limit: 9).hasSuffix("10 bytes, more than a run's JSON lines (at most 9 bytes)"))
        #expect(try RecordedFile.contents(of: small, limit: 10) == Data("0123456789".utf8))
        // Through a symbolic link: the file it names.
        try FileManager.default.createSymbolicLink(atPath: folder + "/link.jsonl", withDestinationPath: small)
        #expect(try RecordedFile.contents(of: folder + "/link.jsonl", limit: 10) == Data("0123456789".utf8))
    }

    @Test(.timeLimit(.minutes(1))) func theChartsCommandNamesWhatItCannotRead() async throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let fifo = folder + "/lines.fifo"
        try #require(mkfifo(fifo, 0o600) == 0)
        for (file, reason) in [(fifo, "not a regular file"), (folder, "is a directory, not a file"), ("/dev/zero", "not a regular file")] {
            let result = try await BinaryRun.run(["charts", file, "--out", folder + "/charts"])
            #expect(result.status != 0 && result.errors.contains("\(file): \(reason)"), "\(result.errors)")
        }
    }

    /// `--date` applies only where the machine line records no date, as its help says; otherwise a note says why not.
    @Test(.timeLimit(.minutes(1))) func dateFillsInOnlyAMissingDate() async throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let dated = folder + "/dated.jsonl"
        let lines = #"{"scenario":"machine","cores":2,"date":"2026-11-28T12:45:03Z"}"# + "\n"
            + #"{"scenario":"flow","target":"tandem-memory","flows_per_s":100.0}"# + "\n"
        _ = FileManager.default.createFile(atPath: dated, contents: Data(lines.utf8))
        let result = try await BinaryRun.run(["charts", dated, "--out", folder + "/charts", "--date", "yesterday"])
        #expect(result.status == 0, "\(result.errors)")
        let title = try SVGOutline(String(contentsOfFile: folder + "/charts/flows-per-second.svg", encoding: .utf8)).title
        #expect(title.contains("2026-11-28 12:45 UTC") && !title.contains("yesterday"))
        #expect(result.errors.contains("--date yesterday not used: the machine line records the run's date, 2026-11-28T12:45:03Z"))
        #expect(TandemBench.Charts.helpMessage(columns: 1000).contains("used only when its machine line records none"))
    }
}

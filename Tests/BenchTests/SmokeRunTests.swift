import Foundation
import HTTP
import JSON
import Testing

@testable import Bench

/// The built `tandem-bench smoke` against the debug `tandem`: stdout is JSON lines and nothing else, progress goes
/// to stderr (plain lines, stderr being a pipe here), and the run's charts are written where `--charts` says.
@Suite struct SmokeRunTests {
    @Test(.timeLimit(.minutes(2))) func smokePrintsProgressOnStderrAndOnlyJSONOnStdout() async throws {
        let tandem = FileManager.default.currentDirectoryPath + "/.build/debug/tandem"
        try #require(FileManager.default.isExecutableFile(atPath: tandem), "build it first: swift build --product tandem")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("smoke-charts-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }

        let result = try await BinaryRun.run(["smoke", "--tandem", tandem, "--charts", folder])
        #expect(result.status == 0, "\(result.errors)")
        let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(lines.count >= 4)  // machine, hold, flow, fanout
        for line in lines {
            let value = JSONValue(parsing: Array(line.utf8))
            guard case .object = value else {
                Issue.record("not a JSON object on stdout: \(line)")
                continue
            }
        }
        #expect(result.output.hasSuffix("\n"))
        // The machine line says how fast the machine ran a fixed piece of work, to compare runs of different days by.
        let machine = JSONValue(parsing: Array((lines.first ?? "").utf8))
        if case .object(let fields) = machine, let calibration = Self.number(fields["calibration_ms"]) {
            #expect(calibration > 0 && calibration < 60_000)
        } else {
            Issue.record("no calibration_ms on the machine line: \(lines.first ?? "")")
        }
        for (index, scenario) in ["hold", "flow", "fanout"].enumerated() {
            #expect(result.errors.contains("# progress: [\(index + 1)/3] \(scenario) tandem-memory: "), "\(result.errors)")
        }
        #expect(result.errors.contains(" elapsed (run ") && result.errors.contains(" left in this scenario\n"))
        #expect(result.errors.contains("# run finished in "))
        #expect(!result.errors.contains("\r"))  // not a terminal: no in-place rewriting
        for chart in ["rss-per-stream.svg", "flows-per-second.svg", "fanout-latency.svg", "cpu-per-event.svg"] {
            let svg = try String(contentsOfFile: folder + "/" + chart, encoding: .utf8)
            #expect(try SVGOutline(svg).series == ["tandem-memory"])
        }
    }

    static func number(_ value: JSONValue?) -> Double? {
        switch value {
        case .number(let number): number
        case .integer(let integer): Double(integer)
        default: nil
        }
    }

    @Test(.timeLimit(.minutes(2))) func quietPrintsNoProgress() async throws {
        let tandem = FileManager.default.currentDirectoryPath + "/.build/debug/tandem"
        try #require(FileManager.default.isExecutableFile(atPath: tandem))
        let result = try await BinaryRun.run(["smoke", "--tandem", tandem, "--quiet", "--no-charts"])
        #expect(result.status == 0, "\(result.errors)")
        #expect(!result.errors.contains("# progress:") && !result.errors.contains("# charts of this run"))
    }
}

/// The built `tandem-bench`, run to its end on a thread of its own: waiting on a pipe must not hold one of Swift
/// concurrency's few pool threads (two on this machine) for the seconds a run takes.
enum BinaryRun {
    struct Outcome: Sendable {
        var status: Int32
        var output: String
        var errors: String
    }

    static func run(_ arguments: [String]) async throws -> Outcome {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try runBlocking(arguments) })
            }
            thread.start()
        }
    }

    private static func runBlocking(_ arguments: [String]) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: FileManager.default.currentDirectoryPath + "/.build/debug/tandem-bench")
        process.arguments = arguments
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        // stderr is read on another thread, so neither pipe fills up while the other is being read.
        let errorData = ErrorCollector(errors.fileHandleForReading)
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(
            status: process.terminationStatus, output: String(decoding: outputData, as: UTF8.self),
            errors: String(decoding: errorData.wait(), as: UTF8.self))
    }
}

/// Reads a pipe to its end on a thread of its own.
private final class ErrorCollector: @unchecked Sendable {
    // Safe: `data` is written once by the reading thread before it signals, and read only after `wait()` returns.
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }.start()
    }

    func wait() -> Data {
        done.wait()
        return data
    }
}

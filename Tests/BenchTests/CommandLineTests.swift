import ArgumentParser
import Foundation
import Testing

@testable import Bench

/// `tandem-bench`'s command line, parsed in process: no server is started. A flag the docs or scripts use must keep
/// parsing to the same value; a flag or value that would be ignored or misread must be refused.
@Suite struct CommandLineTests {
    /// An executable file, for `--tandem` (its path is checked when parsed).
    static let executable = "/bin/sh"

    static func parse<Command: ParsableCommand>(_ arguments: [String], as: Command.Type) throws -> Command {
        let command = try TandemBench.parseAsRoot(arguments)
        return try #require(command as? Command)
    }

    // MARK: the calls in BENCHMARKS.md, README.md and scripts/test.sh

    @Test func documentedHoldCalls() throws {
        let hundredK = try Self.parse(["hold", "--target", "tandem-redis", "--nodes", "6", "--streams", "100000", "--duration", "20"], as: TandemBench.Hold.self)
        #expect(hundredK.target == [.tandemRedis])
        #expect(hundredK.nodes == 6)
        #expect(hundredK.streams == 100000)
        #expect(hundredK.duration == 20)
        let two = try Self.parse(["hold", "--target", "tandem-memory,tandem-redis"], as: TandemBench.Hold.self)
        #expect(two.target == [.tandemMemory, .tandemRedis])
        let short = try Self.parse(["hold", "--target", "tandem-memory", "--streams", "19000", "--duration", "8"], as: TandemBench.Hold.self)
        #expect(short.duration == 8)
    }

    /// The cluster is named, never a default: six Redis processes would skew the default comparisons.
    @Test func theClusterTargetIsAskedForByName() throws {
        let cluster = try Self.parse(
            ["hold", "--target", "tandem-cluster", "--nodes", "6", "--streams", "100000", "--duration", "20"], as: TandemBench.Hold.self)
        #expect(cluster.target == [.tandemCluster] && cluster.nodes == 6)
        let both = try Self.parse(["flow", "--target", "tandem-cluster,tandem-redis"], as: TandemBench.Flow.self)
        #expect(both.target == [.tandemCluster, .tandemRedis])
        #expect(!TargetKind.defaults.contains(.tandemCluster))
        #expect(Set(TargetKind.defaults).union([.tandemCluster]) == Set(TargetKind.allCases))
        #expect(TargetKind.tandemCluster.flavor == .tandem)
    }

    @Test func documentedFlowCalls() throws {
        let flow = try Self.parse(
            ["flow", "--target", "tandem-redis", "--tandem", Self.executable, "--duration", "8", "--event-loops", "2"], as: TandemBench.Flow.self)
        #expect(flow.target == [.tandemRedis])
        #expect(flow.client.tandem == Self.executable)
        #expect(flow.duration == 8)
        #expect(flow.client.eventLoops == 2)
    }

    @Test func documentedFanoutAndKneeCalls() throws {
        let fanout = try Self.parse(
            ["fanout", "--target", "tandem-memory,nchan-memory", "--nchan-churn", "3", "--rate", "1000", "--duration", "8", "--streams", "1000"],
            as: TandemBench.Fanout.self)
        #expect(fanout.target == [.tandemMemory, .nchanMemory])
        #expect(fanout.nchanChurn == 3)
        #expect(fanout.rate == 1000)
        #expect(fanout.duration == 8)
        let knee = try Self.parse(["knee", "--target", "tandem-memory", "--rates", "1000,2000,4000,8000"], as: TandemBench.Knee.self)
        #expect(knee.rates == [1000, 2000, 4000, 8000])
        let nchan = try Self.parse(["knee", "--target", "nchan-memory", "--nchan-churn", "3"], as: TandemBench.Knee.self)
        #expect(nchan.nchanChurn == 3)
        // The floor's knee against nchan's (BENCHMARKS.md, the floor): both in Tandem's shape, a finer grid, short steps.
        let floor = try Self.parse(
            ["knee", "--target", "tandem-memory,nchan-memory", "--nchan-churn", "3", "--rates", "2000,3000,4000,5000,6000,7000,8000,10000,12000",
             "--duration", "5", "--tandem", Self.executable],
            as: TandemBench.Knee.self)
        #expect(floor.target == [.tandemMemory, .nchanMemory] && floor.nchanChurn == 3 && floor.duration == 5)
        #expect(floor.rates == [2000, 3000, 4000, 5000, 6000, 7000, 8000, 10000, 12000])
    }

    @Test func documentedAllAndSmokeCalls() throws {
        let all = try Self.parse(["all"], as: TandemBench.All.self)
        #expect(all.target == nil)
        let memory = try Self.parse(["all", "--target", "tandem-memory"], as: TandemBench.All.self)
        #expect(memory.target == [.tandemMemory])
        let smoke = try Self.parse(["smoke", "--tandem", Self.executable], as: TandemBench.Smoke.self)
        #expect(smoke.client.tandem == Self.executable)
    }

    // MARK: defaults, as the hand parser had them

    @Test func defaults() throws {
        let hold = try Self.parse(["hold"], as: TandemBench.Hold.self)
        #expect(hold.target == nil && hold.streams == 19000 && hold.nodes == 2 && hold.duration == 20 && hold.workers.perWorker == 15000)
        #expect(hold.client.tandem == nil && hold.client.threads == 2 && hold.client.pool == 32 && hold.client.sources == 16)
        #expect(hold.client.heartbeat == 5 && hold.client.eventLoops == 1)
        let flow = try Self.parse(["flow"], as: TandemBench.Flow.self)
        #expect(flow.target == nil && flow.flows == 1000 && flow.duration == 10)
        let fanout = try Self.parse(["fanout"], as: TandemBench.Fanout.self)
        #expect(fanout.streams == 1000 && fanout.rate == 1000 && fanout.duration == 10 && fanout.nchanChurn == 0)
        let knee = try Self.parse(["knee"], as: TandemBench.Knee.self)
        #expect(knee.streams == 1000 && knee.rates == nil && knee.duration == 5 && knee.nchanChurn == 0)
        #expect(TandemBench.Knee.defaultRates == [1000, 2000, 3000, 4000, 6000, 8000, 10000, 12000, 16000, 20000, 24000, 32000, 40000, 48000, 64000])
        let all = try Self.parse(["all"], as: TandemBench.All.self)
        #expect(all.streams == 19000 && all.holdDuration == 20 && all.flows == 1000 && all.duration == 10 && all.rate == 1000)
        #expect(all.rates == nil && all.kneeDuration == 5 && all.workers.perWorker == 15000)
    }

    @Test func everySharedFlagParses() throws {
        let hold = try Self.parse(
            ["hold", "--threads", "3", "--pool", "8", "--sources", "250", "--heartbeat", "1", "--event-loops", "0", "--per-worker", "100"],
            as: TandemBench.Hold.self)
        #expect(hold.client.threads == 3 && hold.client.pool == 8 && hold.client.sources == 250)
        #expect(hold.client.heartbeat == 1 && hold.client.eventLoops == 0 && hold.workers.perWorker == 100)
        let all = try Self.parse(["all", "--hold-duration", "2", "--knee-duration", "1.5", "--flows", "10", "--rates", "500"], as: TandemBench.All.self)
        #expect(all.holdDuration == 2 && all.kneeDuration == 1.5 && all.flows == 10 && all.rates == [500])
    }

    /// Every scenario takes the output flags; charts go to bench-charts/ unless told otherwise.
    @Test func outputFlags() throws {
        let smoke = try Self.parse(["smoke"], as: TandemBench.Smoke.self)
        #expect(smoke.output.chartsDirectory == "bench-charts" && !smoke.output.quiet)
        let knee = try Self.parse(["knee", "--charts", "/tmp/knee-charts", "--quiet"], as: TandemBench.Knee.self)
        #expect(knee.output.chartsDirectory == "/tmp/knee-charts" && knee.output.quiet)
        let all = try Self.parse(["all", "--no-charts"], as: TandemBench.All.self)
        #expect(all.output.chartsDirectory == nil)
        for scenario in ["hold", "flow", "fanout"] { _ = try TandemBench.parseAsRoot([scenario, "--charts", "x", "--quiet"]) }
        let charts = try Self.parse(["charts", "a.jsonl", "b.jsonl", "--out", "docs/charts", "--date", "2026-11-26"], as: TandemBench.Charts.self)
        #expect(charts.files == ["a.jsonl", "b.jsonl"] && charts.out == "docs/charts" && charts.date == "2026-11-26")
        #expect(try Self.parse(["charts", "a.jsonl"], as: TandemBench.Charts.self).out == "bench-charts")
    }

    /// Hold's workers are started with a command line of hold's own making: it must parse back to what was meant.
    @Test func workerArgumentsRoundTrip() throws {
        let arguments = TandemBench.Worker.arguments(
            flavor: .nchan, port: 8123, streams: 7500, duration: 20, sourceOffset: 32, sources: 16, threads: 2, go: "/tmp/go-x")
        let worker = try Self.parse(arguments, as: TandemBench.Worker.self)
        #expect(worker.flavor == .nchan && worker.port == 8123 && worker.streams == 7500 && worker.duration == 20)
        #expect(worker.sourceOffset == 32 && worker.sources == 16 && worker.threads == 2 && worker.go == "/tmp/go-x")
        #expect(worker.establishTimeout == 90)
    }

    // MARK: refusals

    @Test(arguments: [
        ["hold", "--stream", "5"],  // misspelled
        ["hold", "--rate", "5"],  // another scenario's flag
        ["smoke", "--streams", "5"],
        ["flow", "--nchan-churn", "3"],
        ["all", "--nchan-churn", "3"],
        ["fanout", "--nodes", "4"],
        ["hold", "extra"],
        ["bogus"],
        ["hold", "--streams"],  // no value
        ["hold", "--streams", "-5"],
    ])
    func unknownOrMisplacedArgumentsAreRefused(_ arguments: [String]) {
        Self.expectRefusal(arguments)
    }

    @Test(arguments: [
        (["hold", "--streams", "x"], "--streams"),
        (["hold", "--streams", "1e3"], "--streams"),
        (["hold", "--streams", "0"], "--streams"),
        (["hold", "--streams=-5"], "--streams"),
        (["hold", "--nodes", "1"], "--nodes"),
        (["hold", "--duration", "0"], "--duration"),
        (["hold", "--duration", "nan"], "--duration"),
        (["hold", "--duration", "inf"], "--duration"),
        (["hold", "--duration", "ten"], "--duration"),
        (["hold", "--per-worker", "0"], "--per-worker"),
        (["hold", "--threads", "0"], "--threads"),
        (["fanout", "--pool", "0"], "--pool"),
        (["fanout", "--sources", "0"], "--sources"),
        (["fanout", "--sources", "251"], "--sources"),
        (["fanout", "--heartbeat", "0"], "--heartbeat"),
        (["fanout", "--event-loops=-1"], "--event-loops"),
        (["fanout", "--rate", "0"], "--rate"),
        (["fanout", "--nchan-churn=-1"], "--nchan-churn"),
        (["fanout", "--target", "tandem-memory,nchan"], "--target"),
        (["fanout", "--target", ""], "--target"),
        (["fanout", "--target", "tandem-memory,"], "--target"),
        (["flow", "--target", "nchan-memory"], "nchan-memory"),
        (["flow", "--flows", "0"], "--flows"),
        (["knee", "--rates", "1000,x"], "--rates"),
        (["knee", "--rates", "1000,,2000"], "--rates"),
        (["knee", "--rates", "1000,-5"], "--rates"),
        (["knee", "--rates", ""], "--rates"),
        (["all", "--hold-duration", "0"], "--hold-duration"),
        (["all", "--knee-duration", "-1"], "--knee-duration"),
        (["smoke", "--tandem", "/nonexistent/tandem"], "--tandem"),
        (["charts"], "file"),
        (["charts", "a.jsonl", "--out", ""], "--out"),
        (["smoke", "--charts", ""], "--charts"),
        (["charts", "a.jsonl", "--quiet"], "--quiet"),
        (["worker", "--go", "/tmp/go"], "--port"),  // required
        (["worker", "--port", "8080"], "--go"),  // required
        (["worker", "--port", "0", "--go", "/tmp/go"], "--port"),
        (["worker", "--port", "8080", "--go", "/tmp/go", "--flavor", "nginx"], "--flavor"),
    ])
    func badValuesAreRefusedNamingTheFlag(_ arguments: [String], _ flag: String) {
        let message = Self.expectRefusal(arguments)
        #expect(message.contains(flag), "\(arguments): \(message)")
    }

    /// Parses `arguments`, expects a refusal with a non-zero exit status, and returns its message.
    @discardableResult
    static func expectRefusal(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) -> String {
        do {
            let command = try TandemBench.parseAsRoot(arguments)
            Issue.record("\(arguments) parsed as \(command)", sourceLocation: sourceLocation)
            return ""
        } catch {
            #expect(TandemBench.exitCode(for: error) != .success, "\(arguments)", sourceLocation: sourceLocation)
            let message = TandemBench.message(for: error)
            #expect(!message.isEmpty, "\(arguments)", sourceLocation: sourceLocation)
            return message
        }
    }

    /// The built binary: no scenario prints the help with status 2, as before; a refusal goes to stderr, status 64.
    @Test func theBinaryExitsNonZeroOnMistakes() async throws {
        let none = try await BinaryRun.run([])
        #expect(none.status == 2)
        #expect(none.output.contains("SUBCOMMANDS"))
        let misspelled = try await BinaryRun.run(["hold", "--stream", "5"])
        #expect(misspelled.status == 64)
        #expect(misspelled.errors.contains("Unknown option '--stream'"))
        #expect(misspelled.output.isEmpty)  // nothing started, not even the machine line
    }
}

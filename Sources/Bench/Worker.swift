import ArgumentParser
import Foundation

#if canImport(Glibc)
import Glibc
#endif

extension TandemBench {
    /// One of hold's client processes, started by hold itself above `--per-worker` streams: it opens its streams,
    /// prints READY, waits for the go file, holds them for the window and prints one RESULT line that hold adds up.
    struct Worker: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One of hold's client processes (hold starts these itself).", shouldDisplay: false)

        @Option(help: "tandem or nchan.") var flavor: Flavor = .tandem
        @Option(help: "The node's port the streams open on.") var port: Int
        @Option(help: "Streams to hold (0 when hold has more workers than streams).") var streams = 0
        @Option(help: ArgumentHelp("Seconds the streams are held.", valueName: "seconds")) var duration = 20.0
        @Option(help: "Index of this worker's first source address.") var sourceOffset = 0
        @Option(help: "Client source addresses.") var sources = 16
        @Option(help: "Client event loops.") var threads = 2
        @Option(help: ArgumentHelp("Seconds to wait for every stream to open.", valueName: "seconds")) var establishTimeout = 90.0
        @Option(help: ArgumentHelp("The file whose creation starts the window.", valueName: "path")) var go: String

        /// The command line hold starts a worker with.
        static func arguments(
            flavor: Flavor, port: Int, streams: Int, duration: Double, sourceOffset: Int, sources: Int, threads: Int, go: String
        ) -> [String] {
            [
                "worker", "--flavor", flavor.rawValue, "--port", String(port), "--streams", String(streams),
                "--duration", String(duration), "--source-offset", String(sourceOffset), "--sources", String(sources),
                "--threads", String(threads), "--go", go,
            ]
        }

        func validate() throws {
            try Check.within(1...65535, port, "--port")
            try Check.atLeast(0, streams, "--streams")
            try Check.positive(duration, "--duration")
            try Check.atLeast(0, sourceOffset, "--source-offset")
            try Check.within(1...ClientOptions.maximumSources, sources, "--sources")
            try Check.atLeast(1, threads, "--threads")
            try Check.positive(establishTimeout, "--establish-timeout")
        }

        func run() throws {
            let plan = RunPlan(
                mode: .hold, flavor: flavor, streamPorts: [port], publishPort: port, slots: streams,
                window: duration, threads: threads, pool: 0, sources: sources,
                sourceOffset: sourceOffset, establishTimeout: establishTimeout)
            do {
                let outcome = try runInProcess(plan, established: {}, windowEnded: {}, waitForGo: {
                    print("READY")
                    fflush(nil)
                    let deadline = Date().addingTimeInterval(180)
                    while !FileManager.default.fileExists(atPath: go), Date() < deadline { usleep(20_000) }
                })
                let r = outcome.result
                let statuses = r.statuses.map { "\($0.key):\($0.value)" }.joined(separator: ",")
                print("RESULT \(r.established) \(r.openAtEnd) \(r.failedOpens) \(r.dropped) \(r.heartbeats) \(outcome.clientCPU) \(outcome.establishSeconds) \(statuses.isEmpty ? "-" : statuses)")
                fflush(nil)
            } catch {
                print("ERROR \(error)")
                throw ExitCode(1)
            }
        }
    }
}

import ArgumentParser
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One run of the bench: the client's settings, the processes it started, and what it found. The scenarios are its
/// methods; a command runs them inside ``BenchRun/execute(_:perWorker:_:)``, which prints the `machine` line first
/// and the `ratios` line last, stops every server, and ends with status 1 if any scenario failed.
final class BenchRun {
    let settings: ClientOptions
    /// The tandem binary every Tandem target runs.
    let tandem: String
    let package: String
    let launcher: Launcher
    /// Streams per client process before hold re-execs itself as workers.
    let perWorker: Int
    /// Counters that make a scenario a failure (for smoke and the exit status).
    var failures: [String] = []
    var comparisons = Comparisons()
    /// Every JSON line printed so far, for the charts drawn when the run ends.
    private var printed: [String] = []
    let progress: ProgressReporter

    var threads: Int { settings.threads }
    var poolSize: Int { settings.pool }
    var sourceCount: Int { settings.sources }
    var heartbeat: Int { settings.heartbeat }
    /// One event loop per Tandem node, as nginx gets one worker: client, servers and Redis share two cores, and a
    /// second loop there costs more in thread switches than it adds (see BENCHMARKS.md).
    var eventLoops: Int { settings.eventLoops }

    private init(settings: ClientOptions, tandem: String, package: String, launcher: Launcher, perWorker: Int, progress: ProgressReporter) {
        self.settings = settings
        self.progress = progress
        self.tandem = tandem
        self.package = package
        self.launcher = launcher
        self.perWorker = perWorker
    }

    /// Sets up a run (a temporary folder, the tandem binary, the stop on SIGINT/SIGTERM), prints the `machine` line,
    /// runs `scenarios`, then stops everything, prints the `ratios` line and writes the charts (``OutputOptions``);
    /// throws `ExitCode(1)` after any failure.
    static func execute(
        _ settings: ClientOptions, output: OutputOptions, perWorker: Int = HoldWorkerOptions.defaultPerWorker, _ scenarios: (BenchRun) throws -> Void
    ) throws {
        let launcher: Launcher
        do { launcher = try Launcher() } catch {
            print("\(error)", to: &standardError)
            throw ExitCode(1)
        }

        // Stop what was started on SIGINT/SIGTERM, too.
        let signalSources: [any DispatchSourceSignal] = [SIGINT, SIGTERM].map { signalNumber in
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                launcher.stopAll()
                exit(130)
            }
            source.resume()
            return source
        }

        let package = packageDirectory()
        let tandem: String
        do { tandem = try tandemBinary(settings.tandem, package: package) } catch {
            print("\(error)", to: &standardError)
            throw ExitCode(1)
        }
        let progress = ProgressReporter(quiet: output.quiet)
        let run = BenchRun(settings: settings, tandem: tandem, package: package, launcher: launcher, perWorker: perWorker, progress: progress)
        run.report(run.machineLine())
        let ticker = progress.startTicking()
        try withExtendedLifetime(signalSources) { try scenarios(run) }
        ticker?.cancel()

        launcher.stopAll()
        if let ratios = run.comparisons.line() { run.report(ratios) }
        progress.finish()
        if let directory = output.chartsDirectory { run.writeCharts(to: directory) }
        guard run.failures.isEmpty else {
            for failure in run.failures { print("# FAIL \(failure)", to: &standardError) }
            print("# logs kept in \(launcher.directory)", to: &standardError)
            throw ExitCode(1)
        }
        launcher.removeDirectory()
    }

    /// Prints `line` on stdout and keeps it for the charts.
    func report(_ line: JSONLine) {
        let text = line.text
        printed.append(text)
        print(text)
        fflush(nil)
    }

    /// The charts of the lines printed so far, into `directory`; a failure to write them is said, not fatal (the
    /// JSON lines, the run's record, are already out).
    private func writeCharts(to directory: String) {
        var recorded = RecordedRun()
        recorded.read(printed.joined(separator: "\n"), source: "this run")
        do {
            let (written, notes) = try RunCharts(recorded).write(to: directory, flag: "--charts")
            if !written.isEmpty { print("# charts of this run: \(written.joined(separator: ", "))", to: &standardError) }
            for note in notes { print(note, to: &standardError) }
        } catch {
            print("# charts not written: \(error)", to: &standardError)
        }
    }

    private func machineLine() -> JSONLine {
        var machine = JSONLine()
        machine.add("scenario", "machine")
        machine.add("cores", ProcessInfo.processInfo.activeProcessorCount)
        machine.add("memory_gib", Double(ProcessInfo.processInfo.physicalMemory) / 1073741824, digits: 1)
        machine.add("client_threads", threads)
        machine.add("pool_per_thread", poolSize)
        machine.add("source_addresses", sourceCount)
        machine.add("heartbeat_s", heartbeat)
        machine.add("tandem_event_loops", eventLoops)
        machine.add("load_average_1m", (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first.map(String.init) ?? "?")
        // How fast the machine is today: two days' runs compare through it (see `calibrationMilliseconds`).
        machine.add("calibration_ms", MachineDescription.calibrationMilliseconds(), digits: 1)
        // For the charts' titles: the machine and the moment they show.
        machine.add("cpu", MachineDescription.processorModel)
        machine.add("os", MachineDescription.operatingSystem)
        machine.add("date", MachineDescription.now)
        return machine
    }

    /// Starts `kind`, runs `body` on it and stops it; a failure is recorded and the run goes on with the next target.
    func withTarget(_ kind: TargetKind, nodes: Int = 2, heartbeatSeconds: Int? = nil, _ body: (RunningTarget) throws -> Void) {
        do {
            let options = TargetOptions(
                tandemPath: tandem, heartbeatSeconds: heartbeatSeconds ?? heartbeat, nodes: nodes, packageDirectory: package, eventLoops: eventLoops)
            let target = try startTarget(kind, options: options, launcher: launcher)
            progress.note("# \(kind.rawValue): \(target.notes); logs in \(launcher.directory)")
            defer { launcher.stopAll() }
            try body(target)
        } catch {
            failures.append("\(kind.rawValue): \(error)")
            progress.note("# \(kind.rawValue) failed: \(error)")
            launcher.stopAll()
        }
    }

    // MARK: measuring

    func serverCPU(_ target: RunningTarget) -> Double { target.allPIDs.reduce(0) { $0 + cpuSeconds($1) } }

    func streamRSS(_ target: RunningTarget) -> Int { target.streamPIDs.reduce(0) { $0 + rssKiB($1) } }

    /// Runs `plan` and also measures the server's CPU (every process of the target: Tandem's nodes and Redis, or
    /// nginx's and Redis) over the window alone, without the opening of the streams before it and the drain after it:
    /// the figure divided by the window's work is the server's cost per event or per flow (less tied to the client's
    /// share of the cores than a rate, though still to the batching a rate allows).
    func runMeasuringWindow(_ plan: RunPlan, on target: RunningTarget) throws -> (outcome: RunOutcome, windowCPU: Double) {
        try runMeasuringWindowByMaster(plan, on: target).0
    }

    /// The same, and each Redis Cluster master's CPU over the window (in `target.redisMasters`' order).
    func runMeasuringWindowByMaster(_ plan: RunPlan, on target: RunningTarget) throws -> ((outcome: RunOutcome, windowCPU: Double), [Double]) {
        var atStart = 0.0
        var atEnd = 0.0
        var mastersAtStart: [Double] = []
        var mastersAtEnd: [Double] = []
        let outcome = try runInProcess(plan, established: {
            atStart = serverCPU(target)
            mastersAtStart = target.redisMasters.map { cpuSeconds($0.pid) }
        }, windowEnded: {
            atEnd = serverCPU(target)
            mastersAtEnd = target.redisMasters.map { cpuSeconds($0.pid) }
        })
        return ((outcome, max(0, atEnd - atStart)), zip(mastersAtEnd, mastersAtStart).map { max(0, $0 - $1) })
    }

    /// Each cluster master's CPU per event, `port:µs` comma-separated (empty off a cluster).
    func perMaster(_ target: RunningTarget, cpu: [Double], events: Int) -> String {
        zip(target.redisMasters, cpu).map { master, seconds in
            "\(master.port):" + String(format: "%.1f", microsecondsPer(seconds, events))
        }.joined(separator: ",")
    }

    // MARK: scenarios

    func hold(_ target: RunningTarget, streams: Int, duration: Double, heartbeat: Int? = nil) throws {
        let heartbeat = heartbeat ?? self.heartbeat
        let flavor = target.kind.flavor
        let rssBefore = streamRSS(target)
        let cpuBefore = serverCPU(target)
        var rssEstablished = 0
        var rssAfter = 0
        var result = ShardResult()
        var clientCPU = 0.0
        var establishSeconds = 0.0
        var processes = 1
        var probe: HandoffProbe?
        // Opening runs at a few thousand streams a second on these cores.
        progress.begin(ProgressReporter.Step(
            scenario: "hold", target: target.kind.rawValue, detail: "\(streams) streams held \(String(format: "%g", duration)) s",
            expectedSeconds: duration + Double(streams) / 5000 + 1))
        if streams <= perWorker {
            let plan = RunPlan(mode: .hold, flavor: flavor, streamPorts: target.streamPorts, publishPort: target.publishPort, slots: streams,
                               window: duration, threads: threads, pool: 0, sources: sourceCount)
            let outcome = try runInProcess(plan, established: {
                rssEstablished = streamRSS(target)
                if flavor == .tandem { probe = HandoffProbe.run(streamPort: target.streamPorts[0], publishPort: target.publishPort) }
            }, windowEnded: { rssAfter = streamRSS(target) })
            result = outcome.result
            clientCPU = outcome.clientCPU
            establishSeconds = outcome.establishSeconds
        } else {
            // Re-exec as workers: each holds its share against one node, on its own source addresses.
            let nodes = target.streamPorts.count
            var workers = (streams + perWorker - 1) / perWorker
            workers = (workers + nodes - 1) / nodes * nodes
            processes = workers
            let go = "\(launcher.directory)/go-\(UUID().uuidString)"
            var spawned: [(Process, String)] = []
            for w in 0..<workers {
                let share = streams / workers + (w < streams % workers ? 1 : 0)
                let name = "worker-\(target.kind.rawValue)-\(w)"
                let arguments = TandemBench.Worker.arguments(
                    flavor: flavor, port: target.streamPorts[w % nodes], streams: share, duration: duration,
                    sourceOffset: w * sourceCount, sources: sourceCount, threads: threads, go: go)
                let process = try launcher.spawn(name, selfExecutable(), arguments)
                spawned.append((process, launcher.logPath(name)))
            }
            let start = Date()
            func lines(_ path: String) -> [String] { ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }
            while Date().timeIntervalSince(start) < 200 {
                if spawned.allSatisfy({ lines($0.1).contains("READY") || !$0.0.isRunning }) { break }
                usleep(100_000)
            }
            establishSeconds = Date().timeIntervalSince(start)
            rssEstablished = streamRSS(target)
            _ = FileManager.default.createFile(atPath: go, contents: nil)
            let holdStarted = Date()
            if flavor == .tandem { probe = HandoffProbe.run(streamPort: target.streamPorts[0], publishPort: target.publishPort) }
            usleep(useconds_t(max(0, duration - 1 - Date().timeIntervalSince(holdStarted)) * 1e6))
            rssAfter = streamRSS(target)
            for (process, path) in spawned {
                let deadline = Date().addingTimeInterval(duration + 30)
                while process.isRunning, Date() < deadline { usleep(100_000) }
                if process.isRunning { launcher.stop(process) }
                guard let line = lines(path).first(where: { $0.hasPrefix("RESULT ") }) else {
                    failures.append("hold worker \(path) gave no result")
                    continue
                }
                let f = line.split(separator: " ").dropFirst().map(String.init)
                result.established += Int(f[0]) ?? 0
                result.openAtEnd += Int(f[1]) ?? 0
                result.failedOpens += Int(f[2]) ?? 0
                result.dropped += Int(f[3]) ?? 0
                result.heartbeats += Int(f[4]) ?? 0
                clientCPU += Double(f[5]) ?? 0
                if f.count > 7, f[7] != "-" {
                    for pair in f[7].split(separator: ",") {
                        let kv = pair.split(separator: ":")
                        if kv.count == 2, let status = Int(kv[0]), let count = Int(kv[1]) { result.statuses[status, default: 0] += count }
                    }
                }
            }
        }
        let perStream = result.established > 0 ? Double(rssEstablished - rssBefore) / Double(result.established) : .nan
        let perStreamEnd = result.openAtEnd > 0 ? Double(rssAfter - rssBefore) / Double(result.openAtEnd) : .nan
        var line = JSONLine()
        line.add("scenario", "hold")
        line.add("target", target.kind.rawValue)
        line.add("nodes", target.streamPIDs.count)
        line.add("streams", streams)
        line.add("established", result.established)
        line.add("open_at_end", result.openAtEnd)
        line.add("failed", result.failedOpens)
        line.add("dropped", result.dropped)
        line.add("hold_s", duration)
        line.add("establish_s", establishSeconds)
        line.add("heartbeats", result.heartbeats)
        line.add("heartbeats_expected_min", result.openAtEnd * Int(duration / Double(heartbeat)))
        line.add("server_rss_before_kib", rssBefore)
        line.add("server_rss_established_kib", rssEstablished)
        line.add("server_rss_after_kib", rssAfter)
        line.add("rss_per_stream_kib", perStream, digits: 2)
        line.add("rss_per_stream_end_kib", perStreamEnd, digits: 2)
        if let redis = target.redisPID { line.add("redis_rss_kib", rssKiB(redis)) }
        line.add("server_cpu_s", serverCPU(target) - cpuBefore)
        line.add("client_cpu_s", clientCPU)
        line.add("client_processes", processes)
        if let probe {
            // A full handoff made while every stream was held: the node still serves people at that load.
            line.add("handoff_completed", probe.completed)
            line.add("handoff_ms", probe.milliseconds, digits: 1)
            if !probe.completed { failures.append("hold \(target.kind.rawValue): handoff under load failed: \(probe.detail)") }
        }
        line.add("statuses", statusesLine(result.statuses))
        report(line)
        comparisons.record(.rssPerStream, target: target.kind, value: perStream)
        // nchan's shortfalls are findings, not failures of the bench; Tandem's are.
        guard target.kind.flavor == .tandem else { return }
        if result.openAtEnd < streams { failures.append("hold \(target.kind.rawValue): \(result.openAtEnd) of \(streams) streams open at the end") }
        if result.heartbeats < result.openAtEnd * Int(duration / Double(heartbeat)) { failures.append("hold \(target.kind.rawValue): too few heartbeats") }
    }

    func flow(_ target: RunningTarget, concurrency: Int, duration: Double) throws {
        progress.begin(ProgressReporter.Step(
            scenario: "flow", target: target.kind.rawValue, detail: "\(concurrency) concurrent handoffs", expectedSeconds: duration + 2))
        let cpuBefore = serverCPU(target)
        let plan = RunPlan(mode: .flow, flavor: .tandem, streamPorts: [target.streamPorts[0]], publishPort: target.publishPort, slots: concurrency,
                           window: duration, threads: threads, pool: poolSize, sources: sourceCount, establishTimeout: 30)
        let ((outcome, windowCPU), masterCPU) = try runMeasuringWindowByMaster(plan, on: target)
        let r = outcome.result
        let latency = latencySummary(r.latencies)
        var line = JSONLine()
        line.add("scenario", "flow")
        line.add("target", target.kind.rawValue)
        line.add("concurrency", concurrency)
        line.add("duration_s", duration)
        line.add("flows", r.flows)
        line.add("flows_per_s", Double(r.flows) / duration, digits: 1)
        line.add("latency_ms", latency.json)
        line.add("events_published", r.published)
        line.add("events_delivered", r.delivered)
        line.add("lost", r.lost)
        line.add("publish_failed", r.publishFailed)
        line.add("stream_failed", r.failedOpens)
        line.add("dropped", r.dropped)
        line.add("misordered", r.misordered)
        line.add("server_cpu_s", serverCPU(target) - cpuBefore)
        line.add("server_cpu_window_s", windowCPU)
        line.add("server_cpu_per_flow_us", microsecondsPer(windowCPU, r.flows), digits: 1)
        if !target.redisMasters.isEmpty { line.add("redis_cpu_per_event_us_by_master", perMaster(target, cpu: masterCPU, events: r.published)) }
        line.add("client_cpu_s", outcome.clientCPU)
        line.add("statuses", statusesLine(r.statuses))
        report(line)
        if r.lost > 0 || r.publishFailed > 0 || r.misordered > 0 || r.flows == 0 { failures.append("flow \(target.kind.rawValue): lost \(r.lost), failed \(r.publishFailed), flows \(r.flows)") }
    }

    @discardableResult
    func fanout(
        _ target: RunningTarget, streams: Int, rate: Double, duration: Double, scenario: String = "fanout", nchanChurn: Int = 0
    ) throws -> (p99: Double, healthy: Bool) {
        if scenario == "fanout" {
            progress.begin(ProgressReporter.Step(
                scenario: "fanout", target: progressTarget(target, nchanChurn: nchanChurn),
                detail: "\(String(format: "%g", rate))/s, \(streams) streams", expectedSeconds: duration + 2))
        }
        let cpuBefore = serverCPU(target)
        var plan = RunPlan(mode: .fanout, flavor: target.kind.flavor, streamPorts: [target.streamPorts[0]], publishPort: target.publishPort,
                           slots: streams, rate: rate, window: duration, threads: threads, pool: poolSize, sources: sourceCount, establishTimeout: 30)
        plan.eventsPerStream = nchanChurn
        let eventsPerStream = target.kind.flavor.eventsPerStream(nchanChurn: nchanChurn)
        let ((outcome, windowCPU), masterCPU) = try runMeasuringWindowByMaster(plan, on: target)
        // Publishing stops with the window, so the events published are the window's work (with a stream and a session
        // made anew every `eventsPerStream` events, in Tandem's shape).
        let cpuPerEvent = microsecondsPer(windowCPU, outcome.result.published)
        let r = outcome.result
        let latency = latencySummary(r.latencies)
        let lag = latencySummary(r.lags)
        var line = JSONLine()
        line.add("scenario", scenario)
        line.add("target", target.kind.rawValue)
        line.add("streams", streams)
        line.add("rate", rate, digits: 0)
        line.add("duration_s", duration)
        // Streams replaced by a fresh session after this many events (0: streams stay open).
        line.add("events_per_stream", eventsPerStream)
        line.add("published", r.published)
        line.add("delivered", r.delivered)
        line.add("delivered_per_s", Double(r.delivered) / duration, digits: 1)
        line.add("latency_ms", latency.json)
        line.add("lost", r.lost)
        line.add("unsent", r.unsent)
        line.add("publish_failed", r.publishFailed)
        line.add("stream_failed", r.failedOpens)
        line.add("dropped", r.dropped)
        line.add("misordered", r.misordered)
        line.add("schedule_lag_p99_ms", lag.p99)
        if eventsPerStream > 0 { line.add("sessions_recreated", r.delivered / eventsPerStream) }
        line.add("server_cpu_s", serverCPU(target) - cpuBefore)
        line.add("server_cpu_window_s", windowCPU)
        line.add("server_cpu_per_event_us", cpuPerEvent, digits: 1)
        if !target.redisMasters.isEmpty { line.add("redis_cpu_per_event_us_by_master", perMaster(target, cpu: masterCPU, events: r.published)) }
        line.add("client_cpu_s", outcome.clientCPU)
        line.add("statuses", statusesLine(r.statuses))
        report(line)
        if scenario == "fanout" {
            comparisons.record(.fanoutP99, target: target.kind, eventsPerStream: eventsPerStream, value: latency.p99)
            comparisons.record(.cpuPerEvent, target: target.kind, eventsPerStream: eventsPerStream, value: cpuPerEvent)
        }
        let healthy = r.lost == 0 && r.publishFailed == 0 && Double(r.unsent) <= 0.01 * max(1, Double(r.published)) && latency.p99 <= 10
        if scenario == "fanout", r.lost > 0 || r.publishFailed > 0 || r.misordered > 0 {
            failures.append("fanout \(target.kind.rawValue): lost \(r.lost), failed \(r.publishFailed), misordered \(r.misordered)")
        }
        return (latency.p99, healthy)
    }

    /// The target as the charts name it: nchan in Tandem's shape is `nchan-memory churn 3`.
    private func progressTarget(_ target: RunningTarget, nchanChurn: Int) -> String {
        target.kind.flavor == .nchan && nchanChurn > 0 ? "\(target.kind.rawValue) churn \(nchanChurn)" : target.kind.rawValue
    }

    func knee(_ target: RunningTarget, streams: Int, rates: [Double], duration: Double, nchanChurn: Int = 0) throws {
        var knee = 0.0
        var passedAt: Double?
        let kneeStart = Date()
        for (index, rate) in rates.enumerated() {
            // The steps so far say what one costs here (the window, opening and draining); before the first, a guess.
            let perStep = index == 0 ? duration + 2 : Date().timeIntervalSince(kneeStart) / Double(index)
            progress.begin(ProgressReporter.Step(
                scenario: "knee", target: progressTarget(target, nchanChurn: nchanChurn),
                detail: ProgressReporter.kneeStep(rate, index: index, of: rates), expectedSeconds: perStep,
                secondsAfter: perStep * Double(rates.count - index - 1)), newScenario: index == 0)
            let step = try fanout(target, streams: streams, rate: rate, duration: duration, scenario: "knee-step", nchanChurn: nchanChurn)
            if step.healthy { knee = rate } else { passedAt = rate; break }
        }
        var line = JSONLine()
        line.add("scenario", "knee")
        line.add("target", target.kind.rawValue)
        line.add("streams", streams)
        line.add("events_per_stream", target.kind.flavor.eventsPerStream(nchanChurn: nchanChurn))
        line.add("knee_events_per_s", knee, digits: 0)
        if let passedAt { line.add("first_failing_rate", passedAt, digits: 0) } else { line.add("first_failing_rate", "none (highest step passed)") }
        line.add("rule", "highest step with p99 <= 10 ms, nothing lost, <= 1% unsent")
        report(line)
        comparisons.record(.knee, target: target.kind, eventsPerStream: target.kind.flavor.eventsPerStream(nchanChurn: nchanChurn), value: knee)
    }
}

/// Microseconds per unit of work, or NaN when there was none.
func microsecondsPer(_ seconds: Double, _ count: Int) -> Double { count > 0 ? seconds * 1e6 / Double(count) : .nan }

/// The folder of Package.swift above the working folder (or the working folder): where the release build is looked for.
func packageDirectory() -> String {
    var directory = FileManager.default.currentDirectoryPath
    while directory != "/" {
        if FileManager.default.fileExists(atPath: directory + "/Package.swift") { return directory }
        directory = (directory as NSString).deletingLastPathComponent
    }
    return FileManager.default.currentDirectoryPath
}

/// `path` when given; otherwise the package's release build, built first when missing.
func tandemBinary(_ path: String?, package: String) throws -> String {
    if let path { return path }
    let release = package + "/.build/release/tandem"
    if !FileManager.default.isExecutableFile(atPath: release) {
        print("# building Tandem: swift build -c release --product tandem", to: &standardError)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: which("swift") ?? "/usr/bin/swift")
        process.arguments = ["build", "-c", "release", "--product", "tandem", "--package-path", package]
        try process.run()
        process.waitUntilExit()
    }
    guard FileManager.default.isExecutableFile(atPath: release) else { throw BenchError("no Tandem binary; run swift build -c release --product tandem or pass --tandem PATH") }
    return release
}

func selfExecutable() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}

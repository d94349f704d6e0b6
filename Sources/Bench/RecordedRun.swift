import Foundation
import JSON

/// What the charts show of a run, read back from its JSON lines (the bench's own output, or a file from
/// `benchmarks/`). The lines are outside input: a line that is not a JSON object, a measure that is missing, not a
/// number, not finite, negative or implausibly large is skipped with a warning naming its line, never drawn.
struct RecordedRun {
    /// The `machine` line's description (`2 cores, 23.5 GiB, …`) and date, when the run recorded them.
    var machine: String?
    var date: String?
    /// Knee steps' latencies, by series (nchan in Tandem's shape is `nchan-memory churn 3`), in the order read.
    var kneeSteps: [String: [LatencyAtRate]] = [:]
    var rssPerStream: [String: [Double]] = [:]
    var flowsPerSecond: [String: [Double]] = [:]
    /// Fanout lines, by series: their rate, latency, and the server's CPU per event where the run measured it.
    var fanouts: [String: [FanoutMeasure]] = [:]
    /// The `hold` and `knee-step` lines' stream counts, for the charts' footnotes.
    var holdStreams: Set<Int> = []
    var kneeStreams: Set<Int> = []
    var warnings: [String] = []

    struct LatencyAtRate: Equatable {
        var rate: Double
        var p50: Double
        var p99: Double
    }

    struct FanoutMeasure: Equatable {
        var latency: LatencyAtRate
        var cpuPerEventMicroseconds: Double?
    }

    /// Above this a measure is taken for garbage, not a result (milliseconds, KiB, events/s, µs alike).
    static let largestPlausible = 1e9

    /// Reads `text` (JSON lines); `source` names it in warnings (`all-current.jsonl:12: …`).
    mutating func read(_ text: String, source: String) {
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)  // CRLF files too
            guard !trimmed.isEmpty else { continue }
            read(line: trimmed, at: "\(source):\(index + 1)")
        }
    }

    private mutating func read(line: String, at place: String) {
        guard let value = JSONValue(parsing: Array(line.utf8)), case .object = value else {
            warnings.append("\(place): not a JSON object, skipped")
            return
        }
        guard case .string(let scenario) = value["scenario"] else {
            warnings.append("\(place): no \"scenario\", skipped")
            return
        }
        var fields = LineFields(value: value, place: place)
        switch scenario {
        case "machine":
            // The first machine line names the run; several files of one round repeat it.
            if machine == nil { machine = Self.machineDescription(value) }
            if date == nil, case .string(let recorded) = value["date"] { date = recorded }
        case "hold":
            guard let target = fields.target(), let rss = fields.measure("rss_per_stream_kib") else { break }
            rssPerStream[target, default: []].append(rss)
            if let streams = LineFields.count(value["streams"]) { holdStreams.insert(streams) }
        case "flow":
            guard let target = fields.target(), let rate = fields.measure("flows_per_s") else { break }
            flowsPerSecond[target, default: []].append(rate)
        case "fanout":
            guard let series = fields.series(), let latency = fields.latencyAtRate() else { break }
            // Older runs did not measure the server's CPU per event: no warning for its absence, only for garbage.
            let measured = value["server_cpu_per_event_us"].map { $0 != .null } ?? false
            let cpu = measured ? fields.measure("server_cpu_per_event_us") : nil
            fanouts[series, default: []].append(FanoutMeasure(latency: latency, cpuPerEventMicroseconds: cpu))
        case "knee-step":
            guard let series = fields.series(), let latency = fields.latencyAtRate() else { break }
            kneeSteps[series, default: []].append(latency)
            if let streams = LineFields.count(value["streams"]) { kneeStreams.insert(streams) }
        default:
            break  // knee, ratios, and lines of later versions: nothing to draw
        }
        warnings += fields.warnings
    }

    /// `2 cores, 23.5 GiB, load 1.02` from a machine line, with whatever of it the line has.
    private static func machineDescription(_ value: JSONValue) -> String {
        var parts: [String] = []
        if case .string(let cpu) = value["cpu"], !cpu.isEmpty { parts.append(cpu) }
        if let cores = LineFields.number(value["cores"]), cores.isFinite, cores > 0, cores < 1e6 { parts.append("\(Int(cores)) cores") }
        if let memory = LineFields.number(value["memory_gib"]), memory.isFinite, memory > 0, memory < 1e9 {
            parts.append("\(ChartScale.valueLabel(memory)) GiB")
        }
        if case .string(let system) = value["os"], !system.isEmpty { parts.append(system) }
        if case .string(let load) = value["load_average_1m"], !load.isEmpty { parts.append("load \(load)") }
        // How fast the machine ran the bench's fixed work (MachineDescription.calibrationMilliseconds): which kind of
        // day the run had, next to the figures it explains.
        if let calibration = LineFields.number(value["calibration_ms"]), calibration.isFinite, calibration >= 0.1, calibration < 1e6 {
            parts.append("calibration \(ChartScale.valueLabel(calibration)) ms")
        }
        return parts.joined(separator: ", ")
    }
}

/// One line's fields, read with a warning for each that is missing or unusable.
private struct LineFields {
    let value: JSONValue
    let place: String
    var warnings: [String] = []

    init(value: JSONValue, place: String) {
        self.value = value
        self.place = place
    }

    static func number(_ value: JSONValue?) -> Double? {
        switch value {
        case .integer(let integer): Double(integer)
        case .number(let number): number
        default: nil
        }
    }

    /// A count such as `streams`: a whole number above 0 (nil otherwise; it only labels a chart).
    static func count(_ value: JSONValue?) -> Int? {
        guard case .integer(let count) = value, count > 0, count < 1 << 40 else { return nil }
        return Int(count)
    }

    mutating func target() -> String? {
        guard case .string(let target) = value["target"], !target.isEmpty, target.count <= 64 else {
            warnings.append("\(place): no usable \"target\", skipped")
            return nil
        }
        return target
    }

    /// The target, and for nchan in Tandem's shape (`events_per_stream` above 0) that shape: `nchan-memory churn 3`.
    /// Tandem's sessions always take three events, so its targets keep their plain names.
    mutating func series() -> String? {
        guard let target = target() else { return nil }
        guard !target.hasPrefix("tandem"), let shape = Self.number(value["events_per_stream"]), shape >= 1, shape < 1e6 else { return target }
        return "\(target) churn \(Int(shape))"
    }

    /// `rate` and `latency_ms`' p50 and p99 of a fanout or knee-step line.
    mutating func latencyAtRate() -> RecordedRun.LatencyAtRate? {
        guard let rate = measure("rate"), let p50 = measure("latency_ms", "p50"), let p99 = measure("latency_ms", "p99") else { return nil }
        return RecordedRun.LatencyAtRate(rate: rate, p50: p50, p99: p99)
    }

    /// A measure at `path` (`latency_ms`, `p99`): a finite number from 0 to ``RecordedRun/largestPlausible``.
    mutating func measure(_ path: String...) -> Double? {
        let name = path.joined(separator: ".")
        var current: JSONValue? = value
        for key in path { current = current?[key] }
        guard let number = Self.number(current) else {
            warnings.append("\(place): \(name) is \(current == nil ? "missing" : "not a number"), skipped")
            return nil
        }
        guard number.isFinite, number >= 0, number <= RecordedRun.largestPlausible else {
            warnings.append("\(place): \(name) is \(number), not a measure, skipped")
            return nil
        }
        return number
    }
}

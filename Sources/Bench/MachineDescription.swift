import Foundation

/// What the `machine` line says of the machine and the moment, beyond its counts: the charts' titles name both, as a
/// chart is read away from the run that made it.
enum MachineDescription {
    /// `/proc/cpuinfo`'s first `model name` (empty where there is none).
    static var processorModel: String {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let line = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
        return line?.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
    }

    /// `/etc/os-release`'s `PRETTY_NAME` (`Debian GNU/Linux 12 (bookworm)`), or Foundation's description elsewhere.
    static var operatingSystem: String {
        let release = (try? String(contentsOfFile: "/etc/os-release", encoding: .utf8)) ?? ""
        let line = release.split(separator: "\n").first { $0.hasPrefix("PRETTY_NAME=") }
        let name = line.map { $0.dropFirst("PRETTY_NAME=".count).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
        return name ?? ProcessInfo.processInfo.operatingSystemVersionString
    }

    /// How long this machine takes now for a fixed piece of single-threaded work of the kinds a server does (a
    /// dictionary, small strings, branches on a random walk), in milliseconds: the median of three runs of it. Runs
    /// compare only on machines equally fast, and a machine of the same type is not always: this bench measured
    /// nchan's own knee at 32,000 events/s on one day and at 10,000 on another. Read against a run of the same build
    /// of `tandem-bench` (a debug build takes several times longer).
    static func calibrationMilliseconds() -> Double {
        var samples: [Double] = []
        for _ in 0..<3 {
            let clock = ContinuousClock()
            let elapsed = clock.measure { calibrationSink(calibrationWork()) }
            samples.append(elapsed / .milliseconds(1))
        }
        return samples.sorted()[1]
    }

    /// The calibration's work; its result only keeps the optimiser from dropping it.
    static func calibrationWork() -> Int {
        var table: [Int: Int] = [:]
        table.reserveCapacity(4096)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        var checksum = 0
        for round in 0..<200_000 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            let key = Int(truncatingIfNeeded: state & 0x3FFF)
            table[key, default: 0] &+= round
            if table.count >= 4096 { table.removeAll(keepingCapacity: true) }
            checksum &+= String(key, radix: 16).utf8.count
        }
        return checksum &+ table.count
    }

    @inline(never) @_optimize(none)
    private static func calibrationSink(_ value: Int) {}

    /// Now, in UTC, ISO 8601 to the second (`2026-11-28T12:45:03Z`).
    static var now: String { Date.now.formatted(.iso8601) }

    /// A recorded date as a title shows it: `2026-11-28 12:45 UTC` for the bench's ISO 8601, anything else as given.
    static func readable(_ recorded: String) -> String {
        guard let date = try? Date(recorded, strategy: .iso8601) else { return recorded }
        let parts = date.formatted(.iso8601).split(separator: "T")
        guard parts.count == 2 else { return recorded }
        return "\(parts[0]) \(parts[1].prefix(5)) UTC"
    }
}

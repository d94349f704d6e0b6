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

#if canImport(Glibc)
import Glibc
#endif
import HTTP
import JSON
import Logging
import Synchronization

/// Writes one JSON object per log line to standard error: `{"time","level","label","message",...metadata}`, for
/// log shippers. Chosen with `logFormat` = `json`; the default is swift-log's human-readable lines.
struct JSONLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    let label: String
    private static let writeLock = Mutex(())

    init(label: String) {
        self.label = label
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields: [String: JSONValue] = [:]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) {
            fields[key] = .string("\(value)")
        }
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        fields["time"] = .number(Double(spec.tv_sec) + Double(spec.tv_nsec / 1000) / 1_000_000)
        fields["level"] = .string(event.level.rawValue)
        fields["label"] = .string(label)
        fields["message"] = .string("\(event.message)")
        fields["source"] = .string(event.source)
        let line = JSONValue.object(fields).compactText + "\n"
        Self.writeLock.withLock { _ in
            var text = line
            text.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
        }
    }
}

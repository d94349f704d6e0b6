/// The measures that have an nchan counterpart, kept as their lines are emitted, so that a run that measured both
/// prints the ratios itself: Tandem / nchan, from the same run on the same machine minutes, never from numbers
/// measured at another time.
struct Comparisons {
    enum Measure: String, CaseIterable {
        case rssPerStream = "hold_rss_per_stream"
        case fanoutP99 = "fanout_p99"
        case cpuPerEvent = "fanout_server_cpu_per_event"
        case knee = "knee"
    }

    /// Hold has no event shape; fanout and knee lines carry theirs (`events_per_stream`).
    static let noShape = -1

    private var values: [String: Double] = [:]

    private static func key(_ measure: Measure, _ target: TargetKind, _ eventsPerStream: Int) -> String {
        "\(measure.rawValue)|\(target.rawValue)|\(eventsPerStream)"
    }

    mutating func record(_ measure: Measure, target: TargetKind, eventsPerStream: Int = noShape, value: Double) {
        guard value.isFinite else { return }
        values[Self.key(measure, target, eventsPerStream)] = value
    }

    /// One `ratios` line, or nil when no Tandem measure has its nchan counterpart in this run.
    func line() -> JSONLine? {
        var line = JSONLine()
        line.add("scenario", "ratios")
        line.add("meaning", "Tandem / nchan from this run; below 1 is better for RSS, p99 and CPU per event, above 1 for the knee")
        var any = false
        for (tandem, nchan, storage) in [(TargetKind.tandemMemory, TargetKind.nchanMemory, "memory"), (.tandemRedis, .nchanRedis, "redis")] {
            for measure in Measure.allCases {
                let tandemShape = measure == .rssPerStream ? Self.noShape : 3
                guard let ours = values[Self.key(measure, tandem, tandemShape)] else { continue }
                // nchan on its own shape (channels that stay open), and in Tandem's (a new channel every 3 events).
                let counterparts = measure == .rssPerStream ? [(Self.noShape, "")] : [(0, ""), (3, "_in_tandem_shape")]
                for (shape, suffix) in counterparts {
                    guard let theirs = values[Self.key(measure, nchan, shape)], theirs > 0 else { continue }
                    line.add("\(measure.rawValue)_\(storage)\(suffix)", ours / theirs, digits: 2)
                    any = true
                }
            }
        }
        return any ? line : nil
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Broker
import Foundation  // JSONEncoder / JSONDecoder for the reports
import Logging
import ServiceLifecycle
import Synchronization

/// What one node reports about itself each second, and how the snapshot lists it: counts only, nothing that names a
/// user or a session.
struct OpsNodeReport: Codable, Sendable, Equatable {
    var name: String
    var version: String
    var uptimeSeconds: Int64
    var pcStreams: Int
    var phoneStreams: Int
    var sessions: Int
    var eventsPerSecond: Double
    /// Upper bound of the bucket holding the 99th percentile of broker round trips in the window; nil without calls.
    var brokerP99Milliseconds: Double?
    var pairings: OpsPairings
    /// In the report: creation times (ms since the epoch) of this node's oldest waiting pairings, oldest first, at
    /// most five. Merged into the snapshot's ages, so nil (absent) there.
    var oldestWaitingSince: [Int64]?
    /// In the snapshot: seconds since the node wrote its report; nil (absent) in the report itself.
    var reportAgeSeconds: Double?
}

extension OpsNodeReport {
    /// The largest count believed (streams, sessions, pairings by state); a report with more, or a negative one,
    /// was not written by a Tandem node.
    static let maximumCount = 1_000_000_000
    static let maximumEventsPerSecond = 10_000_000.0
    static let maximumBrokerP99Milliseconds = 1_000_000.0
    /// A century.
    static let maximumUptimeSeconds: Int64 = 100 * 366 * 86_400

    /// Another node's report as read from the broker (whatever wrote it), or nil when it does not decode or holds
    /// values no node reports: counts that are negative or over ``maximumCount``, rates or latencies that are
    /// negative or absurd, a negative uptime, a name with control or format characters. Creation times of waiting
    /// pairings outside `[now - sessionTTL, now]` (with `skew` of leeway ahead, for clocks, clamped to now) are
    /// dropped. The name is `report.node`, the version is cut to 32 characters without control or format ones.
    static func validated(_ report: NodeReport, now: Int64, sessionTTLMilliseconds: Int64, skew: Int64) -> OpsNodeReport? {
        guard NodeReport.isAcceptableNodeName(report.node),
            var decoded = try? JSONDecoder().decode(OpsNodeReport.self, from: Data(report.body))
        else { return nil }
        let counts = [decoded.pcStreams, decoded.phoneStreams, decoded.sessions] + decoded.pairings.counts
        guard counts.allSatisfy({ (0...maximumCount).contains($0) }),
            (0...maximumUptimeSeconds).contains(decoded.uptimeSeconds),
            decoded.eventsPerSecond.isFinite, (0...maximumEventsPerSecond).contains(decoded.eventsPerSecond)
        else { return nil }
        if let p99 = decoded.brokerP99Milliseconds, !(p99.isFinite && (0...maximumBrokerP99Milliseconds).contains(p99)) { return nil }
        decoded.name = report.node
        decoded.version = String(String.UnicodeScalarView(
            decoded.version.unicodeScalars.filter { ![.control, .format].contains($0.properties.generalCategory) }.prefix(32)))
        // A bound past Int64 is no bound (wrapped, it would drop every time near the ends of Int64).
        let (earliest, beforeAll) = now.subtractingReportingOverflow(max(0, sessionTTLMilliseconds))
        let (latest, afterAll) = now.addingReportingOverflow(max(0, skew))
        decoded.oldestWaitingSince = (decoded.oldestWaitingSince ?? []).prefix(PairingTally.oldestWaitingShown)
            .filter { (beforeAll || $0 >= earliest) && (afterAll || $0 <= latest) }
            .map { min($0, now) }
        decoded.reportAgeSeconds = nil
        return decoded
    }
}

/// Pairings by state (counts only).
struct OpsPairings: Codable, Sendable, Equatable {
    var waiting = 0
    var connected = 0
    var inputting = 0
    var completed = 0
    var cancelled = 0

    init() {}

    init(_ byStatus: [SessionStatus: Int]) {
        waiting = byStatus[.waiting] ?? 0
        connected = byStatus[.connected] ?? 0
        inputting = byStatus[.inputting] ?? 0
        completed = byStatus[.completed] ?? 0
        cancelled = byStatus[.cancelled] ?? 0
    }

    /// Saturating sums: other nodes' reports come from Redis, and no value from outside may make arithmetic trap
    /// or wrap to a negative count.
    static func + (lhs: OpsPairings, rhs: OpsPairings) -> OpsPairings {
        OpsPairings(
            waiting: saturated(lhs.waiting, rhs.waiting), connected: saturated(lhs.connected, rhs.connected),
            inputting: saturated(lhs.inputting, rhs.inputting), completed: saturated(lhs.completed, rhs.completed),
            cancelled: saturated(lhs.cancelled, rhs.cancelled))
    }

    init(waiting: Int, connected: Int, inputting: Int, completed: Int, cancelled: Int) {
        self.waiting = waiting
        self.connected = connected
        self.inputting = inputting
        self.completed = completed
        self.cancelled = cancelled
    }

    var counts: [Int] { [waiting, connected, inputting, completed, cancelled] }

    static func saturated(_ lhs: Int, _ rhs: Int) -> Int {
        let (sum, overflow) = lhs.addingReportingOverflow(rhs)
        return overflow ? (rhs > 0 ? .max : .min) : sum
    }
}

/// What `/api/ops/snapshot` answers and `/api/ops/events` sends each second.
struct OpsSnapshot: Codable, Sendable, Equatable {
    /// When this snapshot was made, ms since the epoch (this node's clock).
    var generatedAt: Int64
    /// `memory`, `redis` or `redis-cluster`.
    var broker: String
    /// Whether the other nodes' reports could be read this time (always true with the memory broker).
    var brokerReachable: Bool
    /// Cluster-wide, the sum of the nodes' counts (see ``PairingTally`` for what each node counts).
    var pairings: OpsPairings
    /// Ages in seconds of the oldest waiting pairings, oldest first, at most five.
    var oldestWaitingSeconds: [Int64]
    /// Every live node, by name.
    var nodes: [OpsNodeReport]
    /// The session TTL (`session.ttlSeconds`): completed and cancelled pairings are counted for this long.
    var sessionTTLSeconds = 0
}

/// Each second: this node's report, written to the broker (Redis: a hash all nodes share) and merged with every
/// other live node's into the snapshot the operators' page shows. Runs only when `ops.token` is set.
final class OpsReporter: Service, Sendable {
    private struct State {
        /// Cumulative samples of the last seconds, oldest first: rates and the p99 are differences over this window.
        var window: [(at: Int64, sample: OpsCounters.Sample)] = []
        var latest: OpsSnapshot?
        var port = 0
    }

    /// How long a node's report lives: a node that stops reporting is gone from the page after this.
    static let reportTTL = Duration.seconds(5)
    static let windowMilliseconds: Int64 = 10_000
    /// Reports read at most (the page lists this many nodes at most).
    static let maximumNodes = 64

    private let configuration: TandemConfiguration
    private let broker: any Broker
    private let registry: SessionRegistries
    private let metrics: TandemMetrics
    private let time: TimeSource
    private let logger: Logger
    private let startedAt: Int64
    private let state = Mutex(State())

    init(
        configuration: TandemConfiguration, broker: any Broker, registry: SessionRegistries, metrics: TandemMetrics, time: TimeSource,
        logger: Logger
    ) {
        self.configuration = configuration
        self.broker = broker
        self.registry = registry
        self.metrics = metrics
        self.time = time
        self.logger = logger
        self.startedAt = time.now()
    }

    /// The bound port, for the default node name (a configured port of 0 picks one).
    func serverStarted(port: Int) {
        state.withLock { $0.port = port }
    }

    /// This node's name: `ops.nodeName`, else `hostname:port`.
    var nodeName: String {
        if !configuration.opsNodeName.isEmpty { return configuration.opsNodeName }
        var buffer = [CChar](repeating: 0, count: 256)
        // One byte short of the buffer: the name may come back without its terminating zero when it is that long.
        let named = gethostname(&buffer, buffer.count - 1) == 0
        let host = named ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "node"
        return String((host + ":" + String(state.withLock { $0.port })).utf8.prefix(NodeReport.maximumNodeBytes)) ?? "node"
    }

    /// The latest snapshot, made now if there is none yet.
    func snapshot() async -> OpsSnapshot {
        if let latest = state.withLock({ $0.latest }) { return latest }
        return await report()
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                _ = await self.report()
                do {
                    try await Task.sleep(for: .seconds(1))
                } catch {
                    return
                }
            }
        }
    }

    /// Makes this node's report, exchanges it through the broker, and keeps the merged snapshot.
    @discardableResult
    func report() async -> OpsSnapshot {
        let now = time.now()
        let own = localReport(now: now)
        var reports = [NodeReport]()
        var reachable = true
        let encoder = JSONEncoder()
        let sessionTTL = Int64(configuration.sessionTTLSeconds) * 1000
        let skew = Self.reportTTL.milliseconds
        let validated = { (report: NodeReport) in
            OpsNodeReport.validated(report, now: now, sessionTTLMilliseconds: sessionTTL, skew: skew)
        }
        if let body = try? encoder.encode(own), body.count <= NodeReport.maximumBodyBytes {
            let mine = NodeReport(node: own.name, reportedAt: now, body: Array(body))
            do {
                // Validated before the limit, so that hostile fields cannot push real nodes out (and are deleted).
                reports = try await broker.exchangeReport(mine, ttl: Self.reportTTL, limit: Self.maximumNodes) { validated($0) != nil }
            } catch {
                logger.debug("node reports could not be exchanged", metadata: ["error": "\(error)"])
                reachable = false
            }
        }
        var nodes: [(OpsNodeReport, Int64)] = reports.compactMap { report in
            // Another node's words (or whatever else wrote the hash): a report that does not validate is skipped.
            validated(report).map { ($0, report.reportedAt) }
        }
        // Its own report first: `merge` keeps at most `maximumNodes`, and this node is always on its own page.
        if let index = nodes.firstIndex(where: { $0.0.name == own.name }) {
            nodes.insert(nodes.remove(at: index), at: 0)
        } else {
            nodes.insert((own, now), at: 0)
        }
        var snapshot = Self.merge(nodes, now: now, broker: configuration.broker.rawValue, reachable: reachable)
        snapshot.sessionTTLSeconds = configuration.sessionTTLSeconds
        state.withLock { $0.latest = snapshot }
        return snapshot
    }

    /// The node's counters; empty ones when the page is off (the reporter is then never run).
    private var counters: OpsCounters { metrics.ops ?? Self.noCounters }
    private static let noCounters = OpsCounters(capacity: 0)

    /// This node's counts now; rates over the window of samples kept.
    private func localReport(now: Int64) -> OpsNodeReport {
        let sample = counters.current
        let earliest = state.withLock { state -> (at: Int64, sample: OpsCounters.Sample) in
            state.window.append((now, sample))
            state.window.removeAll { now - $0.at > Self.windowMilliseconds }
            return state.window.first ?? (now, sample)
        }
        let elapsed = Double(max(0, now - earliest.at)) / 1000
        let events = max(0, sample.eventsPublished - earliest.sample.eventsPublished)
        let pairings = counters.pairings(now: now)
        let streams = registry.streamCount
        let phoneStreams = min(streams, registry.phoneStreamCount)
        return OpsNodeReport(
            name: nodeName,
            version: Tandem.version,
            uptimeSeconds: max(0, now - startedAt) / 1000,
            pcStreams: streams - phoneStreams,
            phoneStreams: phoneStreams,
            sessions: registry.sessionCount,
            eventsPerSecond: elapsed > 0 ? (Double(events) / elapsed * 10).rounded() / 10 : 0,
            brokerP99Milliseconds: OpsCounters.brokerP99Milliseconds(from: earliest.sample, to: sample),
            pairings: OpsPairings(pairings.byStatus),
            oldestWaitingSince: pairings.oldestWaitingCreatedAt
        )
    }

    /// The cluster's snapshot from the nodes' reports: counts summed, the oldest waiting pairings of all nodes.
    static func merge(_ reports: [(OpsNodeReport, Int64)], now: Int64, broker: String, reachable: Bool) -> OpsSnapshot {
        var pairings = OpsPairings()
        var waitingSince: [Int64] = []
        var nodes: [OpsNodeReport] = []
        for (var report, reportedAt) in reports.prefix(maximumNodes) {
            pairings = pairings + report.pairings
            waitingSince += (report.oldestWaitingSince ?? []).prefix(PairingTally.oldestWaitingShown)
            let (age, overflow) = now.subtractingReportingOverflow(reportedAt)
            report.version = String(report.version.prefix(32))
            report.oldestWaitingSince = nil
            report.reportAgeSeconds = overflow ? 0 : Double(max(0, age)) / 1000
            nodes.append(report)
        }
        let oldest = waitingSince.sorted().prefix(PairingTally.oldestWaitingShown).map { since in
            let (age, overflow) = now.subtractingReportingOverflow(since)
            return overflow ? 0 : max(0, age) / 1000
        }
        return OpsSnapshot(
            generatedAt: now, broker: broker, brokerReachable: reachable, pairings: pairings, oldestWaitingSeconds: oldest,
            nodes: nodes.sorted { $0.name < $1.name })
    }
}

/// What one node says about itself for the operators' page: opaque bytes (the App's JSON), stamped by the broker.
/// Reports carry counts only; the broker never looks inside.
public struct NodeReport: Sendable, Equatable {
    /// The node's name as configured (or `host:port`): a name of a machine, never of a user.
    public var node: String
    /// When the node wrote it, milliseconds since the Unix epoch (its own clock).
    public var reportedAt: Int64
    public var body: [UInt8]

    public init(node: String, reportedAt: Int64, body: [UInt8]) {
        self.node = node
        self.reportedAt = reportedAt
        self.body = body
    }

    /// The longest body a broker stores or hands back: a longer one (written by something else) is skipped, so that
    /// reading every node's report stays small.
    public static let maximumBodyBytes = 8 * 1024
    /// The longest node name kept.
    public static let maximumNodeBytes = 128

    /// Whether `name` may name a node on the page: not empty, at most ``maximumNodeBytes``, and no control (Cc) or
    /// format (Cf, e.g. U+202E, which reverses the text after it) characters.
    public static func isAcceptableNodeName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= maximumNodeBytes
            && !name.unicodeScalars.contains { [.control, .format].contains($0.properties.generalCategory) }
    }
}

extension Broker {
    /// One node alone (the in-memory broker) knows only its own report.
    public func exchangeReport(_ report: NodeReport, ttl: Duration, limit: Int, accept: (NodeReport) -> Bool) async throws -> [NodeReport] {
        accept(report) ? [report] : []
    }
}

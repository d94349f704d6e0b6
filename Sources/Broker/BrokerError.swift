/// Failures of the broker itself, as opposed to answers about sessions (see ``PublishOutcome``).
public struct BrokerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable identifier of the failure.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        let name: String
        public var description: String { name }

        /// The backing store cannot be reached right now; the call may work later.
        public static let unavailable = Code(name: "unavailable")
        /// The backing store answered something this broker does not understand.
        public static let protocolViolation = Code(name: "protocol_violation")
        /// The broker is shutting down.
        public static let shutDown = Code(name: "shut_down")
    }

    public var code: Code
    public var reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { "\(code): \(reason)" }
}

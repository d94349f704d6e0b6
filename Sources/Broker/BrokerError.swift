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
        /// The session's stored data is not what Tandem writes (a key of the wrong type, a field missing or out of
        /// range): it cannot be served, and the call changed nothing. Retrying does not help; the app answers as
        /// for an unknown session.
        public static let corruptSession = Code(name: "corrupt_session")
    }

    public var code: Code
    public var reason: String
    /// For ``Code/unavailable`` when the store answered but refused to store now: a short lower-case word for why
    /// (`oom`, `readonly`, `loading`, ...), from a fixed set, so it can label a metric. Nil otherwise.
    public var refusal: String?

    public init(_ code: Code, _ reason: String, refusal: String? = nil) {
        self.code = code
        self.reason = reason
        self.refusal = refusal
    }

    public var description: String { "\(code): \(reason)" }
}

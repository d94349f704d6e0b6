/// What the phone did, as the PC sees it. Names are the seed's SSE event names.
public enum SessionEvent: Sendable, Equatable {
    /// The phone opened the session (validated it).
    case connected
    /// The phone started filling the form.
    case inputStarted
    /// The phone submitted the form.
    case complete(Submission)
    /// The session ended before it was completed (see ``CancelReason``).
    case cancelled(CancelReason)

    /// The SSE event name the seed's client listens for.
    public var name: String {
        switch self {
        case .connected: "connected"
        case .inputStarted: "input-started"
        case .complete: "complete"
        case .cancelled: "cancelled"
        }
    }

    /// The status a session reaches by this event.
    public var resultingStatus: SessionStatus {
        switch self {
        case .connected: .connected
        case .inputStarted: .inputting
        case .complete: .completed
        case .cancelled: .cancelled
        }
    }
}

/// Why a session was cancelled.
public enum CancelReason: String, Sendable, Equatable, CaseIterable {
    /// The PC ended it: a new session, or its page closed (`POST /api/cancel`).
    case pcCancelled = "pc-cancelled"
    /// The PC's stream has been gone from every node for longer than the presence grace.
    case pcLeft = "pc-left"
}

/// The form the phone submits.
public struct Submission: Sendable, Equatable, Codable {
    public var name: String
    public var phone: String

    public init(name: String, phone: String) {
        self.name = name
        self.phone = phone
    }
}

/// The position of an event in its session's log: 1 for the first event, then consecutive. Sent as the SSE `id:`,
/// so a client that reconnects with `Last-Event-ID` gets exactly the events after it, and a reader that sees a jump
/// knows it missed something.
public typealias EventID = UInt64

extension StoredEvent {
    /// The ids an event can have. Below 2^53, so an id is exact as a JavaScript number and in Redis's Lua (whose
    /// numbers are doubles), and `id + 1` never overflows; anything outside is refused where ids are read.
    public static let validIDs: ClosedRange<EventID> = 1...(1 << 53 - 1)
}

/// An event as stored in the session's log.
public struct StoredEvent: Sendable, Equatable {
    public var id: EventID
    public var event: SessionEvent
    /// When the event was published, in microseconds since the epoch by the publishing node's clock (0 when
    /// unknown): the start of the publish-to-delivery latency. Not part of equality.
    public var publishedAt: Int64

    public init(id: EventID, event: SessionEvent, publishedAt: Int64 = 0) {
        self.id = id
        self.event = event
        self.publishedAt = publishedAt
    }

    public static func == (lhs: StoredEvent, rhs: StoredEvent) -> Bool {
        lhs.id == rhs.id && lhs.event == rhs.event
    }
}

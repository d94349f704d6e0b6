/// Where a session is in the handoff. It only moves forward, and each event is published only when it moves it
/// forward: a phone that polls `validate-session` or reloads its page does not announce itself again, and every
/// session's log holds at most three events, or four when it ends cancelled.
///
/// `completed` and `cancelled` are final. A session is cancelled when its PC ends it (a new session, the tab
/// closed) or has been gone past the presence grace; nothing can be published to it after that.
public enum SessionStatus: String, Sendable, Comparable, CaseIterable {
    case waiting
    case connected
    case inputting
    case completed
    case cancelled

    private var rank: Int {
        switch self {
        case .waiting: 0
        case .connected: 1
        case .inputting: 2
        case .completed: 3
        case .cancelled: 4
        }
    }

    /// Whether nothing more can happen to the session.
    public var isFinal: Bool { self == .completed || self == .cancelled }

    public static func < (lhs: SessionStatus, rhs: SessionStatus) -> Bool { lhs.rank < rhs.rank }
}

/// A session as the broker stores it. Times are milliseconds since the Unix epoch (the seed's `expiryTime`).
public struct SessionRecord: Sendable, Equatable {
    /// The times a record can hold: from the epoch to the end of the year 9999. A stored time outside is refused
    /// where records are read, so no arithmetic on it can overflow.
    public static let validTimes: ClosedRange<Int64> = 0...253_402_300_799_999

    public var id: SessionID
    public var createdAt: Int64
    public var expiresAt: Int64
    public var status: SessionStatus
    /// The submitted form, once the session is completed. Gone with the session at expiry.
    public var submission: Submission?
    /// The id of the last event in the session's log (0 before the first).
    public var lastEventID: EventID
    /// The secret the session's opener must show to read its stream; nil for sessions opened the seed's way, by
    /// their stream, which have no secret.
    public var readerKey: String?
    /// The `Idempotency-Key` each step was published with, by the status it reached.
    public var idempotencyKeys: [SessionStatus: String]
    /// The key of the phone that claimed the session (the first to act on it); nil until one did.
    public var phoneKey: String?
    /// The short code both screens show once a phone claimed the session.
    public var pairingCode: String?
    /// The phone's own stream is gone past the grace (``SessionEvent/phoneLeft`` was the last presence notice).
    public var phoneAway: Bool
    /// Why the session was cancelled, once it is.
    public var cancelReason: CancelReason?

    public init(
        id: SessionID,
        createdAt: Int64,
        expiresAt: Int64,
        status: SessionStatus = .waiting,
        submission: Submission? = nil,
        lastEventID: EventID = 0,
        readerKey: String? = nil,
        idempotencyKeys: [SessionStatus: String] = [:],
        phoneKey: String? = nil,
        pairingCode: String? = nil,
        phoneAway: Bool = false,
        cancelReason: CancelReason? = nil
    ) {
        self.id = id
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.status = status
        self.submission = submission
        self.lastEventID = lastEventID
        self.readerKey = readerKey
        self.idempotencyKeys = idempotencyKeys
        self.phoneKey = phoneKey
        self.pairingCode = pairingCode
        self.phoneAway = phoneAway
        self.cancelReason = cancelReason
    }
}

extension SessionRecord {
    /// Whether `text` is a pairing code as Tandem makes them: four ASCII digits.
    public static func isPairingCode(_ text: String) -> Bool {
        text.utf8.count == 4 && text.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    }

    /// A new pairing code: four random digits.
    public static func randomPairingCode() -> String {
        var generator = SystemRandomNumberGenerator()
        return fourDigits(Int.random(in: 0..<10_000, using: &generator))
    }

    /// A new phone key (128 bits as 32 hex digits, as ``SessionID/randomHex128()``) and pairing code, from one draw
    /// of the system's CSPRNG: one `getrandom` where the two apart were two, on a phone's first step of every session.
    public static func randomPhoneKeyAndPairingCode() -> (key: String, pairingCode: String) {
        var words: (high: UInt64, low: UInt64, code: UInt32) = (0, 0, 0)
        SessionID.fillRandomly(&words)
        // Below 429,496 x 10,000 a draw modulo 10,000 is uniform; a draw above it (one in 600,000) is not used.
        let code = words.code < 4_294_960_000 ? Int(words.code % 10_000) : nil
        return (SessionID.hex(words.high, words.low), code.map(fourDigits) ?? randomPairingCode())
    }

    private static func fourDigits(_ value: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: 4 - digits.count) + digits
    }
}

/// The part of a session a published step answers with: its status and last event, its times and its phone's
/// claim. A step's answer needs no more (the phone's cookie, the pairing code, the expiry), and reading the whole
/// record back after every step was a fifth of each Redis publish (see BENCHMARKS.md, the session of 29 Nov, morning).
public struct SessionSummary: Sendable, Equatable {
    public var id: SessionID
    public var status: SessionStatus
    public var lastEventID: EventID
    public var createdAt: Int64
    public var expiresAt: Int64
    /// The key of the phone that claimed the session; nil until one did.
    public var phoneKey: String?
    /// The short code both screens show once a phone claimed the session.
    public var pairingCode: String?

    public init(
        id: SessionID, status: SessionStatus, lastEventID: EventID, createdAt: Int64, expiresAt: Int64, phoneKey: String?,
        pairingCode: String?
    ) {
        self.id = id
        self.status = status
        self.lastEventID = lastEventID
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.phoneKey = phoneKey
        self.pairingCode = pairingCode
    }
}

extension SessionRecord {
    /// The record's ``SessionSummary``.
    public var summary: SessionSummary {
        SessionSummary(
            id: id, status: status, lastEventID: lastEventID, createdAt: createdAt, expiresAt: expiresAt, phoneKey: phoneKey,
            pairingCode: pairingCode)
    }
}

/// What ``Broker/publish(_:to:)`` did.
public enum PublishOutcome: Sendable, Equatable {
    /// The event moved the session forward; it is stored in the log (so a 200 may be answered) and fanned out. With
    /// the session as the step left it (its summary: the broker does not read the whole record back).
    case published(StoredEvent, SessionSummary)
    /// The session is already at or past the event's status (and not completed); nothing was stored or sent (but a
    /// claim the step made is kept). With the session's summary, as for ``published(_:_:)``.
    case unchanged(SessionSummary)
    /// The session was already completed; nothing was stored or sent.
    case alreadyCompleted(SessionRecord)
    /// The session is cancelled (by its PC, or now, because its PC has been gone past the grace); the event was
    /// not stored.
    case cancelled(SessionRecord)
    /// Another phone claimed the session; nothing was stored or sent.
    case claimedByAnother(SessionRecord)
    /// Nobody claimed the session and this step may not (``PhoneClaim/mayClaim``); nothing was stored or sent.
    case notClaimed(SessionRecord)
    /// No such session, or it has expired.
    case sessionNotFound

    /// The whole session record after the call, when the session exists and the step was refused.
    public var record: SessionRecord? {
        switch self {
        case .alreadyCompleted(let record), .cancelled(let record), .claimedByAnother(let record), .notClaimed(let record):
            record
        case .published, .unchanged, .sessionNotFound: nil
        }
    }

    /// The session after the call, when it exists.
    public var summary: SessionSummary? {
        switch self {
        case .published(_, let summary), .unchanged(let summary): summary
        default: record?.summary
        }
    }
}

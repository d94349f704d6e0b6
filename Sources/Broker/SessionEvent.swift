import JSON

/// What the phone did, as the PC sees it. Names are the seed's SSE event names.
public enum SessionEvent: Sendable, Equatable {
    /// The phone opened the session (validated it), with the pairing code both screens show once a phone claimed
    /// the session (nil when the step came without a claim).
    case connected(pairingCode: String? = nil)
    /// The phone started filling the form.
    case inputStarted
    /// The phone submitted the form.
    case complete(Submission)
    /// The session ended before it was completed (see ``CancelReason``).
    case cancelled(CancelReason)
    /// The phone's own stream has been gone from every node past the presence grace (its tab closed, it slept).
    case phoneLeft
    /// The phone's stream is back after a ``phoneLeft``.
    case phoneReturned

    /// The SSE event name the seed's client listens for.
    public var name: String {
        switch self {
        case .connected: "connected"
        case .inputStarted: "input-started"
        case .complete: "complete"
        case .cancelled: "cancelled"
        case .phoneLeft: "phone-left"
        case .phoneReturned: "phone-returned"
        }
    }

    /// The status a session reaches by this event; nil for the phone's presence notices, which are stored and sent
    /// like steps but move the session nowhere.
    public var resultingStatus: SessionStatus? {
        switch self {
        case .connected: .connected
        case .inputStarted: .inputting
        case .complete: .completed
        case .cancelled: .cancelled
        case .phoneLeft, .phoneReturned: nil
        }
    }

    /// Whether the session is over after this event.
    public var isFinal: Bool { resultingStatus?.isFinal ?? false }

    /// Whether this is a step the phone takes (and so needs the PC present and the phone's claim).
    public var isPhoneStep: Bool {
        switch self {
        case .connected, .inputStarted, .complete: true
        case .cancelled, .phoneLeft, .phoneReturned: false
        }
    }
}

/// The device a step comes from, as far as the session's claim goes (see ``Broker/publish(_:to:from:idempotencyKey:)``).
public struct PhoneClaim: Sendable, Equatable {
    /// The phone key the device presents (its cookie), checked against the session's claim; nil when it has none.
    public var presentedKey: String?
    /// The key the session is claimed with if this step claims it. Made by the server for each step, never the
    /// presented one: nobody can choose, or plant in a victim's browser, the key of a claim.
    public var newKey: String
    /// The pairing code the session gets if this step claims it.
    public var pairingCode: String
    /// Whether this step may claim a session nobody claimed yet. A server-made session is claimed only by a
    /// `validate-session` with a good QR token.
    public var mayClaim: Bool

    public init(presentedKey: String?, newKey: String, pairingCode: String, mayClaim: Bool) {
        self.presentedKey = presentedKey
        self.newKey = newKey
        self.pairingCode = pairingCode
        self.mayClaim = mayClaim
    }

    /// A phone that holds `key` (a tool, a test): it presents the key and claims with it.
    public init(key: String, pairingCode: String, mayClaim: Bool) {
        self.init(presentedKey: key, newKey: key, pairingCode: pairingCode, mayClaim: mayClaim)
    }
}

/// Which device's presence a node holds or releases: the PC's stream or the phone's own channel.
public enum PresenceSide: String, Sendable, Equatable, CaseIterable {
    case pc
    case phone
}

/// Why a session was cancelled.
public enum CancelReason: String, Sendable, Equatable, CaseIterable {
    /// The PC ended it: a new session, or its page closed (`POST /api/cancel`).
    case pcCancelled = "pc-cancelled"
    /// The PC's stream has been gone from every node for longer than the presence grace.
    case pcLeft = "pc-left"
    /// The PC said the phone that claimed the session is not its user's ("not my phone").
    case phoneRejected = "phone-rejected"
}

/// The form the phone submits.
public struct Submission: Sendable, Equatable, Codable {
    /// One submitted field: its name in the form, and what the phone sent (text, or a checkbox's state).
    public struct Field: Sendable, Equatable, Codable {
        public var name: String
        public var value: Value

        public init(_ name: String, _ value: Value) {
            self.name = name
            self.value = value
        }
    }

    public enum Value: Sendable, Equatable, Codable {
        case text(String)
        case flag(Bool)
    }

    /// The fields in the form's order.
    public var fields: [Field]

    public init(fields: [Field]) {
        self.fields = fields
    }

    /// The article's form: a name and a phone number.
    public init(name: String, phone: String) {
        fields = [Field("name", .text(name)), Field("phone", .text(phone))]
    }

    /// The text of field `name`, or nil when there is none (or it is a checkbox).
    public func text(of name: String) -> String? {
        for field in fields where field.name == name {
            if case .text(let text) = field.value { return text }
        }
        return nil
    }

    /// The article's `name` and `phone` ("" for a form without them).
    public var name: String { text(of: "name") ?? "" }
    public var phone: String { text(of: "phone") ?? "" }

    /// Whether this is the article's form, exactly: a name and a phone, in that order. Such a submission is stored and
    /// sent as the article's pages expect (`{"name","phone"}`); any other form as its fields in order.
    public var isArticleForm: Bool {
        fields.count == 2 && fields[0].name == "name" && fields[1].name == "phone" && text(of: "name") != nil && text(of: "phone") != nil
    }

    /// The fields as one compact JSON object, in order: how Redis stores a form other than the article's.
    public var formText: String {
        JSONValue.objectText(members: fields.map { field in
            switch field.value {
            case .text(let text): (key: field.name, value: JSONValue.string(text))
            case .flag(let flag): (key: field.name, value: JSONValue.bool(flag))
            }
        })
    }

    /// Bounds on a stored form that comes back from Redis: what `formText` of a form the server accepted can hold.
    public static let maximumFields = 32
    public static let maximumFieldNameBytes = 32
    /// Scalars in one stored value: the longest field (1,000 characters) of at most 8 scalars each.
    public static let maximumValueScalars = 8000
    /// Names no field may have: the members the events carry beside a submission's fields (`resync`'s state).
    public static let reservedFieldNames: Set<String> = [
        "sessionId", "status", "code", "pairingCode", "reason", "phoneAway", "type", "id", "event", "t", "form",
    ]

    /// Whether `name` can name a field: shaped like one (``hasFieldNameShape``) and not reserved.
    public static func isFieldName(_ name: String) -> Bool {
        hasFieldNameShape(name) && !reservedFieldNames.contains(name)
    }

    /// An ASCII letter, then letters, digits or `_`, at most 32 in all.
    public static func hasFieldNameShape(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...maximumFieldNameBytes).contains(bytes.count), let first = bytes.first, isLetter(first) else { return false }
        return bytes.allSatisfy { isLetter($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "_") }
    }

    private static func isLetter(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
    }

    /// Whether a stored value could have come from a check the server made: bounded, and without control characters
    /// or the format characters that reorder or hide text (a value planted in Redis must not reach a screen).
    static func isStoredValue(_ text: String) -> Bool {
        var count = 0
        for scalar in text.unicodeScalars {
            count += 1
            guard count <= maximumValueScalars else { return false }
            switch scalar.properties.generalCategory {
            case .control, .lineSeparator, .paragraphSeparator, .surrogate: return false
            case .format where scalar != "\u{200D}": return false
            default: continue
            }
        }
        return true
    }

    /// The submission a `formText` holds, or nil when it is not a flat object of strings and booleans with distinct
    /// field names (``isFieldName``) and values a check of the server's could have passed (Redis data is hostile
    /// until checked).
    public init?(formText text: String) {
        var reader = FlatJSONReader(Array(text.utf8))
        guard reader.beginObject() else { return nil }
        var fields: [Field] = []
        while let key = reader.nextKey() {
            guard Self.isFieldName(key), fields.count < Self.maximumFields, !fields.contains(where: { $0.name == key }) else { return nil }
            if let flag = reader.boolean() {
                fields.append(Field(key, .flag(flag)))
            } else if let value = reader.string(), Self.isStoredValue(value) {
                fields.append(Field(key, .text(value)))
            } else {
                return nil
            }
        }
        guard reader.endedCleanly, !fields.isEmpty else { return nil }
        self.fields = fields
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

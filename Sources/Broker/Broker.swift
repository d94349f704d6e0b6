import ServiceLifecycle

/// Receives the events of the sessions this node subscribed to. One sink per node (its session registry), the way
/// one Redis subscriber connection per node receives every message of its channels.
public protocol SessionEventSink: Sendable {
    /// Called for every event of a subscribed session, after the event is stored. Calls for one session may arrive
    /// out of order or not at all if the transport loses them; readers use event ids and ``Broker/events(of:after:)``
    /// to fill gaps.
    ///
    /// Synchronous, and called on the thread that has the event (a publishing request's, a Redis connection's event
    /// loop): it must hand the event on without blocking, and it costs no hop to another executor.
    func deliver(_ event: StoredEvent, to id: SessionID)

    /// Called when a subscribed session turned out to be gone before its expiry: its store lost it (Redis restarted
    /// empty, or was flushed). A reconnecting reader would find nothing, so its streams should end in a way that
    /// tells the reader to start over at once. Called from the broker's own task; must not block.
    func sessionEnded(_ id: SessionID)

    /// Called for a message on one of Tandem's channels that is not a Tandem event (written by something else, or
    /// damaged): it is dropped, and this counts it. Must not block.
    func messageRejected()
}

extension SessionEventSink {
    public func messageRejected() {}
}

/// Stores sessions and carries their events between nodes. Implementations: ``InMemoryBroker`` for one node, a Redis
/// broker for many. Shaped after what Redis does well: a record with a TTL, an atomic check-and-append for each
/// event, a short log per session for replay, and per-session channels a node subscribes to while it holds a stream.
///
/// `run()` owns background work (connections, sweeping expired sessions) until cancelled or shut down.
public protocol Broker: Service {
    /// Returns the session, creating it (status `waiting`, expiring after `ttl`, guarded by `readerKey`) when it
    /// does not exist. An existing session is returned as it is: opening it again does not reset it or its key.
    ///
    /// Nil when the ID's session has ended (expired) less than its own TTL ago: an ended session leaves a tombstone
    /// for at least its TTL, so a stranger who names an old ID (an old QR code) cannot open it again and receive what
    /// a phone that still has the old page sends.
    ///
    /// A new session's PC is present from its opening: for the hold lease when the opener is the PC's own stream
    /// (`heldByStream`, the article's way), for the grace otherwise (`POST /api/sessions`; its stream holds it once
    /// it attaches).
    func openSession(_ id: SessionID, ttl: Duration, readerKey: String?, heldByStream: Bool) async throws -> SessionRecord?

    /// The session, or nil when it does not exist or has expired.
    func session(_ id: SessionID) async throws -> SessionRecord?

    /// Stores `event` in the session's log and fans it out, if it moves the session forward (see ``SessionStatus``).
    /// A `.complete` event stores its submission in the record in the same step. Returns only once the event is
    /// stored, so an acknowledged event can always be replayed.
    ///
    /// The phone's steps (``SessionEvent/isPhoneStep``) need the phone's claim and the PC, checked in this order, in
    /// the same atomic step as the publish:
    /// - `phone` (when given) must be the phone that claimed the session (``PhoneClaim/key``), else
    ///   ``PublishOutcome/claimedByAnother(_:)``. A session nobody claimed is claimed by this step when
    ///   ``PhoneClaim/mayClaim`` (the record keeps the key and the pairing code, and `.connected` carries the code),
    ///   else ``PublishOutcome/notClaimed(_:)``. Without `phone` (a trusted caller: tools, tests) the claim is not
    ///   looked at.
    /// - When the PC's presence has lapsed (see ``holdPresence(of:side:)``), the session is cancelled instead
    ///   (`cancelled` with reason `pc-left` is stored and fanned out), and the answer is
    ///   ``PublishOutcome/cancelled(_:)``.
    ///
    /// Publishing `.cancelled` ends the session whatever its presence. The presence notices are published by the
    /// broker itself (``reviewPresence(of:side:)``, ``holdPresence(of:side:)``).
    ///
    /// `idempotencyKey`, when given, is stored with the step it publishes (in ``SessionRecord/idempotencyKeys``), so
    /// that a retry of the same call can be recognised after the session has moved on.
    func publish(_ event: SessionEvent, to id: SessionID, from phone: PhoneClaim?, idempotencyKey: String?) async throws -> PublishOutcome

    /// Looks at one side's presence of a session that is not over, and acts on what it finds, atomically:
    /// - `.pc`: the PC's presence has lapsed: the session is cancelled (`pc-left`, stored and fanned out), so the
    ///   phone is told now, not at its next call. A node calls it once the grace after its last PC stream closed is
    ///   over, and every presence round for the sessions whose phone streams it holds.
    /// - `.phone`: the phone's presence has lapsed and the phone was not already away: `phone-left` is stored and
    ///   fanned out (to the PC). A node calls it once the grace after its last phone stream closed is over.
    /// Returns what was published, or ``PublishOutcome/unchanged(_:)``.
    func reviewPresence(of id: SessionID, side: PresenceSide) async throws -> PublishOutcome

    /// ``reviewPresence(of:side:)`` of each of `ids`, for a presence round, which needs only what was published:
    /// nothing is answered about the sessions it leaves as they are (or that are gone), so a round over many sessions
    /// costs little. Returns the events published (each also fanned out as usual), in the order of `ids`.
    func reviewPresence(of ids: [SessionID], side: PresenceSide) async throws -> [StoredEvent]

    /// This node holds streams of these sessions, of one side (the PC's, or the phone's channel): that device is
    /// present for the broker's *hold* lease from now, made anew if it had lapsed (a held stream is proof that it is
    /// there). A node calls it when a stream attaches again and every third of the grace. The hold lease is long (a
    /// minute), so that a stall of the store or of the node shorter than that never makes a device look gone; a
    /// device that leaves is told by ``releasePresence(of:side:)``. A phone that comes back after
    /// ``SessionEvent/phoneLeft`` gets ``SessionEvent/phoneReturned`` published, in the same step.
    ///
    /// Returns the IDs among `ids` whose sessions no longer exist (the store lost them, or they expired), so their
    /// streams can be ended; a lost session's ID keeps a tombstone, so it is not opened again by a stranger.
    func holdPresence(of ids: [SessionID], side: PresenceSide) async throws -> [SessionID]

    /// The last stream of this side of this session on this node closed: the device stays present for the presence
    /// grace from now, unless a stream holds it again before (a reconnect, to any node). A lapsed presence stays
    /// lapsed. A session's PC presence starts, for the grace, when it is opened; its phone's, when the phone's channel
    /// first attaches.
    func releasePresence(of id: SessionID, side: PresenceSide) async throws

    /// The session's stored events with ids greater than `after`, in order; empty for an unknown session.
    func events(of id: SessionID, after: EventID) async throws -> [StoredEvent]

    /// Starts delivering the session's events to this node's sink. Counted: each call needs one ``unsubscribe(_:)``,
    /// and the session stays subscribed while any count remains. Returns once delivery is in place, or, while the
    /// broker is disconnected, once the subscription is recorded: it is made on reconnect, and the session's logged
    /// events are delivered again then.
    func subscribe(_ id: SessionID) async throws

    /// Drops one count taken by ``subscribe(_:)``.
    func unsubscribe(_ id: SessionID) async

    /// A short word for health reports: `ok`, or why not.
    var health: BrokerHealth { get async }

    /// Stores this node's report for `ttl` and returns the live reports of every node (this one's included), at most
    /// `limit`, freshest first (for the operators' page). Reports older than `ttl`, or more than `ttl` ahead, are not
    /// returned, nor those `accept` refuses (other nodes' words: whatever else wrote the store); brokers that share
    /// reports delete all of those, so that they cannot crowd the real ones out of the limit.
    func exchangeReport(_ report: NodeReport, ttl: Duration, limit: Int, accept: (NodeReport) -> Bool) async throws -> [NodeReport]
}

extension Broker {
    /// Publishes without a claim or an idempotency key (a trusted caller).
    public func publish(_ event: SessionEvent, to id: SessionID) async throws -> PublishOutcome {
        try await publish(event, to: id, from: nil, idempotencyKey: nil)
    }

    /// Publishes without a claim (a trusted caller).
    public func publish(_ event: SessionEvent, to id: SessionID, idempotencyKey: String?) async throws -> PublishOutcome {
        try await publish(event, to: id, from: nil, idempotencyKey: idempotencyKey)
    }

    /// One review after another (a broker with nothing cheaper, such as a test's).
    public func reviewPresence(of ids: [SessionID], side: PresenceSide) async throws -> [StoredEvent] {
        var published: [StoredEvent] = []
        for id in ids {
            if case .published(let stored, _) = try await reviewPresence(of: id, side: side) { published.append(stored) }
        }
        return published
    }

    /// Holds the PCs' presence.
    public func holdPresence(of ids: [SessionID]) async throws -> [SessionID] {
        try await holdPresence(of: ids, side: .pc)
    }

    /// Releases the PC's presence.
    public func releasePresence(of id: SessionID) async throws {
        try await releasePresence(of: id, side: .pc)
    }

    /// Opens a session without a reader key (the seed's way: the PC's stream opens it).
    /// Opens a session whose PC attaches later.
    public func openSession(_ id: SessionID, ttl: Duration, readerKey: String?) async throws -> SessionRecord? {
        try await openSession(id, ttl: ttl, readerKey: readerKey, heldByStream: false)
    }

    public func openSession(_ id: SessionID, ttl: Duration) async throws -> SessionRecord? {
        try await openSession(id, ttl: ttl, readerKey: nil)
    }
}

/// Whether the broker can serve requests now.
public struct BrokerHealth: Sendable, Equatable {
    /// The store is reachable (liveness: a node that cannot reach it is degraded).
    public var isAvailable: Bool
    public var detail: String
    /// Why the store, although reachable, refuses to store right now (out of memory, a read-only replica, ...); nil
    /// when it stores. A node whose store refuses writes is alive but should not get traffic (readiness).
    public var refusal: String?

    public init(isAvailable: Bool, detail: String, refusal: String? = nil) {
        self.isAvailable = isAvailable
        self.detail = detail
        self.refusal = refusal
    }

    public static let ok = BrokerHealth(isAvailable: true, detail: "ok")
}

import Broker
import HTTP
import Logging
import NIOCore
import NIOHTTP1

extension API {
    /// `GET /api/events?session=ID`: the main device's event stream.
    ///
    /// Opens the session if it is new (the seed's pages make their own IDs) and never resets an existing one. A
    /// browser that reconnects sends `Last-Event-ID`; it gets the events it missed, then live ones, each once. A
    /// reconnect to a session that has expired gets 404, which stops `EventSource` from retrying forever.
    ///
    /// Only the opener reads a session. A session made by `POST /api/sessions` is read with its `key`. One opened
    /// here gets a fresh reader key in an HttpOnly cookie scoped to this path, which the opener's browser sends
    /// with every reconnect (the seed's client code does not change); anyone else, with the ID from the QR code
    /// but without the key, gets 403.
    @Sendable func events(_ request: Request, logger: Logger) async throws -> Response {
        let id = try sessionIDQuery(of: request, shape: .action)
        // HEAD asks what a GET would answer, without its effects: no session is opened and nothing is subscribed.
        if request.method == .HEAD {
            // A GET of a server-made ID never opens it: unknown, it is 404 for HEAD too.
            if id.isServerMade, try await broker.session(id) == nil { throw APIError.sessionNotFound(.action) }
            return Response(status: .ok, headers: EventStreamWriter.headers, body: .eventStream { _ in })
        }
        // Only a request that may open the session offers a key (one `getrandom` fewer for every other stream).
        let opens = !request.headers.contains(name: "last-event-id") && !id.isServerMade
        let offeredKey = opens ? SessionID.randomHex128() : nil
        do {
            return try await authorizedStream(id, offering: offeredKey, request: request, logger: logger)
        } catch let error as BrokerError where error.code != .corruptSession {
            // A request that opens a session may have opened it before the broker failed (or opened it and lost the
            // answer): its browser gets the key it offered, or its reconnect would be refused (403) by its own
            // session. A browser that holds a key for this session keeps it.
            guard let offeredKey, request.cookie(Self.readerCookieName(of: id)) == nil else { return retryLater(after: error, logger: logger) }
            let cookie = sessionCookie(
                named: Self.readerCookieName(of: id), lifetime: configuration.sessionTTL.components.seconds, key: offeredKey, request: request)
            return retryLater(after: error, setting: cookie, logger: logger)
        }
    }

    /// The answer to a stream request the broker failed: a 503 would make EventSource give up (and a page start a
    /// new session, hiding what the phone already sent); an empty stream with a retry hint makes it come back later
    /// with its Last-Event-ID instead.
    private func retryLater(after error: BrokerError, setting cookie: String? = nil, logger: Logger) -> Response {
        logger.debug("broker failed; the stream is asked to retry", metadata: ["error": "\(error)"])
        metrics.refused(status: 503)
        let retry = configuration.retryMilliseconds
        var headers = EventStreamWriter.headers
        if let cookie { headers.add(name: "Set-Cookie", value: cookie) }
        return Response(status: .ok, headers: headers, body: .stream { body in
            let writer = EventStreamWriter(body)
            try await writer.sendComment("broker unavailable")
            try await writer.sendRetry(milliseconds: retry)
        })
    }

    /// Opens or finds the session, checks the reader's key, and opens its stream.
    ///
    /// A GET opens a session only the seed's way: an ID the page made, never seen before. A server-made ID
    /// (``SessionID/isServerMade``) is only ever found, never opened, and an ID whose session ended less than a TTL
    /// ago is refused (the broker keeps a tombstone), so a stranger cannot take over an expired QR code.
    /// `offeredKey`: the reader key this request opens the session with if it is new; nil when it may not open it.
    private func authorizedStream(_ id: SessionID, offering offeredKey: String?, request: Request, logger: Logger) async throws -> Response {
        let record: SessionRecord
        if let offeredKey {
            guard let opened = try await broker.openSession(id, ttl: configuration.sessionTTL, readerKey: offeredKey, heldByStream: true) else {
                throw APIError.sessionNotFound(.action)
            }
            record = opened
        } else {
            guard let existing = try await broker.session(id) else { throw APIError.sessionNotFound(.action) }
            record = existing
        }
        var headers = EventStreamWriter.headers
        // Every session Tandem opens has a reader key; one without (a record written by something else) is read by
        // nobody rather than by everybody.
        guard let readerKey = record.readerKey else { throw APIError.readerKeyRequired }
        if readerKey == offeredKey {
            // This request opened the session: its browser gets the key for its reconnects.
            metrics.sessionOpened()
            headers.add(name: "Set-Cookie", value: readerCookie(of: record, key: readerKey, request: request))
        } else {
            guard Self.presentsReaderKey(request, of: id, readerKey: readerKey) else { throw APIError.readerKeyRequired }
        }
        let (resumeAfter, resync) = Self.resumePoint(of: request, in: record)
        // A session opened by this request is present from its opening; a PC that comes back renews its presence.
        let opened = record.readerKey == offeredKey
        return try await openStream(
            record, after: resumeAfter, resync: resync, renewingPresence: !opened, audience: .pc, headers: headers, logger: logger)
    }

    /// `GET /api/phone/events?session=ID`: the phone's own channel (see docs/protocol.md). Only the phone that
    /// claimed the session reads it: 403 `phone_key_required` while nobody has, 409 `already_claimed` for another
    /// device. Holding it keeps the phone present; the PC hears `phone-left` when it is gone past the grace.
    @Sendable func phoneEvents(_ request: Request, logger: Logger) async throws -> Response {
        let id = try sessionIDQuery(of: request, shape: .action)
        // The whole lookup is inside: a phone that reconnects while its node has no broker yet (a restart) is asked to
        // come back later, as the PC is, instead of a 503 that would make EventSource give up for good.
        do {
            guard let record = try await broker.session(id) else { throw APIError.sessionNotFound(.action) }
            guard record.phoneKey != nil else { throw APIError.phoneKeyRequired }
            guard Self.isClaimant(request, of: record) else { throw APIError.alreadyClaimed(.action) }
            if request.method == .HEAD {
                return Response(status: .ok, headers: EventStreamWriter.headers, body: .eventStream { _ in })
            }
            let (resumeAfter, resync) = Self.resumePoint(of: request, in: record)
            return try await openStream(
                record, after: resumeAfter, resync: resync, renewingPresence: true, audience: .phone, headers: EventStreamWriter.headers,
                logger: logger)
        } catch let error as BrokerError where error.code != .corruptSession {
            return retryLater(after: error, logger: logger)
        }
    }

    /// Where a reader resumes: after its `Last-Event-ID` when the session's log knows that id. The header is the
    /// client's word: an id past the log (or past 2^64, or not a number at all) is not believed, so nothing computed
    /// from it can overflow; such a reader resumes after the whole log with a `resync` (the session's state in one
    /// event) instead of silence.
    static func resumePoint(of request: Request, in record: SessionRecord) -> (after: EventID, resync: Bool) {
        guard let header = request.headers.first(name: "last-event-id") else { return (0, false) }
        guard let claimed = EventID(header.trimmingSpaces()), claimed <= record.lastEventID else { return (record.lastEventID, true) }
        return (claimed, false)
    }

    /// The cookie that carries a session's reader key: HttpOnly (no script reads it), sent only to the API,
    /// never cross-site, and `Secure` whenever the page is served over HTTPS (so it never travels in clear).
    func readerCookie(of record: SessionRecord, key: String, request: Request) -> String {
        sessionCookie(named: Self.readerCookieName(of: record.id), createdAt: record.createdAt, expiresAt: record.expiresAt, key: key, request: request)
    }

    /// A cookie that carries one of a session's keys, for as long as the session lives (created at `createdAt`,
    /// expiring at `expiresAt`, in milliseconds).
    func sessionCookie(named name: String, createdAt: Int64, expiresAt: Int64, key: String, request: Request) -> String {
        let (lifetime, overflow) = expiresAt.subtractingReportingOverflow(createdAt)
        // As long as the session lives, but never longer than any node lets a session live, whatever times a store
        // holds (both come from it). Not this node's TTL: the session may have been made by a node configured longer.
        let seconds = min(overflow ? 1 : lifetime / 1000, Int64(TandemConfiguration.sessionTTLSecondsRange.upperBound))
        return sessionCookie(named: name, lifetime: seconds, key: key, request: request)
    }

    /// A cookie that carries one of a session's keys for `lifetime` seconds (at least one).
    func sessionCookie(named name: String, lifetime: Int64, key: String, request: Request) -> String {
        let maxAge = max(1, lifetime)
        var cookie = "\(name)=\(key); Path=\(Self.readerCookiePath); Max-Age=\(maxAge); HttpOnly; SameSite=Strict"
        if Self.isSecure(request, configuration: configuration) { cookie += "; Secure" }
        return cookie
    }

    /// Where the browser sends the reader cookie: the stream, and `POST /api/cancel`, which the PC calls to end its
    /// session.
    static let readerCookiePath = "/api"

    /// Whether a request carries a session's reader key: the cookie `tandem_reader_<ID>`, or for clients without it
    /// the `key` query (a page of another origin listed in `cors.allowedOrigins` embeds the PC side: its browser never
    /// sends Tandem's SameSite=Strict cookie, so it keeps the key `POST /api/sessions` returned, in memory, and sends it
    /// here; the access log never writes queries). Either may be stale while the other is right.
    static func presentsReaderKey(_ request: Request, of id: SessionID, readerKey: String) -> Bool {
        [request.cookie(readerCookieName(of: id)), request.query("key")].contains { $0.map { constantTimeEquals($0, readerKey) } ?? false }
    }

    /// The reader cookie's name: one per session, so a PC page that starts a new session keeps no stale key.
    static func readerCookieName(of id: SessionID) -> String { "tandem_reader_" + id.rawValue }

    /// Whether the browser reached Tandem over HTTPS: the configured public URL is https, or a trusted proxy says so
    /// (`X-Forwarded-Proto`; from anyone else the header is ignored).
    static func isSecure(_ request: Request, configuration: TandemConfiguration) -> Bool {
        if configuration.publicBaseIsHTTPS { return true }
        // The peer's address as text only when a proxy could have set the header (inet_ntop on each cookie otherwise).
        guard configuration.trustedProxyList != .none, let peer = request.remoteAddress?.ipAddress, configuration.trustedProxyList.contains(peer),
            let proto = request.headers.first(name: "x-forwarded-proto")
        else { return false }
        // A chain of proxies appends; the nearest (last) hop is the one that terminated the browser's connection.
        return proto.split(separator: ",", omittingEmptySubsequences: false).last?.trimmingSpaces().lowercased() == "https"
    }

    /// Registers the stream and subscribes the session before answering, so nothing published from now on can be
    /// missed; the replay of what the reader missed is read after that and sent first.
    private func openStream(
        _ record: SessionRecord, after resumeAfter: EventID, resync: Bool, renewingPresence: Bool, audience: PresenceSide,
        headers: HTTPHeaders, logger: Logger
    ) async throws -> Response {
        let id = record.id
        let broker = self.broker
        let registries = self.registry
        // The stream is in its session's registry before the subscription, so nothing published from now on can be
        // missed: what arrives meanwhile waits in its buffer.
        let registry = registries.route(id)
        let now = time.now()
        let expiresAt = record.expiresAt
        // The reader has the events up to its resume point, and the opening writes those after it up to the record's
        // last: a later hand of any of them (a broker's redelivery) is no write.
        let handedThrough = max(resumeAfter, record.lastEventID)
        // A PC whose session a phone took: its node looks at the phone's presence too (see `sessionsAwaitingPhone`).
        let phoneEngaged = audience == .pc && (record.status == .connected || record.status == .inputting)
        let attached: (token: Int, items: AsyncStream<StreamItem>)?
        if let local = SessionRegistries.onItsLoop(registry, (id, expiresAt, audience, now, handedThrough, phoneEngaged), {
            $0.attach($1.0, expiresAt: $1.1, audience: $1.2, now: $1.3, handedThrough: $1.4, phoneEngaged: $1.5)
        }) {
            attached = local
        } else {
            attached = await registry.attach(
                id, expiresAt: expiresAt, audience: audience, now: now, handedThrough: handedThrough, phoneEngaged: phoneEngaged)
        }
        guard let (token, items) = attached else {
            registries.release(id)
            throw APIError.sessionNotFound(.action)
        }
        if audience == .pc { metrics.ops?.pcAttached(id, status: record.status, createdAt: record.createdAt, expiresAt: expiresAt) }
        let missed: [StoredEvent]
        do {
            if renewingPresence {
                // A device that comes back within the grace is present again from now (sent alongside the subscription).
                async let held = broker.holdPresence(of: [id], side: audience)
                try await broker.subscribe(id)
                _ = try? await held
            } else {
                // No child task when there is nothing to send alongside: its memory would stay with the request's task.
                try await broker.subscribe(id)
            }
            do {
                missed = try await broker.events(of: id, after: resumeAfter)
            } catch {
                await broker.unsubscribe(id)
                throw error
            }
        } catch {
            // This request held its device present (it opened the session for the hold lease, or renewed the
            // presence): the stream leaves as one that closed does, so a page that never comes back reads as gone
            // after the grace, not after the whole lease. Its subscription, if any, was given back above.
            await SessionStream.depart(
                id, token: token, side: audience, registry: registry, registries: registries, broker: broker, metrics: metrics,
                reviewDelay: configuration.presenceReviewDelay, subscribed: false, sessionOver: record.status.isFinal)
            throw error
        }
        var opening = EventStreamChannel.buffer(capacity: 512)
        ServerSentEvent.writeRetry(milliseconds: configuration.retryMilliseconds, to: &opening)
        // The session info carries the resume point as its id, so the browser's Last-Event-ID is never lost.
        ServerSentEvent.sessionInfo(record, ttlMinutes: ttlMinutes, resumePoint: resumeAfter, now: now, for: audience)
            .write(to: &opening)
        if resync { ServerSentEvent.resync(record, for: audience).write(to: &opening) }
        for event in missed { ServerSentEvent(stored: event, for: audience)?.write(to: &opening) }
        // What the log says of the phone since the record was read: events published before the subscription are
        // never delivered, only replayed here.
        let phoneEngagedNow = audience == .pc && missed.reduce(phoneEngaged) { SessionRegistry.phoneEngaged(after: $1.event, was: $0) }
        if let last = missed.last?.id, last > handedThrough || phoneEngagedNow != phoneEngaged {
            if SessionRegistries.onItsLoop(registry, (id, token, last, phoneEngagedNow), {
                $0.openingWrites(through: $1.2, session: $1.0, token: $1.1, phoneEngaged: $1.3)
            }) == nil {
                await registry.openingWrites(through: last, session: id, token: token, phoneEngaged: phoneEngagedNow)
            }
        }
        let stream = SessionStream(
            sessionID: id, audience: audience, resumeAfter: resumeAfter, opening: SessionStream.Opening(opening, replayed: missed), items: items,
            registry: registry, token: token, registries: registries, broker: broker, metrics: metrics,
            reviewDelay: configuration.presenceReviewDelay)
        return Response(status: .ok, headers: headers, body: .eventStream { channel in await stream.run(on: channel) })
    }

    /// The reconnect delay suggested to browsers whose stream ends because the node drains.
    static let drainRetryMilliseconds = 250
}

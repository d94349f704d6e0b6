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
            return Response(status: .ok, headers: EventStreamWriter.headers, body: .eventStream { _ in nil })
        }
        do {
            return try await authorizedStream(id, request: request, logger: logger)
        } catch let error as BrokerError where error.code != .corruptSession {
            // A 503 would make EventSource give up (and a page start a new session, hiding what the phone already
            // sent). An empty stream with a retry hint makes it come back later with its Last-Event-ID instead.
            logger.debug("broker failed; the stream is asked to retry", metadata: ["error": "\(error)"])
            metrics.refused(status: 503)
            let retry = configuration.retryMilliseconds
            return Response(status: .ok, headers: EventStreamWriter.headers, body: .stream { body in
                let writer = EventStreamWriter(body)
                try await writer.sendComment("broker unavailable")
                try await writer.sendRetry(milliseconds: retry)
            })
        }
    }

    /// Opens or finds the session, checks the reader's key, and opens its stream.
    private func authorizedStream(_ id: SessionID, request: Request, logger: Logger) async throws -> Response {
        let resumeAfter = request.headers.first(name: "last-event-id").flatMap { EventID($0.trimmingSpaces()) }
        let cookieName = "tandem_reader_" + id.rawValue
        let offeredKey = SessionID.randomHex128()
        let record: SessionRecord
        if request.headers.contains(name: "last-event-id") {
            guard let existing = try await broker.session(id) else { throw APIError.sessionNotFound(.action) }
            record = existing
        } else {
            record = try await broker.openSession(id, ttl: configuration.sessionTTL, readerKey: offeredKey)
        }
        var headers = EventStreamWriter.headers
        if let readerKey = record.readerKey {
            if readerKey == offeredKey {
                // This request opened the session: its browser gets the key for its reconnects.
                metrics.sessionOpened()
                let maxAge = max(1, (record.expiresAt - record.createdAt) / 1000)
                headers.add(name: "Set-Cookie", value: "\(cookieName)=\(readerKey); Path=/api/events; Max-Age=\(maxAge); HttpOnly; SameSite=Strict")
            } else {
                let presented = request.query("key") ?? request.cookie(cookieName) ?? ""
                guard constantTimeEquals(presented, readerKey) else { throw APIError.readerKeyRequired }
            }
        }
        return try await openStream(record, after: resumeAfter ?? 0, headers: headers, logger: logger)
    }

    /// Registers the stream and subscribes the session before answering, so nothing published from now on can be
    /// missed; the replay of what the reader missed is read after that and sent first.
    private func openStream(_ record: SessionRecord, after resumeAfter: EventID, headers: HTTPHeaders, logger: Logger) async throws -> Response {
        let id = record.id
        let broker = self.broker
        let registry = self.registry
        let stream = SessionStream(
            sessionID: id, expiresAt: record.expiresAt, resumeAfter: resumeAfter, bufferLimit: configuration.bufferedEvents,
            metrics: metrics, broker: broker, registry: registry)
        registry.attach(stream)
        let missed: [StoredEvent]
        do {
            try await broker.subscribe(id)
            do {
                missed = try await broker.events(of: id, after: resumeAfter)
            } catch {
                await broker.unsubscribe(id)
                throw error
            }
        } catch {
            registry.detach(stream)
            throw error
        }
        var opening = ByteBuffer()
        ServerSentEvent.writeRetry(milliseconds: configuration.retryMilliseconds, to: &opening)
        // The session info carries the resume point as its id, so the browser's Last-Event-ID is never lost.
        ServerSentEvent.sessionInfo(record, ttlMinutes: ttlMinutes, resumePoint: resumeAfter).write(to: &opening)
        for event in missed { ServerSentEvent(stored: event).write(to: &opening) }
        let opened = opening
        return Response(status: .ok, headers: headers, body: .eventStream { channel in
            stream.bind(channel, opening: opened, replayed: missed)
            return stream
        })
    }

    /// The reconnect delay suggested to browsers whose stream ends because the node drains.
    static let drainRetryMilliseconds = 250
}

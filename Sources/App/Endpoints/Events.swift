import Broker
import HTTP
import Logging
import NIOHTTP1
import ServiceLifecycle

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
        let resumeAfter = request.headers.first(name: "last-event-id").flatMap { EventID($0.trimmingSpaces()) }
        let cookieName = "tandem_reader_" + id.rawValue
        let offeredKey = SessionID.randomHex128()
        let record: SessionRecord
        do {
            if request.headers.contains(name: "last-event-id") {
                guard let existing = try await broker.session(id) else { throw APIError.sessionNotFound(.action) }
                record = existing
            } else {
                record = try await broker.openSession(id, ttl: configuration.sessionTTL, readerKey: offeredKey)
            }
        } catch let error as BrokerError where error.code == .unavailable {
            // A 503 would make EventSource give up (and a page start a new session, hiding what the phone already
            // sent). An empty stream with a retry hint makes it come back later with its Last-Event-ID instead.
            logger.debug("broker unavailable; the stream is asked to retry", metadata: ["error": "\(error)"])
            metrics.refused(status: 503)
            let retry = configuration.retryMilliseconds
            return Response(status: .ok, headers: EventStreamWriter.headers, body: .stream { body in
                let writer = EventStreamWriter(body)
                try await writer.sendComment("broker unavailable")
                try await writer.sendRetry(milliseconds: retry)
            })
        }
        var headers = EventStreamWriter.headers
        headers.add(name: "Connection", value: "keep-alive")
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
        return Response(status: .ok, headers: headers, body: .stream { body in
            try await self.stream(record, after: resumeAfter ?? 0, to: EventStreamWriter(body), logger: logger)
        })
    }

    private func stream(_ record: SessionRecord, after resumeAfter: EventID, to writer: EventStreamWriter, logger: Logger) async throws {
        let id = record.id
        let stream = await registry.attach(id, expiresAt: record.expiresAt)
        writer.onClose { stream.finish() }
        var subscribed = false
        do {
            try await broker.subscribe(id)
            subscribed = true
            try await withGracefulShutdownHandler {
                try await pump(record, after: resumeAfter, from: stream, to: writer)
            } onGracefulShutdown: {
                stream.finish()
            }
        } catch {
            logger.debug("event stream ended", metadata: ["session": "\(id)", "error": "\(error)"])
        }
        await registry.detach(id, stream: stream)
        if subscribed { await broker.unsubscribe(id) }
    }

    /// Sends the session info and missed events, then live events and heartbeats until the stream ends.
    private func pump(_ record: SessionRecord, after resumeAfter: EventID, from stream: SessionRegistry.Stream, to writer: EventStreamWriter) async throws {
        var lastSent = resumeAfter
        // The session info carries the resume point as its id, so the browser's Last-Event-ID is never lost.
        var opening = [ServerSentEvent.sessionInfo(record, ttlMinutes: ttlMinutes, resumePoint: lastSent)]
        let missed = try await broker.events(of: record.id, after: lastSent)
        opening += missed.map(ServerSentEvent.init(stored:))
        lastSent = missed.last?.id ?? lastSent
        try await writer.sendRetry(milliseconds: configuration.retryMilliseconds)
        try await writer.send(opening)
        for event in missed { metrics.delivered(event, live: false) }

        for await item in stream.items {
            switch item {
            case .heartbeat:
                try await writer.sendComment("heartbeat")
            case .event(let stored) where stored.id <= lastSent:
                continue  // already sent, from the replay
            case .event(let stored) where stored.id == lastSent + 1:
                try await writer.send(ServerSentEvent(stored: stored))
                lastSent = stored.id
                metrics.delivered(stored, live: true)
            case .event:
                // A gap: something arrived out of order or was lost on the way. The log has everything, in order.
                let missing = try await broker.events(of: record.id, after: lastSent)
                try await writer.send(missing.map(ServerSentEvent.init(stored:)))
                lastSent = missing.last?.id ?? lastSent
                for event in missing { metrics.delivered(event, live: true) }
            }
        }
        if Task.isShuttingDownGracefully {
            // This node is draining: tell the browser to come back at once (to another node, behind a balancer).
            try? await writer.sendRetry(milliseconds: Self.drainRetryMilliseconds)
        }
    }

    /// The reconnect delay suggested to browsers whose stream ends because the node drains.
    static let drainRetryMilliseconds = 250
}

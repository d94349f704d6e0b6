import Broker
import HTTP

extension ServerSentEvent {
    /// A stored event as the seed's client expects it: named `connected`, `input-started` or `complete`, with the
    /// JSON data the seed sends (`{}` or `{"name","phone"}`), and its log position as `id:`.
    init(stored: StoredEvent) {
        let data =
            switch stored.event {
            case .connected, .inputStarted: "{}"
            case .complete(let submission): JSONValue.object(["name": .string(submission.name), "phone": .string(submission.phone)]).compactText
            case .cancelled(let reason): JSONValue.object(["reason": .string(reason.rawValue)]).compactText
            }
        self.init(event: stored.event.name, id: String(stored.id), data: data)
    }

    /// The last event of a stream whose session is gone before its expiry (its Redis lost it): `event: expired`,
    /// `{"type":"expired"}`, no id (the browser keeps its Last-Event-ID). The PC page starts a new session on it at
    /// once; a client that does not know it reconnects, gets 404, and stops, as after an expiry.
    static let sessionExpired = ServerSentEvent(event: "expired", data: #"{"type":"expired"}"#)

    /// The session's state in one event, for a reader whose resume point the log does not know:
    /// `event: resync`, `{"status","name"?,"phone"?}` (the submission once completed, `reason` once cancelled), with
    /// the log's last id, so the events that follow continue from it.
    static func resync(_ record: SessionRecord) -> ServerSentEvent {
        var data: [String: JSONValue] = ["status": .string(record.status.rawValue)]
        if let submission = record.submission {
            data["name"] = .string(submission.name)
            data["phone"] = .string(submission.phone)
        }
        return ServerSentEvent(event: "resync", id: String(record.lastEventID), data: JSONValue.object(data).compactText)
    }

    /// The first message of every stream: `{"type":"session-info","expiryTime","ttlMinutes","serverTime"}` as an
    /// unnamed (`message`) event. Its id is the stream's resume point, so sending it never moves the browser's
    /// `Last-Event-ID` backwards. `serverTime` (an addition to the article's shape) is the server's clock when it was
    /// sent: `expiryTime - serverTime` is the time left, whatever the PC's clock says and however late the stream
    /// was resumed.
    static func sessionInfo(_ record: SessionRecord, ttlMinutes: JSONValue, resumePoint: EventID, now: Int64) -> ServerSentEvent {
        let data: JSONValue = .object([
            "type": .string("session-info"),
            "expiryTime": .integer(record.expiresAt),
            "ttlMinutes": ttlMinutes,
            "serverTime": .integer(now),
        ])
        return ServerSentEvent(id: String(resumePoint), data: data.compactText)
    }
}

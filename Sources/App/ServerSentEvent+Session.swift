import Broker
import HTTP
import JSON

extension ServerSentEvent {
    /// A stored event as the seed's client expects it: named `connected`, `input-started` or `complete`, with the
    /// JSON data the seed sends (`{}` or `{"name","phone"}`), and its log position as `id:`.
    init(stored: StoredEvent) {
        let data =
            switch stored.event {
            case .connected(let code?): JSONValue.objectText(["code": .string(code)])
            case .connected(nil), .inputStarted, .phoneLeft, .phoneReturned: "{}"
            case .complete(let submission): submission.eventData
            case .cancelled(let reason): JSONValue.objectText(["reason": .string(reason.rawValue)])
            }
        self.init(event: stored.event.name, id: String(stored.id), data: data)
    }

    /// A stored event as `audience` is sent it; nil when that side is not sent it. The PC gets every event. The
    /// phone's channel gets only how the session ended: `pc-left` `{}`, `cancelled` `{"reason"}` (the PC ended it),
    /// `completed` `{}`; never the submission (the phone has it) nor its own steps.
    init?(stored: StoredEvent, for audience: PresenceSide) {
        guard audience == .phone else {
            self.init(stored: stored)
            return
        }
        switch stored.event {
        case .cancelled(.pcLeft): self.init(event: "pc-left", id: String(stored.id), data: "{}")
        case .cancelled(let reason):
            self.init(event: "cancelled", id: String(stored.id), data: JSONValue.objectText(["reason": .string(reason.rawValue)]))
        case .complete: self.init(event: "completed", id: String(stored.id), data: "{}")
        case .connected, .inputStarted, .phoneLeft, .phoneReturned: return nil
        }
    }

    /// Whether `audience` is sent `event` (as ``init(stored:for:)`` decides), without making its frame.
    static func isSent(_ event: SessionEvent, to audience: PresenceSide) -> Bool {
        switch (audience, event) {
        case (.pc, _), (.phone, .cancelled), (.phone, .complete): true
        case (.phone, .connected), (.phone, .inputStarted), (.phone, .phoneLeft), (.phone, .phoneReturned): false
        }
    }

    /// The last event of a stream whose session is gone before its expiry (its Redis lost it): `event: expired`,
    /// `{"type":"expired"}`, no id (the browser keeps its Last-Event-ID). The PC page starts a new session on it at
    /// once; a client that does not know it reconnects, gets 404, and stops, as after an expiry.
    static let sessionExpired = ServerSentEvent(event: "expired", data: #"{"type":"expired"}"#)

    /// The session's state in one event, for a reader whose resume point the log does not know:
    /// `event: resync`, `{"status","name"?,"phone"?}` (the submission once completed, `reason` once cancelled), with
    /// the log's last id, so the events that follow continue from it.
    static func resync(_ record: SessionRecord, for audience: PresenceSide = .pc) -> ServerSentEvent {
        var data: [String: JSONValue] = [:]
        if let submission = record.submission, audience == .pc {
            // A field's name is never one of the event's own members (Submission.reservedFieldNames, checked where a
            // form is read); written first all the same, so the state below is what the reader gets.
            for field in submission.fields { data[field.name] = field.value.json }
        }
        data["status"] = .string(record.status.rawValue)
        if let code = record.pairingCode { data[audience == .pc ? "code" : "pairingCode"] = .string(code) }
        if let reason = record.cancelReason { data["reason"] = .string(reason.rawValue) }
        if audience == .pc, record.phoneAway { data["phoneAway"] = .bool(true) }
        return ServerSentEvent(event: "resync", id: String(record.lastEventID), data: JSONValue.object(data).compactText)
    }

    /// The first message of every stream: `{"type":"session-info","expiryTime","ttlMinutes","serverTime"}` as an
    /// unnamed (`message`) event. Its id is the stream's resume point, so sending it never moves the browser's
    /// `Last-Event-ID` backwards. `serverTime` (an addition to the article's shape) is the server's clock when it was
    /// sent: `expiryTime - serverTime` is the time left, whatever the PC's clock says and however late the stream
    /// was resumed.
    ///
    /// The phone's channel also gets the session's `status` and its `pairingCode`.
    static func sessionInfo(
        _ record: SessionRecord, ttlMinutes: JSONValue, resumePoint: EventID, now: Int64, for audience: PresenceSide = .pc
    ) -> ServerSentEvent {
        // Every stream opens with one: its members in sorted order, as compactText would write them.
        let data =
            if audience == .phone, let code = record.pairingCode {
                JSONValue.objectText([
                    "expiryTime": .integer(record.expiresAt), "pairingCode": .string(code), "serverTime": .integer(now),
                    "status": .string(record.status.rawValue), "ttlMinutes": ttlMinutes, "type": .string("session-info"),
                ])
            } else if audience == .phone {
                JSONValue.objectText([
                    "expiryTime": .integer(record.expiresAt), "serverTime": .integer(now), "status": .string(record.status.rawValue),
                    "ttlMinutes": ttlMinutes, "type": .string("session-info"),
                ])
            } else {
                JSONValue.objectText([
                    "expiryTime": .integer(record.expiresAt), "serverTime": .integer(now), "ttlMinutes": ttlMinutes,
                    "type": .string("session-info"),
                ])
            }
        return ServerSentEvent(id: String(resumePoint), data: data)
    }
}

extension Submission {
    /// The `complete` event's data: `{"name","phone"}` for the article's form, else every field in the form's order
    /// (text as strings, checkboxes as booleans).
    var eventData: String {
        if isArticleForm { return JSONValue.objectText(["name": .string(name), "phone": .string(phone)]) }
        return JSONValue.objectText(members: fields.map { (key: $0.name, value: $0.value.json) })
    }
}

extension Submission.Value {
    var json: JSONValue {
        switch self {
        case .text(let text): .string(text)
        case .flag(let flag): .bool(flag)
        }
    }
}

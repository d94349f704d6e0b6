#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A log entry as the publish script writes it (cjson): `{"id":3,"event":"complete","name":"…","phone":"…"}`.
struct RedisLogEntry: Decodable {
    var id: UInt64
    var event: String
    var name: String?
    var phone: String?
    /// Publish time in microseconds since the epoch (a string: cjson would print a large number with an exponent).
    var t: String?

    static func decode(_ bytes: [UInt8]) -> StoredEvent? {
        guard let entry = try? JSONDecoder().decode(RedisLogEntry.self, from: Data(bytes)) else { return nil }
        let event: SessionEvent
        switch entry.event {
        case "connected": event = .connected
        case "input-started": event = .inputStarted
        case "complete": event = .complete(Submission(name: entry.name ?? "", phone: entry.phone ?? ""))
        default: return nil
        }
        return StoredEvent(id: entry.id, event: event, publishedAt: entry.t.flatMap { Int64($0) } ?? 0)
    }
}

extension SessionRecord {
    /// A record from a session hash's HGETALL reply; nil when a field is missing or malformed.
    init?(id: SessionID, fields reply: RESPValue) {
        guard let parts = reply.array, parts.count >= 2 else { return nil }
        var fields: [String: String] = [:]
        var index = 0
        while index + 1 < parts.count {
            if let key = parts[index].string, let value = parts[index + 1].string { fields[key] = value }
            index += 2
        }
        guard let createdAt = fields["createdAt"].flatMap({ Int64($0) }),
            let expiresAt = fields["expiresAt"].flatMap({ Int64($0) }),
            let status = fields["status"].flatMap(SessionStatus.init(rawValue:)),
            let lastEventID = fields["lastEventID"].flatMap({ EventID($0) })
        else { return nil }
        var submission: Submission?
        if let name = fields["name"], let phone = fields["phone"] { submission = Submission(name: name, phone: phone) }
        self.init(
            id: id, createdAt: createdAt, expiresAt: expiresAt, status: status, submission: submission,
            lastEventID: lastEventID, readerKey: fields["readerKey"])
    }
}

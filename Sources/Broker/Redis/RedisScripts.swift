/// The Lua scripts that make each broker operation one atomic step in Redis, so that every node sees the same
/// session state and no event is published that is not also in the log.
enum RedisScripts {
    /// KEYS[1] session hash, KEYS[2] the ID's tombstone, KEYS[3] the PC's presence. ARGV: createdAt, expiresAt,
    /// ttl (ms), reader key or "", tombstone lifetime (ms), presence grace (ms). Creates the session unless it exists, and returns its fields (HGETALL); returns
    /// {'ended'} when the ID's session has ended and its tombstone is still there. The tombstone is written with
    /// the session and outlives it (by one more TTL): Redis has no hook at expiry to write it then.
    static let openSession = """
        if redis.call('EXISTS', KEYS[1]) == 0 then
          if redis.call('EXISTS', KEYS[2]) == 1 then return {'ended'} end
          redis.call('HSET', KEYS[1], 'createdAt', ARGV[1], 'expiresAt', ARGV[2], 'status', 'waiting', 'lastEventID', 0)
          if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'readerKey', ARGV[4]) end
          redis.call('PEXPIRE', KEYS[1], ARGV[3])
          redis.call('SET', KEYS[2], '1', 'PX', ARGV[5])
          redis.call('SET', KEYS[3], '1', 'PX', ARGV[6])
        end
        return redis.call('HGETALL', KEYS[1])
        """

    /// KEYS[1] session hash, KEYS[2] event log, KEYS[3] the PC's presence. ARGV: target status, event name,
    /// channel, name, phone, publish time, cancel reason. Publishes only an event that moves the session forward:
    /// numbers it, stores it (and a submission) in the same step, gives the log the session's remaining TTL, and
    /// publishes it on the session's channel. A phone's event to a session whose PC presence has lapsed cancels the
    /// session instead (reason pc-left). Returns {outcome, fields[, entry]} with outcome missing, completed,
    /// cancelled, unchanged, published or left (cancelled by this call).
    static let publish = """
        local rank = {waiting = 0, connected = 1, inputting = 2, completed = 3, cancelled = 4}
        local status = redis.call('HGET', KEYS[1], 'status')
        if not status then return {'missing'} end
        if status == 'completed' or status == 'cancelled' then return {status, redis.call('HGETALL', KEYS[1])} end
        local target, event, name, phone, reason, outcome = ARGV[1], ARGV[2], ARGV[4], ARGV[5], ARGV[7], 'published'
        if target ~= 'cancelled' and redis.call('EXISTS', KEYS[3]) == 0 then
          target, event, name, phone, reason, outcome = 'cancelled', 'cancelled', '', '', 'pc-left', 'left'
        end
        if rank[status] >= rank[target] then return {'unchanged', redis.call('HGETALL', KEYS[1])} end
        local id = redis.call('HINCRBY', KEYS[1], 'lastEventID', 1)
        redis.call('HSET', KEYS[1], 'status', target)
        if target == 'completed' then redis.call('HSET', KEYS[1], 'name', name, 'phone', phone) end
        local fields = {id = id, event = event, name = name, phone = phone, t = ARGV[6]}
        if reason ~= '' then fields.reason = reason end
        local entry = cjson.encode(fields)
        redis.call('RPUSH', KEYS[2], entry)
        redis.call('PEXPIRE', KEYS[2], redis.call('PTTL', KEYS[1]))
        redis.call('PUBLISH', ARGV[3], entry)
        return {outcome, redis.call('HGETALL', KEYS[1]), entry}
        """
}

/// Redis key names. The `{ID}` hash tag keeps a session's keys and channel in one Redis Cluster slot.
enum RedisKeys {
    static func session(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:session" }
    static func log(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:log" }
    /// Set when a session is created, living one TTL past the session: while it exists the ID is not opened again.
    static func tombstone(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:opened" }
    /// Exists while the session's PC counts as present; renewed (PEXPIRE) by the node that holds its stream.
    static func presence(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:pc" }
    static func channel(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:events" }

    /// The session of a channel name, or nil for a name that is not one of ours.
    static func session(ofChannel channel: String) -> SessionID? {
        guard channel.hasPrefix("tandem:{"), channel.hasSuffix("}:events") else { return nil }
        return SessionID(String(channel.dropFirst("tandem:{".count).dropLast("}:events".count)))
    }
}

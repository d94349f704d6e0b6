/// The Lua scripts that make each broker operation one atomic step in Redis, so that every node sees the same
/// session state and no event is published that is not also in the log.
enum RedisScripts {
    /// KEYS[1] session hash, KEYS[2] the ID's tombstone. ARGV: createdAt, expiresAt, ttl (ms), reader key or "",
    /// tombstone lifetime (ms). Creates the session unless it exists, and returns its fields (HGETALL); returns
    /// {'ended'} when the ID's session has ended and its tombstone is still there. The tombstone is written with
    /// the session and outlives it (by one more TTL): Redis has no hook at expiry to write it then.
    static let openSession = """
        if redis.call('EXISTS', KEYS[1]) == 0 then
          if redis.call('EXISTS', KEYS[2]) == 1 then return {'ended'} end
          redis.call('HSET', KEYS[1], 'createdAt', ARGV[1], 'expiresAt', ARGV[2], 'status', 'waiting', 'lastEventID', 0)
          if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'readerKey', ARGV[4]) end
          redis.call('PEXPIRE', KEYS[1], ARGV[3])
          redis.call('SET', KEYS[2], '1', 'PX', ARGV[5])
        end
        return redis.call('HGETALL', KEYS[1])
        """

    /// KEYS[1] session hash, KEYS[2] event log. ARGV: target status, event name, channel, name, phone, publish time.
    /// Publishes only an event that moves the session forward: numbers it, stores it (and a submission) in the same
    /// step, gives the log the session's remaining TTL, and publishes it on the session's channel.
    /// Returns {outcome, fields[, entry]} with outcome missing, completed, unchanged or published.
    static let publish = """
        local rank = {waiting = 0, connected = 1, inputting = 2, completed = 3}
        local status = redis.call('HGET', KEYS[1], 'status')
        if not status then return {'missing'} end
        if status == 'completed' then return {'completed', redis.call('HGETALL', KEYS[1])} end
        if rank[status] >= rank[ARGV[1]] then return {'unchanged', redis.call('HGETALL', KEYS[1])} end
        local id = redis.call('HINCRBY', KEYS[1], 'lastEventID', 1)
        redis.call('HSET', KEYS[1], 'status', ARGV[1])
        if ARGV[1] == 'completed' then redis.call('HSET', KEYS[1], 'name', ARGV[4], 'phone', ARGV[5]) end
        local entry = cjson.encode({id = id, event = ARGV[2], name = ARGV[4], phone = ARGV[5], t = ARGV[6]})
        redis.call('RPUSH', KEYS[2], entry)
        redis.call('PEXPIRE', KEYS[2], redis.call('PTTL', KEYS[1]))
        redis.call('PUBLISH', ARGV[3], entry)
        return {'published', redis.call('HGETALL', KEYS[1]), entry}
        """
}

/// Redis key names. The `{ID}` hash tag keeps a session's keys and channel in one Redis Cluster slot.
enum RedisKeys {
    static func session(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:session" }
    static func log(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:log" }
    /// Set when a session is created, living one TTL past the session: while it exists the ID is not opened again.
    static func tombstone(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:opened" }
    static func channel(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:events" }

    /// The session of a channel name, or nil for a name that is not one of ours.
    static func session(ofChannel channel: String) -> SessionID? {
        guard channel.hasPrefix("tandem:{"), channel.hasSuffix("}:events") else { return nil }
        return SessionID(String(channel.dropFirst("tandem:{".count).dropLast("}:events".count)))
    }
}

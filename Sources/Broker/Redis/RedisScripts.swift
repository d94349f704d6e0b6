/// The Lua scripts that make each broker operation one atomic step in Redis, so that every node sees the same
/// session state and no event is published that is not also in the log.
enum RedisScripts {
    /// Shared by both scripts: `problem(session, log)` says why a session's keys do not hold what Tandem writes, or
    /// returns nil when they do. Each script calls it before its first write. Redis does not roll a script back when
    /// it fails half-way, so a check that came after a write would leave that write behind; and once a script has
    /// written, Redis lets its later writes through even out of memory, so a script that starts writing finishes.
    /// The bounds are the Swift decoders' (`StoredEvent.validIDs`, `SessionRecord.validTimes`): a record the script
    /// accepts is one every node can read back.
    static let checks = """
        local MAX_ID = 9007199254740991
        local MAX_TIME = 253402300799999
        local rank = {waiting = 0, connected = 1, inputting = 2, completed = 3, cancelled = 4}
        local function integer(text, max)
          if type(text) ~= 'string' or #text > 16 or not string.match(text, '^%d+$') then return nil end
          local n = tonumber(text)
          if n > max then return nil end
          return n
        end
        local function problem(session, log)
          if redis.call('TYPE', session).ok ~= 'hash' then return 'the record is not a hash' end
          local logType = redis.call('TYPE', log).ok
          if logType ~= 'none' and logType ~= 'list' then return 'the log is not a list' end
          local f = redis.call('HMGET', session, 'status', 'lastEventID', 'createdAt', 'expiresAt', 'name', 'phone')
          if not rank[f[1]] then return 'unknown status' end
          if not integer(f[2], MAX_ID) then return 'lastEventID is not an event id' end
          local createdAt, expiresAt = integer(f[3], MAX_TIME), integer(f[4], MAX_TIME)
          if not createdAt or not expiresAt or createdAt > expiresAt then return 'createdAt or expiresAt is not a time' end
          if (f[5] == false) ~= (f[6] == false) then return 'half a submission' end
          if redis.call('PTTL', session) <= 0 then return 'the record does not expire' end
          return nil
        end

        """

    /// KEYS[1] session hash, KEYS[2] event log, KEYS[3] the ID's tombstone, KEYS[4] the PC's presence. ARGV:
    /// createdAt, expiresAt, ttl (ms), reader key or "", tombstone lifetime (ms), first presence lease (ms).
    /// Creates the session unless it exists. Returns {'ok', fields (HGETALL)}; {'ended'} when the ID's session has
    /// ended and its tombstone is still there; or {'corrupt', why} with nothing changed when the existing keys are
    /// not what Tandem writes. The tombstone is written with the session and outlives it by one more TTL: Redis has
    /// no hook at expiry to write it then.
    static let openSession = checks + """
        if redis.call('EXISTS', KEYS[1]) == 0 then
          if redis.call('EXISTS', KEYS[3]) == 1 then return {'ended'} end
          -- HSET first: Redis refuses a script out of memory only at its first write, and DEL, which it never
          -- refuses, would let everything after it through.
          redis.call('HSET', KEYS[1], 'createdAt', ARGV[1], 'expiresAt', ARGV[2], 'status', 'waiting', 'lastEventID', 0)
          if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'readerKey', ARGV[4]) end
          redis.call('PEXPIRE', KEYS[1], ARGV[3])
          -- A log left without its record (written by something else) must not become the new session's history.
          redis.call('DEL', KEYS[2])
          redis.call('SET', KEYS[3], '1', 'PX', ARGV[5])
          redis.call('SET', KEYS[4], '1', 'PX', ARGV[6])
          return {'ok', redis.call('HGETALL', KEYS[1])}
        end
        local why = problem(KEYS[1], KEYS[2])
        if why then return {'corrupt', why} end
        return {'ok', redis.call('HGETALL', KEYS[1])}
        """

    /// KEYS[1] session hash, KEYS[2] event log, KEYS[3] the PC's presence. ARGV: target status, event name,
    /// channel, name, phone, publish time, cancel reason, idempotency key or "" (stored as `idem:<status>`).
    /// Publishes only an event that moves the session forward: numbers it, stores it (and a submission) in the same
    /// step, gives the log the session's remaining TTL, and publishes it on the session's channel. A phone's event to
    /// a session whose PC presence has lapsed cancels the session instead (reason pc-left).
    /// Returns {outcome, fields[, entry]} with outcome missing, completed, cancelled, unchanged, published or left
    /// (cancelled by this call), or {'corrupt', why} with nothing changed.
    static let publish = checks + """
        if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
        local why = problem(KEYS[1], KEYS[2])
        if why then return {'corrupt', why} end
        local status = redis.call('HGET', KEYS[1], 'status')
        if status == 'completed' or status == 'cancelled' then return {status, redis.call('HGETALL', KEYS[1])} end
        local target, event, name, phone, reason, outcome = ARGV[1], ARGV[2], ARGV[4], ARGV[5], ARGV[7], 'published'
        if target ~= 'cancelled' and redis.call('EXISTS', KEYS[3]) == 0 then
          target, event, name, phone, reason, outcome = 'cancelled', 'cancelled', '', '', 'pc-left', 'left'
        end
        if rank[status] >= rank[target] then return {'unchanged', redis.call('HGETALL', KEYS[1])} end
        local last = tonumber(redis.call('HGET', KEYS[1], 'lastEventID'))
        if last >= MAX_ID then return {'corrupt', 'no event id left'} end
        -- Everything is checked: the writes start here. The id is formatted with %d, since tostring and cjson would
        -- write a large Lua number with an exponent.
        local id = string.format('%d', last + 1)
        redis.call('HSET', KEYS[1], 'lastEventID', id, 'status', target)
        if target == 'completed' then redis.call('HSET', KEYS[1], 'name', name, 'phone', phone) end
        if outcome == 'published' and ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'idem:' .. target, ARGV[8]) end
        local fields = {event = event, name = name, phone = phone, t = ARGV[6]}
        if reason ~= '' then fields.reason = reason end
        local rest = cjson.encode(fields)
        local entry = '{"id":' .. id .. ',' .. string.sub(rest, 2)
        redis.call('RPUSH', KEYS[2], entry)
        redis.call('PEXPIRE', KEYS[2], redis.call('PTTL', KEYS[1]))
        redis.call('PUBLISH', ARGV[3], entry)
        return {outcome, redis.call('HGETALL', KEYS[1]), entry}
        """

    /// KEYS[1] session hash, KEYS[2] the PC's presence, KEYS[3] the ID's tombstone. ARGV: hold lease (ms), tombstone
    /// lifetime (ms). A node holds the PC's stream: the presence is set for the hold lease (made anew if it had
    /// lapsed). Returns 1, or 0 when the session is gone (lost by Redis, or expired), after making sure its ID keeps
    /// a tombstone (NX: an expired session's own tombstone is left as it is).
    static let holdPresence = """
        if redis.call('EXISTS', KEYS[1]) == 1 then
          redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
          return 1
        end
        redis.call('SET', KEYS[3], '1', 'PX', ARGV[2], 'NX')
        return 0
        """
}

/// Redis key names. The `{ID}` hash tag keeps a session's keys and channel in one Redis Cluster slot.
enum RedisKeys {
    static func session(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:session" }
    static func log(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:log" }
    static func channel(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:events" }
    /// Set when a session is created, living one TTL past the session: while it exists the ID is not opened again.
    static func tombstone(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:opened" }
    /// Exists while the session's PC counts as present; renewed (PEXPIRE) by the node that holds its stream.
    static func presence(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:pc" }

    /// The session of a channel name, or nil for a name that is not one of ours.
    static func session(ofChannel channel: String) -> SessionID? {
        guard channel.hasPrefix("tandem:{"), channel.hasSuffix("}:events") else { return nil }
        return SessionID(String(channel.dropFirst("tandem:{".count).dropLast("}:events".count)))
    }
}

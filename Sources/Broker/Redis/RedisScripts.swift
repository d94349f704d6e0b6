/// The Lua scripts that make each broker operation one atomic step in Redis, so that every node sees the same
/// session state and no event is published that is not also in the log.
///
/// What a script costs Redis, counted in instructions (see "Winning back the Redis flow" in BENCHMARKS.md): the
/// call itself about 19k, each key or argument about 1.2k, each `redis.call` 4-7k, each hash field read 2-3k, each
/// `tonumber` or `string.match` of a field about 2k. So a script reads the record once (one `HMGET`, which also
/// refuses a key of another type, instead of a `TYPE`), reads its `PTTL` once (for the check and the log's expiry),
/// and a new session is opened with one `EXISTS` and before the checks are even defined.
enum RedisScripts {
    /// Shared by the scripts: `load(session, log, ...)` reads the record once and says why a session's keys do not
    /// hold what Tandem writes. Each script calls it before its first write. Redis does not roll a script back when
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
        -- Reads the record's status, lastEventID, createdAt, expiresAt, name, phone and then the fields `...`, in one
        -- HMGET. Returns nil when the session does not exist; otherwise the fields (f.last: lastEventID as a number), the
        -- record's PTTL, why the keys are not what Tandem writes (nil when they are) and, when they are, expiresAt as a
        -- number. pcall: a record that is not a
        -- hash is a reason to refuse, not an error. `log` nil: the log's type is left to the write that appends to it
        -- (``append``: RPUSH refuses a key of another type before anything is written), one call fewer per event.
        local function load(session, log, ...)
          local f = redis.pcall('HMGET', session, 'status', 'lastEventID', 'createdAt', 'expiresAt', 'name', 'phone', ...)
          if f.err then return f, 0, 'the record is not a hash' end
          if not f[1] and redis.call('EXISTS', session) == 0 then return nil end
          if log then
            local logType = redis.call('TYPE', log).ok
            if logType ~= 'none' and logType ~= 'list' then return f, 0, 'the log is not a list' end
          end
          if not rank[f[1]] then return f, 0, 'unknown status' end
          f.last = integer(f[2], MAX_ID)
          if not f.last then return f, 0, 'lastEventID is not an event id' end
          local createdAt, expiresAt = integer(f[3], MAX_TIME), integer(f[4], MAX_TIME)
          if not createdAt or not expiresAt or createdAt > expiresAt then return f, 0, 'createdAt or expiresAt is not a time' end
          if (f[5] == false) ~= (f[6] == false) then return f, 0, 'half a submission' end
          local ttl = redis.call('PTTL', session)
          if ttl <= 0 then return f, ttl, 'the record does not expire' end
          return f, ttl, nil, expiresAt
        end
        -- `fields`: the entry's fields as a table for cjson, or as JSON text already (its members after the id, and the
        -- closing brace).
        -- Numbers an event after `last` (the record's lastEventID, as load read it), appends it to the log (the
        -- script's first write: refused, with nothing written, when the log is another type or Redis is out of
        -- memory), stores it with the record's changes `hash` (one HSET; `lastEventID` is put in it), gives the log
        -- the record's remaining `ttl` and publishes it. Returns the entry; or nil and Redis's error (nil when no id
        -- is left), with nothing written. The id is formatted with %d, since tostring and cjson would write a large
        -- Lua number with an exponent.
        local function append(session, log, channel, last, ttl, hash, fields)
          if last >= MAX_ID then return nil end
          local id = string.format('%d', last + 1)
          local entry = '{"id":' .. id .. ',' .. (type(fields) == 'string' and fields or string.sub(cjson.encode(fields), 2))
          local pushed = redis.pcall('RPUSH', log, entry)
          if type(pushed) == 'table' and pushed.err then return nil, pushed.err end
          table.insert(hash, 'lastEventID')
          table.insert(hash, id)
          redis.call('HSET', session, unpack(hash))
          redis.call('PEXPIRE', log, ttl)
          redis.call('PUBLISH', channel, entry)
          return entry
        end
        -- The reply to an append that wrote nothing: the log is not a list, no id is left, or Redis refused the write
        -- (out of memory, a read-only replica), answered as Redis's own error.
        local function unappended(err)
          if not err then return {'corrupt', 'no event id left'} end
          if string.sub(err, 1, 9) == 'WRONGTYPE' then return {'corrupt', 'the log is not a list'} end
          return redis.error_reply(err)
        end

        """

    /// KEYS[1] session hash, KEYS[2] event log, KEYS[3] the ID's tombstone, KEYS[4] the PC's presence. ARGV:
    /// createdAt, expiresAt, ttl (ms), reader key or "", tombstone lifetime (ms), first presence lease (ms).
    /// Creates the session unless it exists. Returns {'ok', fields (HGETALL)}; {'ended'} when the ID's session has
    /// ended and its tombstone is still there; or {'corrupt', why} with nothing changed when the existing keys are
    /// not what Tandem writes. The tombstone is written with the session and outlives it by one more TTL: Redis has
    /// no hook at expiry to write it then. A new session's branch comes before the checks, so it does not define them.
    static let openSession = """
        -- One EXISTS for the usual case: no record, no tombstone and no log.
        local found = redis.call('EXISTS', KEYS[1], KEYS[3], KEYS[2])
        if found == 0 or (found == 1 and redis.call('EXISTS', KEYS[2]) == 1) then
          local fields = {'createdAt', ARGV[1], 'expiresAt', ARGV[2], 'status', 'waiting', 'lastEventID', '0'}
          if ARGV[4] ~= '' then table.insert(fields, 'readerKey'); table.insert(fields, ARGV[4]) end
          -- HSET first: Redis refuses a script out of memory only at its first write, and DEL, which it never
          -- refuses, would let everything after it through.
          redis.call('HSET', KEYS[1], unpack(fields))
          redis.call('PEXPIRE', KEYS[1], ARGV[3])
          -- A log left without its record (written by something else) must not become the new session's history.
          if found == 1 then redis.call('DEL', KEYS[2]) end
          redis.call('SET', KEYS[3], '1', 'PX', ARGV[5])
          redis.call('SET', KEYS[4], '1', 'PX', ARGV[6])
          -- The record did not exist: it holds exactly these fields.
          return {'ok', fields}
        end
        if redis.call('EXISTS', KEYS[1]) == 0 then return {'ended'} end

        """ + checks + """
        local f, ttl, why = load(KEYS[1], KEYS[2])
        if why then return {'corrupt', why} end
        return {'ok', redis.call('HGETALL', KEYS[1])}
        """

    /// KEYS[1] session hash, KEYS[2] event log, KEYS[3] the PC's presence. ARGV: target status, event name,
    /// channel, name, phone, publish time, cancel reason, idempotency key or "" (stored as `idem:<status>`), the phone
    /// key presented ("-" for none; "" for no claim check), pairing code, "1" when the step may claim an unclaimed
    /// session, the new key a claim is made with, a submitted form other than the article's as JSON text ("" for the
    /// article's name and phone), the broker's time now (ms).
    /// Publishes only an event that moves the session forward: numbers it, stores it (and a submission) in the same
    /// step, gives the log the session's remaining TTL, and publishes it on the session's channel. A phone's step is
    /// refused when another phone claimed the session (or, without the right to claim, when nobody did), and claims
    /// it otherwise; to a session whose PC presence has lapsed it cancels the session instead (reason pc-left).
    /// Returns {outcome, fields[, entry]} with outcome missing, completed, cancelled, claimed, unclaimed, unchanged or
    /// left (cancelled by this call), fields as HGETALL's; {'published', summary, entry} and {'unchanged', summary,
    /// lastEventID}, the summary {status, createdAt, expiresAt, phoneKey, pairingCode} (Redis null for none), which
    /// the script knows without reading the record back; or {'corrupt', why} with nothing changed. A session past its
    /// `expiresAt` is missing.
    static let publish = checks + """
        local f, ttl, why, expiresAt = load(KEYS[1], nil, 'phoneKey', 'pairingCode')
        if not f then return {'missing'} end
        if why then return {'corrupt', why} end
        -- Past its expiry time, a session is over whatever its keys' TTL says (as the memory broker has it).
        if expiresAt <= tonumber(ARGV[14]) then return {'missing'} end
        -- The claim this script reads and answers with, checked as the nodes decode it (a key of 1 to 64 bytes and a
        -- code of four digits, both or neither) before anything is written.
        if (not f[7]) ~= (not f[8]) or (f[7] and (#f[7] == 0 or #f[7] > 64 or not string.find(f[8], '^%d%d%d%d$'))) then
          return {'corrupt', 'the claim is not a key and a code'}
        end
        local status = f[1]
        if status == 'completed' or status == 'cancelled' then return {status, redis.call('HGETALL', KEYS[1])} end
        local target, event, name, phone, reason, outcome = ARGV[1], ARGV[2], ARGV[4], ARGV[5], ARGV[7], 'published'
        local step = target ~= 'cancelled'
        local hash = {}
        local holder = f[7]
        if step and ARGV[9] ~= '' then
          if holder then
            if holder ~= ARGV[9] then return {'claimed', redis.call('HGETALL', KEYS[1])} end
          elseif ARGV[11] ~= '1' then
            return {'unclaimed', redis.call('HGETALL', KEYS[1])}
          else
            holder = ARGV[12]
            hash = {'phoneKey', holder, 'pairingCode', ARGV[10]}
          end
        end
        if step and redis.call('EXISTS', KEYS[3]) == 0 then
          target, event, name, phone, reason, outcome, hash = 'cancelled', 'cancelled', '', '', 'pc-left', 'left', {}
        end
        if rank[status] >= rank[target] then
          -- Everything this answers with is checked: a claim made by a step that moves nothing is still kept.
          if #hash > 0 then redis.call('HSET', KEYS[1], unpack(hash)) end
          return {'unchanged', {status, f[3], f[4], holder or false, hash[4] or f[8] or false}, f[2]}
        end
        local code = hash[4] or f[8]
        table.insert(hash, 'status')
        table.insert(hash, target)
        local fields
        if target == 'completed' then
          fields = {event = event, t = ARGV[6]}
          if ARGV[13] ~= '' then
            -- A configured form: stored and published as its JSON text (the node wrote it, in the form's order).
            fields.form = ARGV[13]
            table.insert(hash, 'form'); table.insert(hash, ARGV[13])
          else
            fields.name, fields.phone = name, phone
            table.insert(hash, 'name'); table.insert(hash, name); table.insert(hash, 'phone'); table.insert(hash, phone)
          end
        else
          -- Only Tandem's own tokens (event and reason names, the time's and the code's digits, all checked): the
          -- entry's text is written here, without a table for cjson (a string or table made in Lua costs about 3k
          -- instructions, the encoding 4k more).
          fields = '"event":"' .. event .. '","t":"' .. ARGV[6] .. '"'
          if reason ~= '' then
            fields = fields .. ',"reason":"' .. reason .. '"'
            table.insert(hash, 'cancelReason'); table.insert(hash, reason)
          end
          if event == 'connected' and code then fields = fields .. ',"code":"' .. code .. '"' end
          fields = fields .. '}'
        end
        if outcome == 'published' and ARGV[8] ~= '' then table.insert(hash, 'idem:' .. target); table.insert(hash, ARGV[8]) end
        local entry, err = append(KEYS[1], KEYS[2], ARGV[3], f.last, ttl, hash, fields)
        if not entry then return unappended(err) end
        if outcome == 'left' then return {outcome, redis.call('HGETALL', KEYS[1]), entry} end
        return {outcome, {target, f[3], f[4], holder or false, code or false}, entry}
        """

    /// KEYS[1] session hash, KEYS[2] event log, KEYS[3] the presence of side ARGV[1] (pc or phone). ARGV: side,
    /// channel, publish time. When the side's presence has lapsed and the session is not over: for the PC, cancels
    /// the session (pc-left); for a phone whose channel had attached and that is not already away, publishes
    /// phone-left. Returns {'published', fields, entry}, {'unchanged', fields}, {'missing'} or {'corrupt', why};
    /// with ARGV[4] `quiet` (a presence round), {'unchanged'} without the fields.
    static let reviewPresence = checks + """
        local f, ttl, why = load(KEYS[1], KEYS[2], 'phoneSeen', 'phoneAway')
        if not f then return {'missing'} end
        if why then return {'corrupt', why} end
        local status = f[1]
        local quiet = ARGV[4] == 'quiet'
        if status == 'completed' or status == 'cancelled' or redis.call('EXISTS', KEYS[3]) == 1 then
          if quiet then return {'unchanged'} end
          return {'unchanged', redis.call('HGETALL', KEYS[1])}
        end
        local entry, err
        if ARGV[1] == 'pc' then
          entry, err = append(KEYS[1], KEYS[2], ARGV[2], f.last, ttl, {'status', 'cancelled', 'cancelReason', 'pc-left'},
            {event = 'cancelled', reason = 'pc-left', t = ARGV[3]})
        else
          if f[7] ~= '1' or f[8] == '1' then
            if quiet then return {'unchanged'} end
            return {'unchanged', redis.call('HGETALL', KEYS[1])}
          end
          entry, err = append(KEYS[1], KEYS[2], ARGV[2], f.last, ttl, {'phoneAway', '1'}, {event = 'phone-left', t = ARGV[3]})
        end
        if not entry then return unappended(err) end
        return {'published', redis.call('HGETALL', KEYS[1]), entry}
        """

    /// KEYS[1] session hash, KEYS[2] event log, KEYS[3] the phone's presence, KEYS[4] the ID's tombstone. ARGV: hold
    /// lease (ms), tombstone lifetime (ms), channel, publish time. A node holds the phone's channel: as
    /// ``holdPresence`` for the PC, and the session remembers that its phone had a channel; a phone that was away
    /// gets phone-returned published. Returns 1, or 0 when the session is gone (its ID keeps a tombstone).
    static let holdPhonePresence = checks + """
        local f, ttl, why = load(KEYS[1], KEYS[2], 'phoneSeen', 'phoneAway')
        if not f then
          redis.call('SET', KEYS[4], '1', 'PX', ARGV[2], 'NX')
          return 0
        end
        if why then return 1 end
        if f[8] == '1' and f[1] ~= 'completed' and f[1] ~= 'cancelled' then
          if not append(KEYS[1], KEYS[2], ARGV[3], f.last, ttl, {'phoneAway', '0', 'phoneSeen', '1'}, {event = 'phone-returned', t = ARGV[4]}) then
            return 1
          end
        elseif f[7] ~= '1' then
          redis.call('HSET', KEYS[1], 'phoneSeen', '1')
        end
        redis.call('SET', KEYS[3], '1', 'PX', ARGV[1])
        return 1
        """

    /// KEYS[1] session hash, KEYS[2] the PC's presence, KEYS[3] the ID's tombstone. ARGV: hold lease (ms), tombstone
    /// lifetime (ms). A node holds the PC's stream: the presence is set for the hold lease (made anew if it had
    /// lapsed). Returns 1, or 0 when the session is gone (lost by Redis, or expired), after making sure its ID keeps
    /// a tombstone (NX: an expired session's own tombstone is left as it is).
    /// Reads the operators' reports hash (KEYS[1]) without sending it whole: HSCAN until ARGV[1] fields were seen,
    /// deleting fields whose value is over ARGV[2] bytes, or whose name is not UTF-8, instead of returning them (a
    /// node reads names as Swift strings, so it could never name such a field to delete it). Answers the flat list
    /// field, value, field, value... of the rest, like HGETALL. Run with EVAL (rarely, once a second per node, so no
    /// script cache to keep); its writes are effects, replicated as HDELs. The `{ops}` hash tag keeps the key in one
    /// cluster slot.
    static let readNodeReports = """
        local key, most, largest = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
        local out, oversized, seen, cursor = {}, {}, 0, '0'
        -- Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF).
        local function utf8(s)
          local i, n = 1, #s
          while i <= n do
            local c = string.byte(s, i)
            local len, low, high = 1, 0x80, 0xBF
            if c < 0x80 then len = 1
            elseif c >= 0xC2 and c <= 0xDF then len = 2
            elseif c >= 0xE0 and c <= 0xEF then
              len = 3
              if c == 0xE0 then low = 0xA0 elseif c == 0xED then high = 0x9F end
            elseif c >= 0xF0 and c <= 0xF4 then
              len = 4
              if c == 0xF0 then low = 0x90 elseif c == 0xF4 then high = 0x8F end
            else return false end
            if i + len - 1 > n then return false end
            for k = i + 1, i + len - 1 do
              local b = string.byte(s, k)
              if k == i + 1 then
                if b < low or b > high then return false end
              elseif b < 0x80 or b > 0xBF then return false end
            end
            i = i + len
          end
          return true
        end
        repeat
          local page = redis.call('HSCAN', key, cursor, 'COUNT', 128)
          cursor = page[1]
          local entries = page[2]
          for i = 1, #entries, 2 do
            if seen < most then
              seen = seen + 1
              if #entries[i + 1] > largest or not utf8(entries[i]) then
                oversized[#oversized + 1] = entries[i]
              else
                out[#out + 1] = entries[i]
                out[#out + 1] = entries[i + 1]
              end
            end
          end
        until cursor == '0' or seen >= most
        if #oversized > 0 then redis.call('HDEL', key, unpack(oversized)) end
        return out
        """

    static let holdPresence = """
        if redis.call('EXISTS', KEYS[1]) == 1 then
          redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
          return 1
        end
        redis.call('SET', KEYS[3], '1', 'PX', ARGV[2], 'NX')
        return 0
        """
}

/// The scripts as one deployment runs them, with their hashes once loaded. On a Redis Cluster an event goes out with
/// `SPUBLISH` (sharded Pub/Sub: the message crosses only the shard that owns the session's slot) instead of
/// `PUBLISH` (which a cluster sends to every node).
struct RedisScriptSet: Sendable {
    struct Script: Sendable {
        let text: String
        /// Its SHA1 as `SCRIPT LOAD` answered: the same on every node, since it is the text's.
        var hash = ""
    }

    var openSession: Script
    var publish: Script
    var reviewPresence: Script
    var holdPresence: Script
    var holdPhonePresence: Script

    init(sharded: Bool) {
        func script(_ text: String) -> Script {
            Script(text: sharded ? text.replacing("redis.call('PUBLISH', ", with: "redis.call('SPUBLISH', ") : text)
        }
        openSession = script(RedisScripts.openSession)
        publish = script(RedisScripts.publish)
        reviewPresence = script(RedisScripts.reviewPresence)
        holdPresence = script(RedisScripts.holdPresence)
        holdPhonePresence = script(RedisScripts.holdPhonePresence)
    }

    static var all: [WritableKeyPath<RedisScriptSet, Script>] { [\.openSession, \.publish, \.reviewPresence, \.holdPresence, \.holdPhonePresence] }
}

/// Redis key names. The `{ID}` hash tag keeps a session's keys and channel in one Redis Cluster slot.
enum RedisKeys {
    /// Every node's report for the operators' page. The `{ops}` hash tag is no session ID (those are longer), so it
    /// never shares a session's keys.
    static let nodeReports = "tandem:{ops}:nodes"
    static func session(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:session" }
    static func log(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:log" }
    static func channel(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:events" }
    /// Set when a session is created, living one TTL past the session: while it exists the ID is not opened again.
    static func tombstone(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:opened" }
    /// Exists while the session's PC counts as present; renewed (PEXPIRE) by the node that holds its stream.
    static func presence(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:pc" }
    /// Exists while the session's phone channel counts as present.
    static func phonePresence(_ id: SessionID) -> String { "tandem:{\(id.rawValue)}:phone" }
    static func presence(_ id: SessionID, side: PresenceSide) -> String { side == .pc ? presence(id) : phonePresence(id) }

    /// The session of a channel name, or nil for a name that is not one of ours.
    static func session(ofChannel channel: String) -> SessionID? {
        guard channel.hasPrefix("tandem:{"), channel.hasSuffix("}:events") else { return nil }
        return SessionID(String(channel.dropFirst("tandem:{".count).dropLast("}:events".count)))
    }
}

/// Which master of a Redis Cluster owns which hash slots, read from a `CLUSTER SHARDS` reply (Redis 7).
///
/// The reply comes from outside and is checked as such: every field the topology uses must have its type and range
/// (slots within 0...16383, each range ordered, no slot owned twice, ports 1...65535), or the whole reply is refused
/// (nil) and the caller keeps the topology it had. Fields it does not use (`hostname`, `tls-port`, ...) are ignored,
/// so a newer Redis's additions do not break it.
struct RedisClusterTopology: Equatable, Sendable {
    struct Node: Equatable, Sendable, Hashable {
        let id: String
        let host: String
        let port: Int
        /// `online`: it serves; `loading` or `failed`: not (yet, or any more).
        let isOnline: Bool
    }

    struct Shard: Equatable, Sendable {
        let slots: [ClosedRange<Int>]
        /// The shard's master; nil while it has none (a failover in progress).
        let master: Node?
        let replicas: [Node]
    }

    let shards: [Shard]
    /// The shard index owning each slot, -1 for none: a lookup per command, so an array, not a search.
    private let owners: [Int16]

    init?(shardsReply reply: RESPValue) {
        guard let entries = reply.array, entries.count <= RedisClusterSlot.count else { return nil }
        var shards: [Shard] = []
        var owners = [Int16](repeating: -1, count: RedisClusterSlot.count)
        for entry in entries {
            guard let fields = Self.map(entry), case .array(let slotBounds)? = fields["slots"], case .array(let nodeEntries)? = fields["nodes"],
                slotBounds.count.isMultiple(of: 2)
            else { return nil }
            var slots: [ClosedRange<Int>] = []
            var index = 0
            while index < slotBounds.count {
                guard let start = slotBounds[index].integer, let end = slotBounds[index + 1].integer,
                    RedisClusterSlot.all.contains(Int(clamping: start)), RedisClusterSlot.all.contains(Int(clamping: end)), start <= end
                else { return nil }
                let range = Int(start)...Int(end)
                for slot in range {
                    guard owners[slot] == -1 else { return nil }  // a slot owned twice: the reply contradicts itself
                    owners[slot] = Int16(shards.count)
                }
                slots.append(range)
                index += 2
            }
            var master: Node?
            var replicas: [Node] = []
            for nodeEntry in nodeEntries {
                guard let node = Self.map(nodeEntry), let id = node["id"]?.string, !id.isEmpty,
                    // `endpoint` is what clients should dial, but `cluster-preferred-endpoint-type unknown-endpoint`
                    // leaves it empty (or `?`): then the node's `ip`.
                    let host = [node["endpoint"]?.string, node["ip"]?.string].compactMap({ $0 }).first(where: { !$0.isEmpty && $0 != "?" }),
                    let port = node["port"]?.integer, (1...65_535).contains(port),
                    let role = node["role"]?.string, let health = node["health"]?.string
                else { return nil }
                let parsed = Node(id: id, host: host, port: Int(port), isOnline: health == "online")
                switch role {
                case "master":
                    guard master == nil else { return nil }
                    master = parsed
                case "replica": replicas.append(parsed)
                default: return nil
                }
            }
            shards.append(Shard(slots: slots, master: master, replicas: replicas))
        }
        self.shards = shards
        self.owners = owners
    }

    /// The master serving `slot`, or nil when no online master owns it.
    func master(ofSlot slot: Int) -> Node? {
        guard RedisClusterSlot.all.contains(slot) else { return nil }
        let owner = owners[slot]
        guard owner >= 0, let master = shards[Int(owner)].master, master.isOnline else { return nil }
        return master
    }

    /// The online replicas of the shard owning `slot`: how many can acknowledge a write there (`WAIT`).
    func onlineReplicaCount(ofSlot slot: Int) -> Int {
        guard RedisClusterSlot.all.contains(slot), owners[slot] >= 0 else { return 0 }
        return shards[Int(owners[slot])].replicas.count(where: \.isOnline)
    }

    func master(ofKey key: String) -> Node? {
        master(ofSlot: RedisClusterSlot.of(key))
    }

    /// Whether every slot has an online master (the cluster can serve every session).
    var servesAllSlots: Bool {
        RedisClusterSlot.all.allSatisfy { master(ofSlot: $0) != nil }
    }

    /// The online masters, each once.
    var masters: [Node] {
        shards.compactMap { $0.master }.filter(\.isOnline)
    }

    /// A RESP map sent as a flat array of name/value pairs (RESP2), names distinct; nil for anything else.
    private static func map(_ value: RESPValue) -> [String: RESPValue]? {
        guard let parts = value.array, parts.count.isMultiple(of: 2) else { return nil }
        var fields: [String: RESPValue] = [:]
        var index = 0
        while index < parts.count {
            guard case .bulkString = parts[index], let name = parts[index].string, fields.updateValue(parts[index + 1], forKey: name) == nil else {
                return nil
            }
            index += 2
        }
        return fields
    }
}

/// A `MOVED` or `ASK` error reply: the slot now (or, for `ASK`, for this one command) served elsewhere.
struct RedisClusterRedirect: Equatable, Sendable {
    enum Kind: Equatable, Sendable {
        /// The slot moved for good: refresh the topology, send there.
        case moved
        /// The slot is migrating: send this command there once, after `ASKING`.
        case ask
    }

    let kind: Kind
    let slot: Int
    let host: String
    let port: Int

    /// Parses `MOVED <slot> <host>:<port>` or `ASK <slot> <host>:<port>`; nil for any other error or a malformed one.
    /// The host may be empty (Redis then means "the node you asked"), and an IPv6 host has colons of its own.
    init?(errorMessage message: String) {
        let parts = message.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3 else { return nil }
        switch parts[0] {
        case "MOVED": kind = .moved
        case "ASK": kind = .ask
        default: return nil
        }
        guard parts[1].utf8.count <= 5, parts[1].utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            let slot = Int(parts[1]), RedisClusterSlot.all.contains(slot),
            let colon = parts[2].lastIndex(of: ":")
        else { return nil }
        let portText = parts[2][parts[2].index(after: colon)...]
        guard portText.utf8.count <= 5, portText.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            let port = Int(portText), (1...65_535).contains(port)
        else { return nil }
        self.slot = slot
        self.host = String(parts[2][..<colon])
        self.port = port
    }
}

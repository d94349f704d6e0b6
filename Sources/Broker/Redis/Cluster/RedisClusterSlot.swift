/// The hash slot of a key, as Redis Cluster computes it: CRC16 (XMODEM) of the key's hash tag, or of the whole key
/// when it has none, modulo 16,384. The hash tag is what lies between the first `{` and the first `}` after it, when
/// that is not empty: every key of a session carries `{ID}` (``RedisKeys``), so all of them share one slot and one
/// Lua script can touch them all.
enum RedisClusterSlot {
    static let count = 16_384
    static let all = 0...(count - 1)

    static func of(_ key: String) -> Int {
        of(utf8: Array(key.utf8))
    }

    static func of(utf8 key: [UInt8]) -> Int {
        var hashed = key[...]
        if let open = key.firstIndex(of: UInt8(ascii: "{")),
            let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1
        {
            hashed = key[(open + 1)..<close]
        }
        return Int(crc16(hashed) & UInt16(count - 1))
    }

    /// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as in Redis's `crc16.c`.
    static func crc16(_ bytes: ArraySlice<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int((crc >> 8) ^ UInt16(byte)) & 0xFF]
        }
        return crc
    }

    private static let table: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A session's identifier. It is a capability (whoever knows it can write to the session), so it is never logged whole.
///
/// The seed's pages make their own IDs (`sess_` plus base-36 text), so any ID of 1 to 64 characters from
/// `A-Z a-z 0-9 _ -` is accepted; IDs the server makes come from the system CSPRNG.
public struct SessionID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String

    /// Longest accepted ID, in characters.
    public static let maximumLength = 64

    /// Nil unless `rawValue` has the strict format.
    public init?(_ rawValue: String) {
        let utf8 = rawValue.utf8
        guard (1...Self.maximumLength).contains(utf8.count), utf8.allSatisfy(Self.isAllowed) else { return nil }
        self.rawValue = rawValue
    }

    /// A new ID with 128 bits from the system's CSPRNG (`getrandom` on Linux), as `s_` plus 32 hex digits.
    public static func random() -> SessionID {
        SessionID(unchecked: "s_" + randomHex128())
    }

    /// 128 bits from the system's CSPRNG as 32 hex digits, for IDs and secrets.
    public static func randomHex128() -> String {
        // The 16 bytes in one call: `SystemRandomNumberGenerator` makes a `getrandom` syscall per 8 bytes, and the
        // two were 4 µs of a handoff's node time in a profile (a VM's syscalls are dear). `arc4random_buf` is the
        // same kernel CSPRNG (glibc 2.36+: `getrandom`; Darwin: its own CSPRNG).
        var words: (high: UInt64, low: UInt64) = (0, 0)
        fillRandomly(&words)
        return hex(words.high, words.low)
    }

    /// Fills `value`'s bytes from the system's CSPRNG, in one call.
    static func fillRandomly<T: BitwiseCopyable>(_ value: inout T) {
        withUnsafeMutableBytes(of: &value) { arc4random_buf($0.baseAddress!, $0.count) }
    }

    /// 128 bits as 32 lowercase hex digits, `high` first.
    static func hex(_ high: UInt64, _ low: UInt64) -> String {
        // One string written in place: each step of a handoff mints a key or two, and making the digits as strings
        // and joining them cost four allocations a key.
        return String(unsafeUninitializedCapacity: 32) { digits in
            for index in 0..<16 {
                digits[index] = hexDigits[Int(truncatingIfNeeded: high >> UInt64(60 - 4 * index)) & 0xF]
                digits[16 + index] = hexDigits[Int(truncatingIfNeeded: low >> UInt64(60 - 4 * index)) & 0xF]
            }
            return 32
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Whether the ID has the server's reserved shape (`s_…`, made by ``random()``). Such an ID is only ever
    /// created by the server, never opened by whoever names it; the seed's pages make `sess_…` IDs, which are not.
    public var isServerMade: Bool { rawValue.utf8.starts(with: "s_".utf8) }

    /// A prefix that is safe to log: enough to tell sessions apart in a log, too short to use.
    public var redacted: String { String(rawValue.prefix(6)) + "…" }

    public var description: String { redacted }

    private init(unchecked rawValue: String) {
        self.rawValue = rawValue
    }

    private static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "_"), UInt8(ascii: "-"):
            true
        default:
            false
        }
    }

}

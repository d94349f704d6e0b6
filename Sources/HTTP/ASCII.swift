/// Byte-level ASCII helpers for protocol tokens (header names, media types, `chunked`), which compare without case
/// and must not allocate on every request the way `lowercased()` does.
package enum ASCII {
    /// Whether `bytes` spell `lowercase` (given in lowercase), ignoring ASCII case.
    package static func equalsIgnoringCase(_ bytes: some Collection<UInt8>, lowercase: some Collection<UInt8>) -> Bool {
        bytes.count == lowercase.count && zip(bytes, lowercase).allSatisfy { lowercased($0) == $1 }
    }

    package static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CoreMetrics
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// Which peers are proxies whose `X-Forwarded-For` is believed: exact addresses or CIDR ranges, IPv4 or IPv6.
/// Behind a load balancer every connection comes from the balancer, so per-client limits need the client's address
/// from the header; from any other peer the header is a lie anyone can tell, so it is ignored.
public struct TrustedProxies: Sendable, Equatable {
    private struct Range: Sendable, Equatable {
        var network: [UInt8]
        var prefixLength: Int
    }

    private let ranges: [Range]

    /// No proxy is trusted.
    public static let none = TrustedProxies(ranges: [])

    private init(ranges: [Range]) {
        self.ranges = ranges
    }

    /// Parses entries like `10.0.0.5`, `10.0.0.0/8`, `::1` or `fd00::/8`; nil when one is not an address or range.
    public init?(_ entries: [String]) {
        var ranges: [Range] = []
        for entry in entries {
            let parts = entry.split(separator: "/", maxSplits: 1)
            guard let first = parts.first, let bytes = ClientAddress.bytes(of: String(first)) else { return nil }
            var prefix = bytes.count * 8
            if parts.count == 2 {
                guard let length = Int(parts[1]), (0...bytes.count * 8).contains(length) else { return nil }
                prefix = length
            }
            ranges.append(Range(network: bytes, prefixLength: prefix))
        }
        self.init(ranges: ranges)
    }

    public var isEmpty: Bool { ranges.isEmpty }

    /// Whether `address` (text form) is one of the trusted proxies.
    public func contains(_ address: String) -> Bool {
        guard !ranges.isEmpty, let bytes = ClientAddress.bytes(of: address) else { return false }
        return ranges.contains { range in
            guard range.network.count == bytes.count else { return false }
            var remaining = range.prefixLength
            for index in bytes.indices where remaining > 0 {
                let bits = min(8, remaining)
                let mask: UInt8 = bits == 8 ? 0xFF : ~(0xFF >> UInt8(bits))
                if bytes[index] & mask != range.network[index] & mask { return false }
                remaining -= bits
            }
            return true
        }
    }
}

/// The address of the client a request is for.
enum ClientAddress {
    /// The peer's IP address, or, when the peer is a trusted proxy, the nearest untrusted address in
    /// `X-Forwarded-For` (walking from the right, since each proxy appends the address it saw).
    static func of(peerAddress: String, forwardedFor: @autoclosure () -> [String], trusted: TrustedProxies) -> String {
        guard trusted.contains(peerAddress) else { return peerAddress }
        let hops = forwardedFor().flatMap { $0.split(separator: ",") }.map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
        for hop in hops.reversed() where !trusted.contains(hop) {
            return bytes(of: hop) != nil ? hop : peerAddress
        }
        return hops.first ?? peerAddress
    }

    /// The client of a request with `headers` from `peerAddress`; a forwarding header from a peer that is not a
    /// trusted proxy is ignored, and told to `ignoredForwarding`.
    static func of(peerAddress: String, headers: HTTPHeaders, trusted: TrustedProxies, ignoredForwarding: IgnoredForwarding) -> String {
        if trusted.contains(peerAddress) {
            return of(peerAddress: peerAddress, forwardedFor: headers["x-forwarded-for"], trusted: trusted)
        }
        if headers.contains(name: "x-forwarded-for") || headers.contains(name: "forwarded") {
            ignoredForwarding.noticed(peer: peerAddress)
        }
        return peerAddress
    }

    /// The bytes of an IPv4 or IPv6 address in text form, or nil.
    static func bytes(of text: String) -> [UInt8]? {
        var v4 = [UInt8](repeating: 0, count: 4)
        if inet_pton(AF_INET, text, &v4) == 1 { return v4 }
        var v6 = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET6, text, &v6) == 1 { return v6 }
        return nil
    }
}

/// Forwarding headers (`X-Forwarded-For`, `Forwarded`) that arrived from peers that are not trusted proxies. Such a
/// header is ignored, as it must be; but when the peer is in fact the operator's load balancer, every client behind
/// it shares the balancer's address, its rate-limit budget and its connection cap, and nothing else says so. So the
/// first one is logged as a warning naming the setting and the peer, once per server (not per request, which a
/// client could use to flood the log), and each one is counted in `http_forwarding_headers_ignored_total`.
final class IgnoredForwarding: Sendable {
    private let warned = Atomic<Bool>(false)
    private let counter: CoreMetrics.Counter?
    private let settingName: String
    private let logger: Logger

    init(settingName: String, metrics: (any MetricsFactory)?, logger: Logger) {
        self.settingName = settingName
        self.logger = logger
        counter = metrics.map { CoreMetrics.Counter(label: "http_forwarding_headers_ignored_total", factory: $0) }
    }

    func noticed(peer: String) {
        counter?.increment()
        // A plain load first: after the one warning, no request writes to this shared flag.
        guard !warned.load(ordering: .relaxed), !warned.exchange(true, ordering: .relaxed) else { return }
        logger.warning(
            "X-Forwarded-For or Forwarded header from \(peer), which is not a trusted proxy: the header is ignored, so every client behind that proxy shares its address and its rate limits. If \(peer) is your load balancer, add it to \(settingName). Logged once.",
            metadata: ["peer": "\(peer)"])
    }
}

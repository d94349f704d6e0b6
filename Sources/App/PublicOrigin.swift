#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The origin (`http://host:port`) at which phones reach this node: what the QR code's phone URL starts with.
enum PublicOrigin {
    /// The origin for a node listening on `host`:`port`.
    ///
    /// 1. A configured `publicBaseURL` wins: behind a proxy or NAT only the operator knows the outside address.
    /// 2. Listening on all interfaces (`0.0.0.0`, `::`), the node is reachable on its LAN address, and a phone on
    ///    the same Wi-Fi can use that; loopback would point the phone at itself. Without one, loopback is all
    ///    there is.
    /// 3. Otherwise the address it listens on is the only one that works.
    static func resolve(publicBaseURL: String, host: String, port: Int, lanIPv4: () -> String?) -> String {
        if !publicBaseURL.isEmpty { return publicBaseURL }
        if ["0.0.0.0", "::", "[::]"].contains(host) {
            return "http://\(lanIPv4() ?? "127.0.0.1"):\(port)"
        }
        // An IPv6 literal needs brackets in a URL.
        let urlHost = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        return "http://\(urlHost):\(port)"
    }

    /// The origin for `configuration` once the server is bound to `port` (which differs from the configured one
    /// when that was 0).
    static func resolve(_ configuration: TandemConfiguration, port: Int) -> String {
        resolve(publicBaseURL: configuration.publicBaseURL, host: configuration.host, port: port, lanIPv4: firstLANIPv4)
    }

    /// The first IPv4 address of an interface that is up and not loopback, from `getifaddrs` (a quick, local
    /// syscall; nothing goes on the network).
    static func firstLANIPv4() -> String? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return nil }
        defer { freeifaddrs(list) }
        for entry in sequence(first: first, next: { $0.pointee.ifa_next }) {
            let flags = Int32(bitPattern: entry.pointee.ifa_flags)
            guard flags & Int32(IFF_UP) != 0, flags & Int32(IFF_LOOPBACK) == 0,
                let address = entry.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET)
            else { continue }
            var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            let converted = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { ipv4 in
                var raw = ipv4.pointee.sin_addr
                return inet_ntop(AF_INET, &raw, &text, socklen_t(text.count)) != nil
            }
            if converted { return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        }
        return nil
    }
}

/// The node's public origin, known only once the server is bound (a configured port of 0 becomes a real one), and
/// read by every request that builds a phone URL.
final class PublicOriginBox: Sendable {
    private let value: Mutex<String?> = Mutex(nil)

    func set(_ origin: String) { value.withLock { $0 = origin } }

    var origin: String? { value.withLock { $0 } }
}

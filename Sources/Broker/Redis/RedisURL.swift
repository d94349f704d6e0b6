/// Where Redis is: `redis://[[user]:password@]host[:port][/db]`.
public struct RedisURL: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var database: Int
    public var user: String?
    public var password: String?

    /// Nil unless `text` is a `redis://` URL with a host, a port from 1 to 65535 and a database number.
    public init?(_ text: String) {
        guard text.hasPrefix("redis://") else { return nil }
        var rest = Substring(text.dropFirst("redis://".count))
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let user = String(credentials[..<colon])
                self.user = user.isEmpty ? nil : user
                self.password = String(credentials[credentials.index(after: colon)...])
            } else if !credentials.isEmpty {
                // `redis://secret@host` is how redis-cli and most clients spell a password without a user name.
                self.password = String(credentials)
            }
        }
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !path.isEmpty {
                guard let number = Int(path), number >= 0 else { return nil }
                database = number
            }
        }
        var port = 6379
        if let colon = rest.lastIndex(of: ":"), !rest.hasSuffix("]") {
            guard let number = Int(rest[rest.index(after: colon)...]), (1...65535).contains(number) else { return nil }
            port = number
            rest = rest[..<colon]
        }
        let host = rest.hasPrefix("[") && rest.hasSuffix("]") ? String(rest.dropFirst().dropLast()) : String(rest)
        guard !host.isEmpty else { return nil }
        self.host = host
        self.port = port
        self.database = database
    }

    /// `text` with whatever sits before its last `@` (after `scheme://`, when there is one) masked: safe to print
    /// even when `text` does not parse.
    public static func redacted(_ text: String) -> String {
        guard let at = text.lastIndex(of: "@") else { return text }
        let beforeAt = text[..<at]
        var start = text.startIndex
        if let colon = beforeAt.firstIndex(of: ":"), beforeAt[colon...].hasPrefix("://") {
            start = beforeAt.index(colon, offsetBy: 3)
        }
        return text[..<start] + "***" + text[at...]
    }

    /// The URL without its password, for logs.
    public var description: String {
        "redis://\(password == nil ? "" : "\(user ?? ""):***@")\(host):\(port)/\(database)"
    }
}

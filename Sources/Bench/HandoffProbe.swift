import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One full handoff made with plain blocking sockets while the streams of `hold` are held: a stream on one node,
/// validate, input-started and submit on another, and `complete` read back. It shows that a node holding its
/// full load still serves people; blocking is fine here, in the bench's own main thread.
struct HandoffProbe {
    var completed: Bool
    var milliseconds: Double
    var detail: String

    static func run(streamPort: Int, publishPort: Int, timeout: Double = 10) -> HandoffProbe {
        let session = "probe_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16)
        let started = Date()
        func fail(_ why: String) -> HandoffProbe { HandoffProbe(completed: false, milliseconds: Date().timeIntervalSince(started) * 1000, detail: why) }
        guard let stream = connect(port: streamPort, timeout: timeout) else { return fail("stream connect failed") }
        defer { close(stream) }
        guard send(stream, "GET /api/events?session=\(session) HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"),
            read(stream, until: "session-info", timeout: timeout) != nil
        else { return fail("no session-info") }
        // The validate claims the session for this phone (first scan wins): its cookie goes with the later steps.
        var cookie = ""
        let requests: [(String) -> String] = [
            { _ in "GET /api/validate-session?session=\(session) HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n" },
            { post("/api/input-started", #"{"sessionId":"\#(session)"}"#, cookie: $0) },
            { post("/api/submit", #"{"sessionId":"\#(session)","name":"probe","phone":"00"}"#, cookie: $0) },
        ]
        for request in requests {
            guard let socket = connect(port: publishPort, timeout: timeout) else { return fail("publish connect failed") }
            defer { close(socket) }
            guard send(socket, request(cookie)), let answer = read(socket, until: "\r\n\r\n", timeout: timeout), answer.hasPrefix("HTTP/1.1 200") else {
                return fail("a phone request was not answered 200")
            }
            for line in answer.split(separator: "\r\n") where line.lowercased().hasPrefix("set-cookie: tandem_phone_") {
                cookie = String(line.dropFirst("set-cookie: ".count).prefix { $0 != ";" })
            }
        }
        guard read(stream, until: "event: complete", timeout: timeout) != nil else { return fail("complete never arrived") }
        return HandoffProbe(completed: true, milliseconds: Date().timeIntervalSince(started) * 1000, detail: "ok")
    }

    private static func post(_ path: String, _ json: String, cookie: String) -> String {
        "POST \(path) HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nCookie: \(cookie)\r\nContent-Type: application/json\r\nContent-Length: \(json.utf8.count)\r\n\r\n\(json)"
    }

    private static func connect(port: Int, timeout: Double) -> Int32? {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        var limit = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(descriptor)
            return nil
        }
        return descriptor
    }

    private static func send(_ descriptor: Int32, _ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, 0) } == bytes.count
    }

    /// Reads until `marker` has been seen or the deadline passes; returns what was read, or nil.
    private static func read(_ descriptor: Int32, until marker: String, timeout: Double) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { return nil }
            received += chunk[0..<count]
            let text = String(decoding: received, as: UTF8.self)
            if text.contains(marker) { return text }
        }
        return nil
    }
}

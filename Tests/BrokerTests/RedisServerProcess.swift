import Foundation
import Logging
import NIOCore

@testable import Broker

#if canImport(Glibc)
import Glibc
#endif

/// A `redis-server` of the test's own, on a free loopback port, for what the shared one of `scripts/test.sh` must not
/// see (CONFIG SET maxmemory, FLUSHALL, CLIENT KILL would break the suites running beside it). Stopped by its PID.
final class RedisServerProcess: Sendable {
    let port: Int
    let url: RedisURL
    private let process: Process
    private let directory: URL

    /// The `redis-server` on PATH, if any.
    static var executable: URL? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { URL(fileURLWithPath: String($0)).appendingPathComponent("redis-server") }
            .first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }

    /// Whether these tests can run: `redis-server` is installed, or CI, where its absence must fail.
    static var available: Bool { executable != nil || ProcessInfo.processInfo.environment["CI"] == "true" }

    private init(port: Int, process: Process, directory: URL) throws {
        self.port = port
        self.process = process
        self.directory = directory
        guard let url = RedisURL("redis://127.0.0.1:\(port)/0") else { throw RedisNotConfigured() }
        self.url = url
    }

    /// Starts one and waits until it accepts connections; a port taken meanwhile by someone else is retried.
    static func start() async throws -> RedisServerProcess {
        guard let executable else { throw RedisNotConfigured() }
        for _ in 0..<3 {
            let port = try freeLoopbackPort()
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-redis-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let process = Process()
            process.executableURL = executable
            process.arguments = [
                "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory.path,
                "--logfile", directory.appendingPathComponent("redis.log").path,
            ]
            try process.run()
            let server = try RedisServerProcess(port: port, process: process, directory: directory)
            let deadline = ContinuousClock.now + .seconds(5)
            while process.isRunning, ContinuousClock.now < deadline {
                // Answered by this process, not by another test's Redis that took the port first (this one then fails
                // to bind and exits, but another server's PONG could come before it does).
                if case .bulkString(let info)? = try? await server.command(["INFO", "server"]) {
                    if String(decoding: info, as: UTF8.self).contains("process_id:\(process.processIdentifier)\r\n") { return server }
                    break
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            server.stop()
        }
        throw RedisNotConfigured()
    }

    /// Sends one command over a fresh connection and returns the reply.
    func command(_ arguments: [String]) async throws -> RESPValue {
        let connection = try await RedisConnection.connect(to: url, commandTimeout: .seconds(2))
        defer { connection.close() }
        return try await connection.send(arguments).get()
    }

    /// SIGKILL to its PID, then waits for it and removes its folder. Not SIGTERM: the child inherits the signal mask
    /// of the test thread that spawned it, where SIGTERM is blocked, so it would never see it. It keeps nothing on
    /// disk, so nothing is lost.
    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    private static func freeLoopbackPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw RedisNotConfigured() }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0 else { throw RedisNotConfigured() }
        let named = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        guard named == 0 else { throw RedisNotConfigured() }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// Runs a Redis broker against `url` until `body` returns; waits until it is connected first.
func withRedisBroker(
    _ configuration: RedisBroker.Configuration, sink: RecordingSink, _ body: (RedisBroker) async throws -> Void
) async throws {
    let broker = RedisBroker(configuration: configuration, sink: sink, logger: quietLogger)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await broker.run() }
        defer { group.cancelAll() }
        let deadline = ContinuousClock.now + .seconds(10)
        while await !broker.health.isAvailable {
            guard ContinuousClock.now < deadline else { throw RedisNotConfigured() }
            try await Task.sleep(for: .milliseconds(20))
        }
        try await body(broker)
    }
}

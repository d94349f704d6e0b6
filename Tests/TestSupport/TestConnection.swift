import Foundation
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix

/// A raw TCP connection for tests: write any bytes, read whatever the server sends. Every read has a deadline, so
/// a test waiting for bytes that never come fails instead of hanging.
public final class TestConnection: Sendable {
    public struct Timeout: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    private let channel: any Channel
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private let received: ReceiveBuffer

    /// Connects to `host:port` over a real socket.
    public static func connect(host: String = "127.0.0.1", port: Int) async throws -> TestConnection {
        let asyncChannel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        let received = ReceiveBuffer()
        // The channel's scope lives in a task of its own that reads until the connection closes.
        let outbound = await withCheckedContinuation { (continuation: CheckedContinuation<NIOAsyncChannelOutboundWriter<ByteBuffer>, Never>) in
            Task {
                do {
                    try await asyncChannel.executeThenClose { inbound, outbound in
                        continuation.resume(returning: outbound)
                        for try await buffer in inbound { await received.append(Array(buffer.readableBytesView)) }
                    }
                } catch {}
                await received.markClosed()
            }
        }
        return TestConnection(channel: asyncChannel.channel, outbound: outbound, received: received)
    }

    private init(channel: any Channel, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, received: ReceiveBuffer) {
        self.channel = channel
        self.outbound = outbound
        self.received = received
    }

    public func send(_ text: String) async throws {
        try await outbound.write(ByteBuffer(string: text))
    }

    public func send(bytes: [UInt8]) async throws {
        try await outbound.write(ByteBuffer(bytes: bytes))
    }

    /// Reads until the connection closes (or `timeout`); returns everything received and not yet consumed.
    public func readUntilClosed(timeout: Duration = .seconds(10)) async throws -> [UInt8] {
        _ = try await received.read(timeout: timeout) { _, closed in closed ? true : nil }
        return await received.take(count: Int.max)
    }

    /// Reads one HTTP/1.1 response (content-length, chunked to its end, or to close).
    public func readResponse(timeout: Duration = .seconds(10), headRequest: Bool = false) async throws -> RawResponse {
        let parsed = try await received.read(timeout: timeout) { bytes, closed in
            RawResponse.parse(bytes, connectionClosed: closed, headRequest: headRequest)
        }
        _ = await received.take(count: parsed.consumedBytes)
        return parsed
    }

    /// Reads the head of a response whose body streams (chunked), leaving the body for ``readChunkedText(until:)``.
    public func readStreamingHead(timeout: Duration = .seconds(10)) async throws -> RawResponse {
        let parsed = try await received.read(timeout: timeout) { bytes, _ in RawResponse.parseHead(bytes) }
        _ = await received.take(count: parsed.consumedBytes)
        return parsed
    }

    /// Reads chunked body text until `predicate` holds for the decoded text so far (or the stream ends); returns the
    /// decoded text and whether the body ended (last chunk seen or connection closed). Nothing is consumed.
    public func readChunkedText(timeout: Duration = .seconds(10), until predicate: @escaping @Sendable (String) -> Bool) async throws -> (text: String, ended: Bool) {
        try await received.read(timeout: timeout) { bytes, closed -> (String, Bool)? in
            let (text, ended) = ChunkedDecoding.decode(bytes)
            return predicate(text) || ended || closed ? (text, ended || closed) : nil
        }
    }

    /// Whether the server has closed the connection within `timeout`.
    public func isClosed(within timeout: Duration) async -> Bool {
        (try? await received.read(timeout: timeout) { _, closed in closed ? true : nil }) ?? false
    }

    public func close() async {
        try? await channel.close()
    }

    /// Closes with a TCP reset (SO_LINGER 0), as a client that vanishes does, instead of an orderly FIN.
    public func reset() async {
        if let options = channel as? any SocketOptionProvider {
            try? await options.setSoLinger(linger(l_onoff: 1, l_linger: 0)).get()
        }
        try? await channel.close()
    }
}

/// The bytes a connection received, so reads can have deadlines.
actor ReceiveBuffer {
    private var bytes: [UInt8] = []
    private var closed = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func append(_ new: [UInt8]) {
        bytes += new
        wakeAll()
    }

    func markClosed() {
        closed = true
        wakeAll()
    }

    private func wakeAll() {
        let current = waiters
        waiters = []
        for waiter in current { waiter.resume() }
    }

    /// Waits until `attempt(bytes, closed)` returns a value, or throws ``TestConnection/Timeout``. The wait is the
    /// test's `timeout` times ``TestPatience/factor``.
    func read<T: Sendable>(timeout: Duration, _ attempt: @Sendable ([UInt8], Bool) -> T?) async throws -> T {
        let deadline = ContinuousClock.now + TestPatience.scaled(timeout)
        let ticker = Task { [weak self] in
            while !Task.isCancelled, ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(20))
            }
            await self?.wakeAll()
        }
        defer { ticker.cancel() }
        while true {
            if let value = attempt(bytes, closed) { return value }
            if ContinuousClock.now >= deadline {
                throw TestConnection.Timeout(description: "timed out; received so far: \(String(decoding: bytes, as: UTF8.self).prefix(600))")
            }
            await withCheckedContinuation { waiters.append($0) }
        }
    }

    func take(count: Int) -> [UInt8] {
        let taken = Array(bytes.prefix(count))
        bytes.removeFirst(min(count, bytes.count))
        return taken
    }
}

/// How much longer than a test says a wait may last before it fails. Every wait here ends as soon as what it waits
/// for arrives, so this costs nothing when things work; it keeps a bound from failing when the whole suite runs on two
/// cores beside the Redis and cluster contract suites and the test's own task waits for a thread of the pool (CI saw
/// 2 s and 5 s bounds missed that way). `TANDEM_TEST_PATIENCE` overrides the factor (1 gives the bounds as written).
public enum TestPatience {
    public static let factor: Int = {
        guard let text = ProcessInfo.processInfo.environment["TANDEM_TEST_PATIENCE"], let value = Int(text), (1...20).contains(value) else { return 3 }
        return value
    }()

    public static func scaled(_ timeout: Duration) -> Duration { timeout * factor }
}

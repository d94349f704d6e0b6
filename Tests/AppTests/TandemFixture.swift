import Broker
import Logging
import NIOCore
import ServiceLifecycle
import TestSupport
import Testing

@testable import App

/// A quiet logger for tests; set TANDEM_TEST_LOGS=1 to see the server's logs.
let testLogger: Logger = {
    if let value = getenv("TANDEM_TEST_LOGS"), String(cString: value) == "1" {
        var logger = Logger(label: "tandem-test")
        logger.logLevel = .debug
        return logger
    }
    return Logger(label: "tandem-test", factory: { _ in SwiftLogNoOpLogHandler() })
}()

/// Runs a real Tandem node on a free loopback port for the duration of `body`, then shuts it down gracefully and
/// waits until it has stopped, whether `body` succeeded or threw.
func withTandem<T: Sendable>(
    _ configure: (inout TandemConfiguration) -> Void = { _ in },
    time: TimeSource = .system,
    logger: Logger = testLogger,
    _ body: @Sendable (TandemApplication, TestClient) async throws -> T
) async throws -> T {
    var configuration = TandemConfiguration()
    configuration.host = "127.0.0.1"
    configuration.port = 0
    configure(&configuration)
    let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
    return try await TandemApplication.withApplication(configuration: configuration, logger: logger, time: time, onServerRunning: { address in
        portContinuation.yield(address.port ?? 0)
        portContinuation.finish()
    }) { application in
        let group = application.makeServiceGroup(signals: [])
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw TestConnection.Timeout(description: "server did not start") }
            let result: Result<T, any Error>
            do {
                result = .success(try await body(application, TestClient(port: port)))
            } catch {
                result = .failure(error)
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return try result.get()
        }
    }
}

/// A clock the test moves by hand.
final class ManualTime: Sendable {
    private let milliseconds: Mutex<Int64>

    init(_ start: Int64 = 1_700_000_000_000) {
        milliseconds = Mutex(start)
    }

    var source: TimeSource { TimeSource { self.milliseconds.withLock { $0 } } }

    func advance(by duration: Duration) {
        milliseconds.withLock { $0 += duration.milliseconds }
    }
}

import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Parses a JSON body for assertions.
func json(_ response: RawResponse) throws -> [String: JSONAny] {
    try JSONAny.object(from: response.bodyText)
}

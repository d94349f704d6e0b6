import Testing

@testable import Broker

/// The in-memory broker's expiry queue: its sweep touches only expired sessions.
@Suite struct ExpiryQueueTests {
    @Test func expiryQueuePopsOnlyWhatHasExpiredSoonestFirst() throws {
        var queue = ExpiryQueue()
        var expiries: [Int64] = []
        for index in 0..<500 {
            let expiresAt = Int64.random(in: 0..<1_000)
            expiries.append(expiresAt)
            queue.insert(try #require(SessionID("s\(index)")), expiresAt: expiresAt)
        }
        var popped: [String] = []
        while let id = queue.popExpired(now: 499) { popped.append(id.rawValue) }
        #expect(popped.count == expiries.filter { $0 <= 499 }.count)
        let order = popped.map { expiries[Int($0.dropFirst())!] }
        #expect(order == order.sorted())
        #expect(queue.count == 500 - popped.count)
        #expect(queue.popExpired(now: 499) == nil)
    }
}

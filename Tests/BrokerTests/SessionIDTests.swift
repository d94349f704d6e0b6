import Broker
import Testing

/// IDs and secrets the server mints.
@Suite struct SessionIDTests {
    @Test func aMintedKeyIs32LowercaseHexDigitsAndNeverRepeats() {
        var seen = Set<String>()
        var digitsSeen = Set<Character>()
        for _ in 0..<2000 {
            let key = SessionID.randomHex128()
            #expect(key.utf8.count == 32)
            #expect(key.allSatisfy { "0123456789abcdef".contains($0) }, "not hex: \(key)")
            #expect(seen.insert(key).inserted)
            digitsSeen.formUnion(key)
        }
        // Every digit turns up: no position is stuck (a shift that dropped bits would leave zeros).
        #expect(digitsSeen.count == 16)
        var firstDigits = Set<Character>()
        for _ in 0..<400 { firstDigits.insert(SessionID.randomHex128().first!) }
        #expect(firstDigits.count > 8, "the leading digit takes few values: \(firstDigits.sorted())")
    }

    @Test func aServerMadeIDHasItsReservedShapeAndIsAccepted() {
        let id = SessionID.random()
        #expect(id.isServerMade)
        #expect(id.rawValue.utf8.count == 34)
        #expect(SessionID(id.rawValue) == id)
    }
}

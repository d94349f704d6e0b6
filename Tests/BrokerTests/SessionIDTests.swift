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

    @Test func aPhoneKeyAndPairingCodeDrawnTogetherAreAKeyAndFourDigitsWithEveryValueInReach() {
        var keys = Set<String>()
        var digitsSeen = Set<Character>()
        var codes = Set<String>()
        var firstDigits = Set<Character>()
        var lastDigits = Set<Character>()
        for _ in 0..<3000 {
            let (key, code) = SessionRecord.randomPhoneKeyAndPairingCode()
            #expect(key.utf8.count == 32 && key.allSatisfy { "0123456789abcdef".contains($0) }, "not a key: \(key)")
            #expect(keys.insert(key).inserted)
            digitsSeen.formUnion(key)
            #expect(SessionRecord.isPairingCode(code), "not a pairing code: \(code)")
            codes.insert(code)
            firstDigits.insert(code.first!)
            lastDigits.insert(code.last!)
        }
        #expect(digitsSeen.count == 16)
        // 3,000 draws of 10,000 codes: about 2,600 distinct if uniform; a stuck or narrow draw gives far fewer.
        #expect(codes.count > 2_300, "\(codes.count) distinct codes")
        #expect(firstDigits.count == 10 && lastDigits.count == 10)
    }

    @Test func aServerMadeIDHasItsReservedShapeAndIsAccepted() {
        let id = SessionID.random()
        #expect(id.isServerMade)
        #expect(id.rawValue.utf8.count == 34)
        #expect(SessionID(id.rawValue) == id)
    }
}

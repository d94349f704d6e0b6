import CHiredis
import PropertyBased
import Testing

@testable import Broker

/// hiredis's reader and formatter as Tandem uses them, and Redis URLs.
@Suite struct RedisProtocolTests {
    @Test func formatsCommandsAsRESPArrays() {
        let bytes = RESPCommandFormatter.format(["SET", "key", "山田 a\r\nb"])
        #expect(String(decoding: bytes, as: UTF8.self) == "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$11\r\n山田 a\r\nb\r\n")
    }

    /// hiredis's own formatter, the oracle for the hand-written one.
    static func hiredisFormat(_ arguments: [String]) -> [UInt8] {
        var storage: [UInt8] = []
        var offsets: [Int] = []
        for argument in arguments {
            offsets.append(storage.count)
            storage.append(contentsOf: argument.utf8)
        }
        storage.append(0)
        let lengths = arguments.map(\.utf8.count)
        return storage.withUnsafeBufferPointer { buffer in
            var pointers: [UnsafePointer<CChar>?] = offsets.map { UnsafeRawPointer(buffer.baseAddress! + $0).assumingMemoryBound(to: CChar.self) }
            var command: UnsafeMutablePointer<CChar>?
            let length = pointers.withUnsafeMutableBufferPointer { argv in
                lengths.withUnsafeBufferPointer { redisFormatCommandArgv(&command, Int32(arguments.count), argv.baseAddress, $0.baseAddress) }
            }
            defer { redisFreeCommand(command) }
            return Array(UnsafeRawBufferPointer(start: command, count: Int(length)))
        }
    }

    static let argumentLists = Generator<[String], Shrink.None<[String]>>(run: { rng in
        let pieces = ["a", "Z", "0", "9", " ", "\r", "\n", "\r\n", "$", "*", "\0", "山", "é", "🙂", "\u{202E}"]
        return (0..<Int.random(in: 0...24, using: &rng)).map { _ in
            (0..<Int.random(in: 0...40, using: &rng)).map { _ in pieces[Int.random(in: 0..<pieces.count, using: &rng)] }.joined()
        }
    })

    /// Any arguments (empty ones, CR and LF inside, NUL, multi-byte characters, none at all; lengths across digit
    /// boundaries): exactly hiredis's bytes, and hiredis's reader reads them back as the arguments.
    @Test func theHandWrittenFormatWritesExactlyWhatHiredisWrites() async throws {
        await propertyCheck(count: 2000, input: Self.argumentLists) { (arguments: [String]) in
            let bytes = RESPCommandFormatter.format(arguments)
            #expect(bytes == Self.hiredisFormat(arguments), "\(arguments)")
            let reader = try! HiredisReader()
            try! bytes.withUnsafeBytes { try reader.feed($0) }
            #expect(try! reader.nextReply() == .array(arguments.map { .bulkString(Array($0.utf8)) }))
        }
        for length in [9, 10, 99, 100, 999, 1000, 65_535, 65_536, 1_000_000] {
            let arguments = ["SET", String(repeating: "k", count: length), String(repeating: "山", count: length / 3)]
            #expect(RESPCommandFormatter.format(arguments) == Self.hiredisFormat(arguments), "length \(length)")
        }
        let many = (0..<1000).map(String.init)
        #expect(RESPCommandFormatter.format(many) == Self.hiredisFormat(many))
    }

    @Test func parsesPipelinedRepliesFedOneByteAtATime() throws {
        let wire = "+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n-ERR boom\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\n{}\r\n*0\r\n"
        let reader = try HiredisReader()
        var replies: [RESPValue] = []
        for byte in Array(wire.utf8) {
            try [byte].withUnsafeBytes { try reader.feed($0) }
            while let reply = try reader.nextReply() { replies.append(reply) }
        }
        #expect(replies == [
            .simpleString("OK"), .integer(42), .bulkString(Array("hello".utf8)), .null, .error("ERR boom"),
            .array([.bulkString(Array("message".utf8)), .bulkString(Array("ch".utf8)), .bulkString(Array("{}".utf8))]),
            .array([]),
        ])
    }

    @Test func refusesBytesThatAreNotRESP() throws {
        let reader = try HiredisReader()
        #expect(throws: HiredisReader.ParseError.self) {
            try Array("?nonsense\r\n".utf8).withUnsafeBytes { try reader.feed($0) }
            _ = try reader.nextReply()
        }
    }

    @Test func capsUnparsedBytes() throws {
        let reader = try HiredisReader(maximumBufferedBytes: 16)
        #expect(throws: HiredisReader.ParseError.self) {
            try Array("$100\r\n0123456789012345678901234567890".utf8).withUnsafeBytes { try reader.feed($0) }
        }
    }

    @Test(arguments: [
        ("redis://127.0.0.1:6379/0", "127.0.0.1", 6379, 0, nil as String?),
        ("redis://cache", "cache", 6379, 0, nil),
        ("redis://cache:7000/3", "cache", 7000, 3, nil),
        ("redis://:secret@cache:7000", "cache", 7000, 0, "secret"),
        ("redis://[::1]:6380/1", "::1", 6380, 1, nil),
    ])
    func parsesRedisURLs(text: String, host: String, port: Int, database: Int, password: String?) throws {
        let url = try #require(RedisURL(text))
        #expect(url.host == host && url.port == port && url.database == database && url.password == password)
        #expect(!url.description.contains("secret"))
    }

    @Test(arguments: ["http://cache", "redis://", "redis://cache:0", "redis://cache:99999", "redis://cache/x", "localhost:6379"])
    func refusesWhatIsNotARedisURL(text: String) {
        #expect(RedisURL(text) == nil)
    }

    @Test func channelNamesRoundTripAndForeignOnesAreIgnored() throws {
        let id = try #require(SessionID("sess_abc-1"))
        #expect(RedisKeys.session(ofChannel: RedisKeys.channel(id)) == id)
        #expect(RedisKeys.session(ofChannel: "other:{x}:events") == nil)
        #expect(RedisKeys.session(ofChannel: "tandem:{bad id}:events") == nil)
    }

    @Test func decodesLogEntriesAsCjsonWritesThem() {
        func decode(_ text: String) -> StoredEvent? { RedisLogEntry.decode(Array(text.utf8)) }
        #expect(decode(#"{"id":1,"event":"connected","t":"1700000000000001"}"#) == StoredEvent(id: 1, event: .connected()))
        #expect(decode(#"{"id":1,"event":"connected","t":"1700000000000001"}"#)?.publishedAt == 1_700_000_000_000_001)
        // Keys in any order, whitespace, escapes (cjson writes `\/`), surrogate pairs and raw UTF-8.
        let complete = decode(#" { "phone" : "090" , "t":"5", "event":"complete","name":"\"山田\"\\\/\n\u00e9\ud83d\ude00","id":3 } "#)
        #expect(complete == StoredEvent(id: 3, event: .complete(Submission(name: "\"山田\"\\/\né😀", phone: "090"))))
        #expect(decode(#"{"id":2,"event":"input-started","extra":[1]}"#) == nil)  // only flat values
        #expect(decode(#"{"id":2,"event":"input-started","extra":null,"more":true}"#) == StoredEvent(id: 2, event: .inputStarted))
        for malformed in [
            "", "{", "[]", #"{"id":1,"event":"connected""#, #"{"id":1,"event":"connected",}"#, #"{"id":1 "event":"connected"}"#,
            #"{"id":1,"event":"connected"} x"#, #"{"id":-1,"event":"connected"}"#, #"{"id":1,"event":"unknown"}"#,
            #"{"event":"connected"}"#, #"{"id":99999999999999999999,"event":"connected"}"#,
        ] {
            #expect(decode(malformed) == nil, "\(malformed)")
        }
        // Bad strings inside an otherwise valid entry: only the string's fault can make these fail.
        func entry(name: [UInt8]) -> [UInt8] {
            Array(#"{"id":3,"event":"complete","phone":"1","name":""#.utf8) + name + Array(#""}"#.utf8)
        }
        #expect(RedisLogEntry.decode(entry(name: Array("ok".utf8))) == StoredEvent(id: 3, event: .complete(Submission(name: "ok", phone: "1"))))
        for badName in [#"a\qb"#, #"\ud83d"#, #"\ud83dx"#, #"\ude00"#, #"\u12"#, "a\u{1}b", #"trailing\"#] {
            #expect(RedisLogEntry.decode(entry(name: Array(badName.utf8))) == nil, "\(badName)")
        }
        #expect(RedisLogEntry.decode(entry(name: [0x61, 0xFF, 0x62])) == nil)  // not UTF-8
    }
}

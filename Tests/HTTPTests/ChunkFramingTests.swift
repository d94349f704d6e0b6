@testable import HTTP
import NIOCore
import PropertyBased
import Testing

/// A chunk framed in place (its size line written into the room left in front of its data) is byte for byte the
/// chunk RFC 9112 §7.1 describes: lowercase hex size without leading zeros, CRLF, the data, CRLF.
@Suite struct ChunkFramingTests {
    private static func expected(_ data: [UInt8]) -> [UInt8] {
        Array(String(data.count, radix: 16).utf8) + [0x0D, 0x0A] + data + [0x0D, 0x0A]
    }

    @Test func anyDataWithRoomInFrontIsFramedWithoutMovingIt() async {
        await propertyCheck(count: 300, input: Gen.int(in: 1...70_000), Gen.int(in: 0...40)) { size, extraRoom in
            let data = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            var buffer = ByteBuffer()
            let room = HTTP1ResponseHead.chunkSizeLineRoom + extraRoom
            buffer.writeRepeatingByte(0xEE, count: room)
            buffer.moveReaderIndex(forwardBy: room)
            buffer.writeBytes(data)
            HTTP1ResponseHead.frameChunkInPlace(&buffer)
            #expect(Array(buffer.readableBytesView) == Self.expected(data))
        }
    }

    @Test(arguments: [1, 9, 10, 15, 16, 255, 256, 4095, 4096, 65_535, 65_536, 1 << 20])
    func sizesAtEveryHexDigitBoundary(size: Int) {
        let data = [UInt8](repeating: 0x61, count: size)
        #expect(Array(HTTP1ResponseHead.chunk(ByteBuffer(bytes: data), allocator: ByteBufferAllocator()).readableBytesView) == Self.expected(data))
    }

    /// A buffer without the room (its reader index too near its start) is framed into a copy, not trapped on.
    @Test func aBufferWithoutRoomIsFramedIntoACopy() async {
        await propertyCheck(count: 50, input: Gen.int(in: 0..<HTTP1ResponseHead.chunkSizeLineRoom), Gen.int(in: 1...300)) { room, size in
            let data = [UInt8](repeating: 0x62, count: size)
            var buffer = ByteBuffer()
            buffer.writeRepeatingByte(0, count: room)
            buffer.moveReaderIndex(forwardBy: room)
            buffer.writeBytes(data)
            HTTP1ResponseHead.frameChunkInPlace(&buffer)
            #expect(Array(buffer.readableBytesView) == Self.expected(data))
        }
    }
}

import Foundation
import HTTP
import JSON
import NIOCore

/// One JSON object of the bench's output, its members in the order they were added: the lines are read by people
/// and compared run to run, so their fields keep a fixed order (HTTP's `JSONValue.object` sorts its keys). Strings and
/// integers are written by HTTP's JSON writer.
struct JSONLine {
    private var members = ByteBuffer()

    private mutating func key(_ key: String) {
        if members.readableBytes > 0 { members.writeInteger(UInt8(ascii: ",")) }
        JSONValue.writeString(key, to: &members)
        members.writeInteger(UInt8(ascii: ":"))
    }

    mutating func add(_ key: String, _ value: String) {
        self.key(key)
        JSONValue.writeString(value, to: &members)
    }

    mutating func add(_ key: String, _ value: Int) {
        self.key(key)
        JSONValue.integer(Int64(value)).write(to: &members)
    }

    mutating func add(_ key: String, _ value: Bool) {
        self.key(key)
        JSONValue.bool(value).write(to: &members)
    }

    /// `value` rounded to `digits` decimals, printed as Swift prints a Double (`2.0`, not HTTP's `2`: the bench's
    /// lines have always kept the fraction, so a measure reads the same in every run's output); NaN and infinity as null.
    mutating func add(_ key: String, _ value: Double, digits: Int = 3) {
        self.key(key)
        let factor = pow(10.0, Double(digits))
        let rounded = (value * factor).rounded() / factor
        members.writeString(value.isFinite ? String(rounded) : "null")
    }

    /// A nested object, or null.
    mutating func add(_ key: String, _ object: JSONLine?) {
        self.key(key)
        if let object { object.write(to: &members) } else { JSONValue.null.write(to: &members) }
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "{"))
        buffer.writeImmutableBuffer(members)
        buffer.writeInteger(UInt8(ascii: "}"))
    }

    var text: String {
        var buffer = ByteBuffer()
        write(to: &buffer)
        return String(buffer: buffer)
    }
}

/// p50/p99/p99.9/max in milliseconds, of nanosecond samples; `json` is nil (null) when there are none.
func latencySummary(_ samples: [UInt64]) -> (p50: Double, p99: Double, p999: Double, max: Double, json: JSONLine?) {
    guard !samples.isEmpty else { return (.nan, .nan, .nan, .nan, nil) }
    let sorted = samples.sorted()
    func at(_ q: Double) -> Double { Double(sorted[min(sorted.count - 1, Int(q * Double(sorted.count)))]) / 1e6 }
    let values = (at(0.5), at(0.99), at(0.999), Double(sorted.last!) / 1e6)
    var line = JSONLine()
    line.add("p50", values.0)
    line.add("p99", values.1)
    line.add("p99_9", values.2)
    line.add("max", values.3)
    return (values.0, values.1, values.2, values.3, line)
}

/// Response statuses by count, in status order; -1 and -2 are the client's own (no connection, connection lost).
func statusesLine(_ statuses: [Int: Int]) -> JSONLine {
    var line = JSONLine()
    for (status, count) in statuses.sorted(by: { $0.key < $1.key }) {
        line.add(status == -1 ? "connect_error" : status == -2 ? "connection_lost" : String(status), count)
    }
    return line
}


import Testing

@testable import Bench

/// The bench's JSON lines: fields in the order added, Doubles as they were always printed, strings escaped by HTTP's
/// writer. Scripts and BENCHMARKS.md read these lines, so their text is pinned here.
@Suite struct JSONLineTests {
    @Test func membersKeepTheirOrderAndTheirTypes() {
        var line = JSONLine()
        line.add("scenario", "fanout")
        line.add("streams", 100)
        line.add("rate", 300.0, digits: 0)
        line.add("duration_s", 2.0)
        line.add("establish_s", 0.28849)
        line.add("rss_per_stream_kib", 12.9449, digits: 2)
        line.add("handoff_ms", 9.64, digits: 1)
        line.add("none", Double.nan)
        line.add("handoff_completed", true)
        #expect(line.text == #"{"scenario":"fanout","streams":100,"rate":300.0,"duration_s":2.0,"establish_s":0.288,"rss_per_stream_kib":12.94,"handoff_ms":9.6,"none":null,"handoff_completed":true}"#)
    }

    @Test func nestedObjectsAndNull() {
        var line = JSONLine()
        line.add("latency_ms", latencySummary([1_500_000, 2_000_000]).json)
        line.add("empty", latencySummary([]).json)
        line.add("statuses", statusesLine([503: 2, -2: 1, -1: 4, 200: 7]))
        line.add("none", statusesLine([:]))
        #expect(line.text == #"{"latency_ms":{"p50":2.0,"p99":2.0,"p99_9":2.0,"max":2.0},"empty":null,"statuses":{"connection_lost":1,"connect_error":4,"200":7,"503":2},"none":{}}"#)
        #expect(JSONLine().text == "{}")
    }

    @Test func stringsAreEscaped() {
        var line = JSONLine()
        line.add("detail", "a \"quoted\" path\\x\nnext\u{1}")
        #expect(line.text == #"{"detail":"a \"quoted\" path\\x\nnext\u0001"}"#)
    }
}

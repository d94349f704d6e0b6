/// A chart of a bench run, as data: what ``Chart/svg`` draws. Lines (the knee curves) or one bar per series (RSS per
/// stream, flows/s); every series is one target, in that target's colour and marker in every chart.
struct Chart: Equatable {
    enum Kind: Equatable {
        /// Curves of (x, y) points: `x` and `y` may each be logarithmic.
        case lines(x: ChartAxis, y: ChartAxis)
        /// One bar per series, its ``ChartSeries/bar`` value, on a linear axis from zero.
        case bars(y: ChartAxis)
    }

    var title: String
    /// The machine, the date and what was measured: a chart is read away from the run that made it.
    var subtitle: String
    var kind: Kind
    var series: [ChartSeries]
    /// Horizontal lines across the plot (the knee's 10 ms rule).
    var thresholds: [ChartThreshold] = []
    /// Below the plot: how to read it (which dash is which percentile), where the numbers came from.
    var footnote: String = ""

    /// Series drawn at most: more would run off the legend, or make bars too thin to see. The rest (in
    /// ``SeriesStyle/sortKey(_:)``'s order) are counted in the chart, "+N more targets not drawn".
    static let mostSeries = 12

    /// The series drawn, in ``SeriesStyle/sortKey(_:)``'s order, and how many are left out.
    var drawnSeries: [ChartSeries] {
        Array(series.sorted { SeriesStyle.sortKey($0.name) < SeriesStyle.sortKey($1.name) }.prefix(Self.mostSeries))
    }
    var undrawnSeries: Int { max(0, series.count - Self.mostSeries) }
}

struct ChartAxis: Equatable {
    enum Scale: Equatable { case linear, logarithmic }

    var label: String
    var scale: Scale
    /// How a tick's value is written (`1k`, `0.1`); the axis label carries the unit.
    var tickFormat: TickFormat = .plain

    enum TickFormat: Equatable {
        case plain
        /// 1000 as `1k`, 64000 as `64k`: the knee's event rates.
        case thousands
    }
}

/// One target's data: its curves (line charts) or its value (bar charts).
struct ChartSeries: Equatable {
    /// The target as the JSON lines name it, nchan in Tandem's shape as `nchan-memory churn 3`.
    var name: String
    var lines: [ChartLine] = []
    var bar: Double?
}

/// One curve of a series: p50 or p99, told apart by its dash as well as its name (not only by colour).
struct ChartLine: Equatable {
    enum Dash: String, Equatable {
        case solid
        case dashed
    }

    var name: String
    var dash: Dash
    var points: [ChartPoint]
}

struct ChartPoint: Equatable {
    var x: Double
    var y: Double
}

struct ChartThreshold: Equatable {
    var value: Double
    var label: String
}

/// Each target's colour and marker, the same in every chart. Okabe and Ito's colour-blind-safe palette; the marker
/// (circle for Tandem, square for nchan, diamond for nchan in Tandem's shape) tells the families apart without colour.
struct SeriesStyle: Equatable {
    enum Marker: String { case circle, square, diamond, triangle, triangleDown }

    var colour: String
    var marker: Marker

    static func of(_ name: String) -> SeriesStyle {
        switch name {
        case "tandem-memory": SeriesStyle(colour: "#0072B2", marker: .circle)  // blue
        case "tandem-redis": SeriesStyle(colour: "#009E73", marker: .circle)  // bluish green
        case "tandem-cluster": SeriesStyle(colour: "#56B4E9", marker: .circle)  // sky blue
        case "nchan-memory": SeriesStyle(colour: "#D55E00", marker: .square)  // vermillion
        case "nchan-redis": SeriesStyle(colour: "#CC79A7", marker: .square)  // reddish purple
        case "nchan-memory churn 3": SeriesStyle(colour: "#E69F00", marker: .diamond)  // orange
        case "nchan-redis churn 3": SeriesStyle(colour: "#000000", marker: .diamond)  // black
        default:
            // A shape or target this table does not know yet: a style no known target has, picked by a hash of its
            // name (the same in every chart and every run; two unknown targets may share one, rarely).
            fallback[Int(stableHash(name) % UInt64(fallback.count))]
        }
    }

    /// The unknown targets' styles: colours none of the known targets (nor the red threshold) has, each with an
    /// upward and a downward triangle, markers no known target has.
    static let fallback: [SeriesStyle] = [Marker.triangle, .triangleDown].flatMap { marker in
        ["#882255", "#44AA99", "#999933", "#332288", "#8C564B", "#7F7F7F"].map { SeriesStyle(colour: $0, marker: marker) }
    }

    /// FNV-1a of the name's UTF-8: unlike `hashValue`, the same in every process.
    private static func stableHash(_ name: String) -> UInt64 {
        name.utf8.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }

    /// The order series are drawn and listed in: Tandem, then nchan, memory before Redis, whatever the run's order.
    static let order = [
        "tandem-memory", "tandem-redis", "tandem-cluster", "nchan-memory", "nchan-memory churn 3", "nchan-redis", "nchan-redis churn 3",
    ]

    static func sortKey(_ name: String) -> (Int, String) { (order.firstIndex(of: name) ?? order.count, name) }
}

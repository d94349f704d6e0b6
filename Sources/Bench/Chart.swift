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
    enum Marker: String { case circle, square, diamond }

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
            // A shape or target this table does not know yet: grey, still marked by its family.
            SeriesStyle(colour: "#7F7F7F", marker: name.hasPrefix("tandem") ? .circle : name.contains(" churn ") ? .diamond : .square)
        }
    }

    /// The order series are drawn and listed in: Tandem, then nchan, memory before Redis, whatever the run's order.
    static let order = [
        "tandem-memory", "tandem-redis", "tandem-cluster", "nchan-memory", "nchan-memory churn 3", "nchan-redis", "nchan-redis churn 3",
    ]

    static func sortKey(_ name: String) -> (Int, String) { (order.firstIndex(of: name) ?? order.count, name) }
}

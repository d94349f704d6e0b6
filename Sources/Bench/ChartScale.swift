import Foundation

/// One axis' range and ticks, fitted to the values it shows. Linear axes start at zero; logarithmic ones span whole
/// decades. Values a scale cannot place (not finite; zero or below on a log scale) are ignored when fitting and have
/// no ``position(_:)``, so no coordinate is ever NaN or infinite.
struct ChartScale {
    let scale: ChartAxis.Scale
    /// The range's ends, in the scale's units (log10 of the value for a log scale).
    private let low: Double
    private let high: Double
    let ticks: [Double]

    /// Most ticks an axis shows: more would overlap at this chart's size.
    private static let maximumTicks = 12

    init(fitting values: [Double], scale: ChartAxis.Scale) {
        self.scale = scale
        switch scale {
        case .logarithmic:
            let exponents = values.filter { $0.isFinite && $0 > 0 }.map(log10)
            var low = (exponents.min() ?? 0).rounded(.down)
            var high = (exponents.max() ?? 1).rounded(.up)
            if high <= low { high = low + 1 }
            // log10 of a positive finite Double lies within ±324, so these stay finite.
            low = max(low, -330)
            high = min(high, 330)
            self.low = low
            self.high = high
            ticks = Self.logTicks(low: Int(low), high: Int(high))
        case .linear:
            let finite = values.filter(\.isFinite)
            let top = max(0, finite.max() ?? 0)
            let step = Self.niceStep(top > 0 ? top / 5 : 1)
            var high = (top / step).rounded(.up) * step
            // Room above the tallest bar for its value's label.
            if top > high * 0.92 { high += step }
            if !high.isFinite || high <= 0 { high = top > 0 ? top : 1 }
            low = 0
            self.high = high
            let count = min(Self.maximumTicks, Int((high / step).rounded(.down)))
            ticks = (0...max(0, count)).map { Double($0) * step }.filter { $0 <= high }
        }
    }

    /// Where `value` falls on the axis, 0 at the origin and 1 at the far end; nil when the scale cannot place it.
    func position(_ value: Double) -> Double? {
        let scaled: Double
        switch scale {
        case .logarithmic:
            guard value.isFinite, value > 0 else { return nil }
            scaled = log10(value)
        case .linear:
            guard value.isFinite else { return nil }
            scaled = value
        }
        let fraction = (scaled - low) / (high - low)
        guard fraction.isFinite else { return nil }
        return min(1, max(0, fraction))
    }

    /// 1, 2 and 5 in each decade when few decades are shown; otherwise every decade (or every few).
    private static func logTicks(low: Int, high: Int) -> [Double] {
        let decades = high - low
        if decades <= 3 {
            return (low..<high).flatMap { exponent in [1.0, 2, 5].map { $0 * pow(10, Double(exponent)) } } + [pow(10, Double(high))]
        }
        let stride = max(1, (decades + maximumTicks - 1) / maximumTicks)
        return Swift.stride(from: low, through: high, by: stride).map { pow(10, Double($0)) }
    }

    /// 1, 2 or 5 times a power of ten, at least `rough`.
    private static func niceStep(_ rough: Double) -> Double {
        guard rough.isFinite, rough > 0 else { return 1 }
        let magnitude = pow(10, log10(rough).rounded(.down))
        for factor in [1.0, 2, 5, 10] where factor * magnitude >= rough { return factor * magnitude }
        return 10 * magnitude
    }

    /// A tick as people read it: `0.1`, `10`, `2k`, `1e+12` (the axis label carries the unit).
    static func tickLabel(_ value: Double, _ format: ChartAxis.TickFormat) -> String {
        if format == .thousands, abs(value) >= 1000, abs(value) < 1e9 { return String(format: "%gk", value / 1000) }
        // Grouped like the bars' values (`6,000` beside `5,403`) while whole and not too long for the margin.
        if abs(value) >= 1000, abs(value) < 1e9, value == value.rounded() { return valueLabel(value) }
        return String(format: "%g", value)
    }

    /// A bar's value: whole numbers above 100 grouped by thousands (`5,403`), smaller ones with up to three digits.
    static func valueLabel(_ value: Double) -> String {
        guard value.isFinite else { return "?" }
        if abs(value) >= 100, abs(value) < 1e15 {
            let digits = String(Int64(value.rounded()).magnitude)
            var grouped = ""
            for (index, digit) in digits.enumerated() {
                if index > 0, (digits.count - index) % 3 == 0 { grouped += "," }
                grouped.append(digit)
            }
            return (value < 0 ? "-" : "") + grouped
        }
        return String(format: "%.3g", value)
    }
}

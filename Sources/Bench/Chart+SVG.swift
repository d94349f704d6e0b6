import Foundation

extension Chart {
    /// The chart as a standalone SVG document. Deterministic (same chart, same bytes, so a regenerated chart shows
    /// in a diff only when its data changed); every text is XML-escaped and every coordinate is a finite number,
    /// whatever the values: a value a scale cannot place (NaN, infinity, zero or below on a log axis) is left out.
    var svg: String {
        var document = SVGDocument(width: Layout.width, height: Layout.height)
        document.open(title: "\(title) (\(subtitle))", description: footnote)
        document.text(title, x: Layout.margin, y: 26, attributes: #"font-size="16" font-weight="bold""#)
        document.text(subtitle, x: Layout.margin, y: 46, attributes: #"font-size="12" fill="\#(Ink.secondary)""#)
        switch kind {
        case .lines(let xAxis, let yAxis): drawLines(into: &document, xAxis: xAxis, yAxis: yAxis)
        case .bars(let yAxis): drawBars(into: &document, yAxis: yAxis)
        }
        if !footnote.isEmpty {
            document.text(footnote, x: Layout.margin, y: Layout.height - 10, attributes: #"font-size="11" fill="\#(Ink.secondary)""#)
        }
        return document.close()
    }

    private enum Layout {
        static let width = 800.0
        static let height = 470.0
        static let margin = 16.0
        static let plotLeft = 76.0
        static let plotTop = 70.0
        static let plotBottom = height - 82  // room for the x ticks, the x label and the footnote
        static let legendWidth = 200.0
    }

    private func drawLines(into document: inout SVGDocument, xAxis: ChartAxis, yAxis: ChartAxis) {
        let drawn = drawnSeries
        let points = drawn.flatMap { $0.lines.flatMap(\.points) }
        let x = ChartScale(fitting: points.map(\.x), scale: xAxis.scale)
        let y = ChartScale(fitting: points.map(\.y) + thresholds.map(\.value), scale: yAxis.scale)
        let plot = PlotArea(left: Layout.plotLeft, top: Layout.plotTop, right: Layout.width - Layout.legendWidth - 10, bottom: Layout.plotBottom)
        drawAxes(into: &document, plot: plot, x: x, xAxis: xAxis, y: y, yAxis: yAxis)
        for threshold in thresholds {
            guard let position = y.position(threshold.value) else { continue }
            let lineY = plot.y(position)
            document.element(
                "line", #"class="threshold" x1="\#(n(plot.left))" y1="\#(n(lineY))" x2="\#(n(plot.right))" y2="\#(n(lineY))" "#
                    + #"stroke="\#(Ink.threshold)" stroke-width="1.5" stroke-dasharray="2 3""#)
            document.text(threshold.label, x: plot.left + 4, y: lineY - 4, attributes: #"font-size="11" fill="\#(Ink.threshold)""#)
        }
        for entry in drawn {
            let style = SeriesStyle.of(entry.name)
            document.openGroup(#"class="series" data-series="\#(SVGDocument.escape(entry.name))""#)
            document.element("title", content: entry.name)
            for line in entry.lines {
                let placed = line.points
                    .compactMap { point -> (Double, Double)? in
                        guard let px = x.position(point.x), let py = y.position(point.y) else { return nil }
                        return (plot.x(px), plot.y(py))
                    }
                    .sorted { $0.0 < $1.0 }
                guard !placed.isEmpty else { continue }
                let dash = line.dash == .dashed ? #" stroke-dasharray="7 4""# : ""
                let width = line.dash == .solid ? "2.2" : "1.6"
                document.element(
                    "polyline",
                    #"class="\#(SVGDocument.escape(line.name))" fill="none" stroke="\#(style.colour)" stroke-width="\#(width)"\#(dash) "#
                        + #"points="\#(placed.map { "\(n($0.0)),\(n($0.1))" }.joined(separator: " "))""#)
                for (px, py) in placed { document.marker(style.marker, x: px, y: py, colour: style.colour, size: 3.5) }
            }
            document.closeGroup()
        }
        drawLegend(into: &document, entries: drawn, left: plot.right + 18, top: plot.top)
    }

    /// One row per series drawn (a name too long for the legend ends in `…`; the series' `<title>` has it whole), the
    /// count of those left out, then which dash is which.
    private func drawLegend(into document: inout SVGDocument, entries: [ChartSeries], left: Double, top: Double) {
        var rowY = top + 6
        let room = Layout.width - 6 - (left + 34)
        document.openGroup(#"class="legend" font-size="12""#)
        for entry in entries {
            let style = SeriesStyle.of(entry.name)
            document.element(
                "line", #"x1="\#(n(left))" y1="\#(n(rowY))" x2="\#(n(left + 26))" y2="\#(n(rowY))" stroke="\#(style.colour)" stroke-width="2.2""#)
            document.marker(style.marker, x: left + 13, y: rowY, colour: style.colour, size: 4)
            document.text(TextWidth.fitted(entry.name, width: room, fontSize: 12), x: left + 34, y: rowY + 4, attributes: "")
            rowY += 20
        }
        if undrawnSeries > 0 {
            document.text(undrawnText, x: left, y: rowY + 4, attributes: #"class="undrawn" fill="\#(Ink.secondary)""#)
            rowY += 20
        }
        if Set(entries.flatMap { $0.lines.map(\.dash) }).count > 1 {
            // Which percentile is which, without relying on colour: the dash.
            rowY += 6
            let names = Dictionary(entries.flatMap { $0.lines.map { ($0.dash, $0.name) } }, uniquingKeysWith: { first, _ in first })
            for dash in [ChartLine.Dash.solid, .dashed] {
                guard let name = names[dash] else { continue }
                let pattern = dash == .dashed ? #" stroke-dasharray="7 4""# : ""
                document.element(
                    "line", #"x1="\#(n(left))" y1="\#(n(rowY))" x2="\#(n(left + 26))" y2="\#(n(rowY))" stroke="\#(Ink.secondary)" stroke-width="2"\#(pattern)"#)
                document.text(name, x: left + 34, y: rowY + 4, attributes: "")
                rowY += 20
            }
        }
        document.closeGroup()
    }

    private func drawBars(into document: inout SVGDocument, yAxis: ChartAxis) {
        let entries = drawnSeries
        let y = ChartScale(fitting: entries.compactMap(\.bar) + [0], scale: .linear)
        let plot = PlotArea(left: Layout.plotLeft, top: Layout.plotTop, right: Layout.width - 30, bottom: Layout.plotBottom)
        drawAxes(into: &document, plot: plot, x: nil, xAxis: nil, y: y, yAxis: yAxis)
        let band = plot.width / Double(max(1, entries.count))
        if undrawnSeries > 0 {
            document.text(undrawnText, x: plot.right, y: plot.top - 8, attributes: #"class="undrawn" font-size="12" text-anchor="end" fill="\#(Ink.secondary)""#)
        }
        for (index, entry) in entries.enumerated() {
            let style = SeriesStyle.of(entry.name)
            let centre = plot.left + band * (Double(index) + 0.5)
            document.openGroup(#"class="series" data-series="\#(SVGDocument.escape(entry.name))""#)
            document.element("title", content: entry.name)
            if let value = entry.bar, let position = y.position(max(0, value)) {
                let top = plot.y(position)
                let width = min(90, band * 0.6)
                document.element(
                    "rect", #"class="bar" x="\#(n(centre - width / 2))" y="\#(n(top))" width="\#(n(width))" height="\#(n(plot.bottom - top))" "#
                        + #"fill="\#(style.colour)""#)
                document.text(ChartScale.valueLabel(value), x: centre, y: top - 5, attributes: #"font-size="12" text-anchor="middle""#)
            }
            // `nchan-memory churn 3` on two lines: a band is narrower than the whole name; what still does not fit
            // ends in `…` (the series' `<title>` has it whole).
            let words = entry.name.split(separator: " ", maxSplits: 1).map(String.init)
            for (row, word) in words.enumerated() {
                document.text(TextWidth.fitted(word, width: band - 4, fontSize: 12), x: centre, y: plot.bottom + 18 + 14 * Double(row), attributes: #"font-size="12" text-anchor="middle""#)
            }
            document.closeGroup()
        }
    }

    /// `+3 more targets not drawn`.
    private var undrawnText: String { "+\(undrawnSeries) more target\(undrawnSeries == 1 ? "" : "s") not drawn" }

    private func drawAxes(into document: inout SVGDocument, plot: PlotArea, x: ChartScale?, xAxis: ChartAxis?, y: ChartScale, yAxis: ChartAxis) {
        document.openGroup(#"class="axes" font-size="11" fill="\#(Ink.axis)""#)
        document.element(
            "rect", #"x="\#(n(plot.left))" y="\#(n(plot.top))" width="\#(n(plot.width))" height="\#(n(plot.height))" fill="none" stroke="\#(Ink.frame)""#)
        for tick in y.ticks {
            guard let position = y.position(tick) else { continue }
            let tickY = plot.y(position)
            document.element("line", #"x1="\#(n(plot.left))" y1="\#(n(tickY))" x2="\#(n(plot.right))" y2="\#(n(tickY))" stroke="\#(Ink.grid)""#)
            document.text(ChartScale.tickLabel(tick, yAxis.tickFormat), x: plot.left - 6, y: tickY + 4, attributes: #"text-anchor="end""#)
        }
        if let x, let xAxis {
            for tick in x.ticks {
                guard let position = x.position(tick) else { continue }
                let tickX = plot.x(position)
                document.element("line", #"x1="\#(n(tickX))" y1="\#(n(plot.top))" x2="\#(n(tickX))" y2="\#(n(plot.bottom))" stroke="\#(Ink.grid)""#)
                document.text(ChartScale.tickLabel(tick, xAxis.tickFormat), x: tickX, y: plot.bottom + 16, attributes: #"text-anchor="middle""#)
            }
            document.text(xAxis.label, x: plot.left + plot.width / 2, y: plot.bottom + 36, attributes: #"font-size="12" text-anchor="middle""#)
        }
        let labelY = plot.top + plot.height / 2
        document.text(
            yAxis.label, x: 20, y: labelY, attributes: #"font-size="12" text-anchor="middle" transform="rotate(-90 20 \#(n(labelY)))""#)
        document.closeGroup()
    }
}

/// The colours that are not a series'.
private enum Ink {
    static let secondary = "#444444"
    /// Red, and dotted: no target is red (Okabe and Ito's vermillion is an orange).
    static let threshold = "#C00000"
    static let axis = "#333333"
    static let frame = "#999999"
    static let grid = "#E4E4E4"
    static let paper = "#FFFFFF"
}

/// The plot's rectangle in SVG units; positions are fractions of an axis (0 at the origin, 1 at the far end).
private struct PlotArea {
    var left: Double
    var top: Double
    var right: Double
    var bottom: Double
    var width: Double { right - left }
    var height: Double { bottom - top }
    func x(_ position: Double) -> Double { left + width * position }
    func y(_ position: Double) -> Double { bottom - height * position }
}

/// A coordinate as SVG text: one decimal, and never `nan` or `inf` (which would make the document invalid).
private func n(_ value: Double) -> String { value.isFinite ? String(format: "%.1f", value) : "0" }

/// An SVG document written as text, element by element; every text and attribute value passes ``escape(_:)``.
struct SVGDocument {
    private var text = ""
    private var depth = 0
    let width: Double
    let height: Double

    init(width: Double, height: Double) {
        self.width = width
        self.height = height
    }

    mutating func open(title: String, description: String) {
        text += #"<?xml version="1.0" encoding="UTF-8"?>"# + "\n"
        text += #"<svg xmlns="http://www.w3.org/2000/svg" width="\#(n(width))" height="\#(n(height))" "#
            + #"viewBox="0 0 \#(n(width)) \#(n(height))" role="img" font-family="Helvetica, Arial, sans-serif">"# + "\n"
        depth = 1
        element("title", content: title)
        element("desc", content: description)
        // Opaque: GitHub's dark theme would otherwise draw the black text on black.
        element("rect", #"width="100%" height="100%" fill="\#(Ink.paper)""#)
    }

    mutating func close() -> String {
        while depth > 1 { closeGroup() }
        text += "</svg>\n"
        depth = 0
        return text
    }

    mutating func openGroup(_ attributes: String) {
        line("<g \(attributes)>")
        depth += 1
    }

    mutating func closeGroup() {
        depth -= 1
        line("</g>")
    }

    /// An empty element; `attributes` are already escaped (they are built from this file's literals and numbers).
    mutating func element(_ name: String, _ attributes: String) { line("<\(name) \(attributes)/>") }

    mutating func element(_ name: String, content: String) { line("<\(name)>\(Self.escape(content))</\(name)>") }

    mutating func text(_ content: String, x: Double, y: Double, attributes: String) {
        let extra = attributes.isEmpty ? "" : " " + attributes
        line(#"<text x="\#(n(x))" y="\#(n(y))"\#(extra)>\#(Self.escape(content))</text>"#)
    }

    mutating func marker(_ marker: SeriesStyle.Marker, x: Double, y: Double, colour: String, size: Double) {
        switch marker {
        case .circle:
            element("circle", #"cx="\#(n(x))" cy="\#(n(y))" r="\#(n(size))" fill="\#(colour)""#)
        case .square:
            element("rect", #"x="\#(n(x - size))" y="\#(n(y - size))" width="\#(n(2 * size))" height="\#(n(2 * size))" fill="\#(colour)""#)
        case .diamond:
            let d = size * 1.3
            element("polygon", #"points="\#(n(x)),\#(n(y - d)) \#(n(x + d)),\#(n(y)) \#(n(x)),\#(n(y + d)) \#(n(x - d)),\#(n(y))" fill="\#(colour)""#)
        case .triangle, .triangleDown:
            let d = size * 1.3 * (marker == .triangle ? 1 : -1)
            element("polygon", #"points="\#(n(x)),\#(n(y - d)) \#(n(x + abs(d))),\#(n(y + d * 0.8)) \#(n(x - abs(d))),\#(n(y + d * 0.8))" fill="\#(colour)""#)
        }
    }

    private mutating func line(_ content: String) {
        text += String(repeating: "  ", count: max(0, depth)) + content + "\n"
    }

    /// Text safe in XML content and in double-quoted attributes; characters XML 1.0 forbids become U+FFFD, and so do
    /// the bidirectional controls (embeddings, overrides, isolates, marks), which could show a title reversed.
    static func escape(_ raw: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(raw.utf8.count)
        for scalar in raw.unicodeScalars {
            switch scalar {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&apos;"
            case "\t", "\n", "\r": escaped.unicodeScalars.append(scalar)
            case _ where scalar.value < 0x20 || scalar.value == 0xFFFE || scalar.value == 0xFFFF: escaped += "\u{FFFD}"
            case "\u{200E}", "\u{200F}", "\u{202A}"..."\u{202E}", "\u{2066}"..."\u{2069}", "\u{061C}": escaped += "\u{FFFD}"
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }
}

/// How wide a text is drawn, estimated from Helvetica's widths (the charts' font; Arial has the same metrics): enough
/// to end a name that would run off its room with `…`, slightly wide rather than narrow.
enum TextWidth {
    static func estimate(_ text: String, fontSize: Double) -> Double {
        text.unicodeScalars.reduce(0) { $0 + em($1) } * fontSize
    }

    /// `text` if it fits in `width`, else its longest start that fits with `…` after it.
    static func fitted(_ text: String, width: Double, fontSize: Double) -> String {
        guard estimate(text, fontSize: fontSize) > width else { return text }
        var kept = Substring(text)
        while !kept.isEmpty, estimate(kept + "…", fontSize: fontSize) > width { kept = kept.dropLast() }
        return kept + "…"
    }

    /// A character's width in ems, by kind.
    private static func em(_ scalar: Unicode.Scalar) -> Double {
        switch scalar {
        case "i", "j", "l", ".", ",", ":", ";", "'", "|", "!", "I", " ": 0.28
        case "f", "r", "t", "-", "(", ")", "[", "]", "/": 0.34
        case "m", "M", "W", "w", "@", "%": 0.95
        case "A"..."Z", "&", "_": 0.73
        case _ where scalar.value < 0x80: 0.56
        default: 1.0  // wide scripts (CJK), emoji: counted wide
        }
    }
}

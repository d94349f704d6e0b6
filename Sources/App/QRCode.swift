import CQRencode

/// One QR code symbol, made by libqrencode: a square of dark and light modules. Encoding is pure CPU work on a
/// short string (well under a millisecond for a URL), so it runs inline on the caller's task; it never blocks on I/O.
struct QRCode: Sendable, Equatable {
    /// Why a text could not be encoded.
    struct EncodingError: Error, CustomStringConvertible {
        var description: String
    }

    /// Modules per side, without the quiet zone.
    let size: Int
    /// Row-major, `true` for a dark module.
    private let modules: [Bool]

    /// Encodes `text` as bytes (UTF-8) at the smallest version that fits, with error correction level M: ~15 % of
    /// the symbol may be damaged or blurred on a screen and a phone still reads it.
    init(encoding text: String) throws(EncodingError) {
        // libqrencode takes a C string; an embedded NUL would silently cut the text short.
        guard !text.isEmpty, !text.utf8.contains(0) else {
            throw EncodingError(description: "QR text must be non-empty and contain no NUL byte")
        }
        guard let symbol = text.withCString({ QRcode_encodeString($0, 0, QR_ECLEVEL_M, QR_MODE_8, 1) }) else {
            throw EncodingError(description: "libqrencode could not encode \(text.utf8.count) bytes")
        }
        defer { QRcode_free(symbol) }
        let width = Int(symbol.pointee.width)
        guard width > 0, let data = symbol.pointee.data else {
            throw EncodingError(description: "libqrencode returned an empty symbol")
        }
        // Bit 0 of each byte is the module's colour; the other bits describe its role, which drawing ignores.
        size = width
        modules = UnsafeBufferPointer(start: data, count: width * width).map { $0 & 1 == 1 }
    }

    /// Whether the module at `row`, `column` is dark; anything outside the symbol (the quiet zone) is light.
    func isDark(row: Int, column: Int) -> Bool {
        guard (0..<size).contains(row), (0..<size).contains(column) else { return false }
        return modules[row * size + column]
    }

    /// The symbol as a standalone SVG: a white square with a `quietZone`-module margin (the spec asks for 4) and
    /// every dark module in one path, one sub-path per horizontal run, drawn with crisp edges so that scaling
    /// never blurs module borders.
    func svg(quietZone: Int = 4) -> String {
        let side = size + 2 * quietZone
        var path = ""
        for row in 0..<size {
            var column = 0
            while column < size {
                guard isDark(row: row, column: column) else {
                    column += 1
                    continue
                }
                let start = column
                while column < size, isDark(row: row, column: column) { column += 1 }
                let run = column - start
                path += "M\(start + quietZone) \(row + quietZone)h\(run)v1h-\(run)z"
            }
        }
        return """
            <svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 \(side) \(side)" width="\(side * 8)" height="\(side * 8)" \
            shape-rendering="crispEdges"><rect width="\(side)" height="\(side)" fill="#fff"/><path fill="#000" d="\(path)"/></svg>
            """
    }

    /// The symbol for a terminal, two module rows per text line with Unicode half blocks.
    ///
    /// - Parameter ansiColors: paint black on white with ANSI colours, which reads right on any terminal theme;
    ///   without colours the light modules are drawn as blocks, which reads right on the usual dark background
    ///   (the convention of `qrencode -t UTF8`).
    func terminalText(quietZone: Int = 4, ansiColors: Bool) -> String {
        let range = -quietZone..<(size + quietZone)
        var lines: [String] = []
        for top in stride(from: range.lowerBound, to: range.upperBound, by: 2) {
            var line = ansiColors ? "\u{1B}[30;47m" : ""
            for column in range {
                let upper = isDark(row: top, column: column)
                let lower = top + 1 < range.upperBound && isDark(row: top + 1, column: column)
                // With colours the block is the dark module; without, the block is the light one.
                let drawUpper = ansiColors ? upper : !upper
                let drawLower = ansiColors ? lower : (top + 1 < range.upperBound ? !lower : false)
                switch (drawUpper, drawLower) {
                case (true, true): line += "█"
                case (true, false): line += "▀"
                case (false, true): line += "▄"
                case (false, false): line += " "
                }
            }
            lines.append(line + (ansiColors ? "\u{1B}[0m" : ""))
        }
        return lines.joined(separator: "\n")
    }
}

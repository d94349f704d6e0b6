import HTTP

/// The languages Tandem's messages exist in.
enum Language: String, Sendable, CaseIterable {
    case japanese = "ja"
    case english = "en"

    /// The best match for an `Accept-Language` header: the supported language with the highest q-value (ties go
    /// to the one listed first); `fallback` when the header names neither.
    static func preferred(byAcceptLanguage header: String?, fallback: Language) -> Language {
        guard let header else { return fallback }
        var best: (language: Language, quality: Double)?
        for item in header.split(separator: ",") {
            let parts = item.split(separator: ";")
            guard let tag = parts.first?.trimmingSpaces().lowercased() else { continue }
            var quality = 1.0
            for parameter in parts.dropFirst() {
                let pair = parameter.trimmingSpaces()
                if pair.hasPrefix("q="), let value = Double(pair.dropFirst(2)) { quality = value }
            }
            let primary = tag.split(separator: "-").first.map(String.init) ?? tag
            guard quality > 0, let language = Language(rawValue: primary) else { continue }
            if quality > (best?.quality ?? 0) { best = (language, quality) }
        }
        return best?.language ?? fallback
    }
}

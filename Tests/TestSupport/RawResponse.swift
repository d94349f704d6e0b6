/// An HTTP/1.1 response as read off the wire by the test client.
public struct RawResponse: Sendable {
    public var status: Int
    /// Header names lowercased, values as sent, in order.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    public var consumedBytes: Int

    public var bodyText: String { String(decoding: body, as: UTF8.self) }

    public func header(_ name: String) -> String? {
        headers.first { $0.name == name.lowercased() }?.value
    }

    /// The head alone, when `bytes` holds all of it.
    static func parseHead(_ bytes: [UInt8]) -> RawResponse? {
        guard let end = find([13, 10, 13, 10], in: bytes) else { return nil }
        let lines = String(decoding: bytes[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ", maxSplits: 2)
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { return nil }
        var headers: [(String, String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = String(line[..<colon]).lowercased()
            let value = String(line[line.index(after: colon)...]).trimmingCharacters(in: " \t")
            headers.append((name, value))
        }
        return RawResponse(status: status, headers: headers, body: [], consumedBytes: end + 4)
    }

    /// A whole response, when `bytes` holds all of it; 1xx responses before it are skipped.
    static func parse(_ bytes: [UInt8], connectionClosed: Bool, headRequest: Bool) -> RawResponse? {
        guard var response = parseHead(bytes) else { return nil }
        if (100..<200).contains(response.status) {
            guard var rest = parse(Array(bytes[response.consumedBytes...]), connectionClosed: connectionClosed, headRequest: headRequest) else {
                return nil
            }
            rest.consumedBytes += response.consumedBytes
            return rest
        }
        let bodyStart = response.consumedBytes
        if headRequest || response.status == 304 || response.status == 204 {
            return response
        }
        if let length = response.header("content-length").flatMap({ Int($0) }) {
            guard bytes.count - bodyStart >= length else { return nil }
            response.body = Array(bytes[bodyStart..<bodyStart + length])
            response.consumedBytes = bodyStart + length
            return response
        }
        if response.header("transfer-encoding")?.lowercased() == "chunked" {
            let (text, ended, used) = ChunkedDecoding.decodeCounting(Array(bytes[bodyStart...]))
            guard ended || connectionClosed else { return nil }
            response.body = Array(text.utf8)
            response.consumedBytes = bodyStart + used
            return response
        }
        guard connectionClosed else { return nil }
        response.body = Array(bytes[bodyStart...])
        response.consumedBytes = bytes.count
        return response
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var text = Substring(self)
        while let first = text.first, set.contains(first) { text.removeFirst() }
        while let last = text.last, set.contains(last) { text.removeLast() }
        return String(text)
    }

    fileprivate func components(separatedBy separator: String) -> [String] {
        split(separator: separator, omittingEmptySubsequences: false).map(String.init)
    }
}

func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
    guard haystack.count >= needle.count else { return nil }
    for start in 0...(haystack.count - needle.count) where haystack[start..<start + needle.count].elementsEqual(needle) {
        return start
    }
    return nil
}

/// Decodes `Transfer-Encoding: chunked` bodies, tolerating a body that has not all arrived yet.
enum ChunkedDecoding {
    static func decode(_ bytes: [UInt8]) -> (text: String, ended: Bool) {
        let (text, ended, _) = decodeCounting(bytes)
        return (text, ended)
    }

    static func decodeCounting(_ bytes: [UInt8]) -> (text: String, ended: Bool, used: Int) {
        var output: [UInt8] = []
        var index = 0
        while true {
            guard let lineEnd = find([13, 10], in: Array(bytes[index...])) else { break }
            let sizeText = String(decoding: bytes[index..<index + lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText, radix: 16) else { break }
            let dataStart = index + lineEnd + 2
            if size == 0 {
                let end = min(bytes.count, dataStart + 2)
                return (String(decoding: output, as: UTF8.self), true, end)
            }
            guard bytes.count >= dataStart + size + 2 else { break }
            output += bytes[dataStart..<dataStart + size]
            index = dataStart + size + 2
        }
        return (String(decoding: output, as: UTF8.self), false, index)
    }
}

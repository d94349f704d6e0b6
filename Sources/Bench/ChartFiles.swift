import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The folder charts are written to (`--out`, `--charts`): checked and made with POSIX calls, so that a refusal says
/// why in plain words (`is a file, not a folder`) instead of a Foundation error dump.
enum ChartFolder {
    /// Why `path` cannot take the charts, or nil. `create` false only looks (a flag's check before a run: nothing is
    /// made then); true makes the folder and its missing parents.
    static func problem(_ path: String, create: Bool) -> String? {
        var prefix = path.hasPrefix("/") ? "/" : ""
        var parent = path.hasPrefix("/") ? "/" : "."
        let components = path.split(separator: "/")
        for (index, component) in components.enumerated() {
            prefix += (prefix.isEmpty || prefix.hasSuffix("/") ? "" : "/") + component
            var info = stat()
            if stat(prefix, &info) == 0 {
                guard info.st_mode & S_IFMT == S_IFDIR else {
                    return index == components.count - 1 ? "is a file, not a folder" : "cannot be created (\(prefix) is a file, not a folder)"
                }
                parent = prefix
                continue
            }
            let failure = errno
            guard failure == ENOENT else { return "cannot be created (\(PlainError.reason(failure)))" }
            // What is missing is made inside the deepest folder that exists: it must let us.
            guard create else { return access(parent, W_OK | X_OK) == 0 ? nil : "cannot be created (permission denied in \(parent))" }
            guard mkdir(prefix, 0o777) == 0 || errno == EEXIST else { return "cannot be created (\(PlainError.reason(errno)))" }
            parent = prefix
        }
        return access(path, W_OK | X_OK) == 0 ? nil : "cannot be written to (permission denied)"
    }

    /// Refuses `path` with `flag`'s name and the reason: `--out x: is a file, not a folder`.
    static func check(_ path: String, flag: String, create: Bool) throws {
        if let problem = problem(path, create: create) { throw BenchError("\(flag) \(path): \(problem)") }
    }

    /// Writes `text` to `path` atomically (a temporary file in the same folder, then renamed over it).
    static func writeAtomically(_ text: String, to path: String) throws {
        let temporary = path + ".tmp-\(getpid())"
        func failed(_ step: String) -> BenchError {
            let reason = PlainError.reason(errno)
            unlink(temporary)
            return BenchError("\(path): cannot be \(step) (\(reason))")
        }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failed("written") }
        let bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let count = bytes[done...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else {
                let error = failed("written")
                close(fd)
                throw error
            }
            done += count
        }
        guard close(fd) == 0 else { throw failed("written") }
        guard rename(temporary, path) == 0 else { throw failed("replaced") }
    }
}

/// A recorded JSON-lines file, read only when it is a regular file of at most `limit` bytes: its kind and size are
/// checked with `stat` before it is opened (a FIFO would block, `/dev/zero` never ends), and again on the open file.
enum RecordedFile {
    static func contents(of path: String, limit: Int) throws -> Data {
        var info = stat()
        guard stat(path, &info) == 0 else { throw BenchError("\(path): \(errno == ENOENT ? "no such file" : PlainError.reason(errno))") }
        try check(info, path: path, limit: limit)
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw BenchError("\(path): cannot be read (\(PlainError.reason(errno)))") }
        defer { close(fd) }
        // It may have been replaced between the two calls: the file opened is the one read.
        guard fstat(fd, &info) == 0 else { throw BenchError("\(path): cannot be read (\(PlainError.reason(errno)))") }
        try check(info, path: path, limit: limit)
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while data.count <= limit {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { throw BenchError("\(path): cannot be read (\(PlainError.reason(errno)))") }
            if count == 0 { return data }
            data.append(contentsOf: buffer[..<count])
        }
        throw tooLarge(path, limit: limit)  // it grew while being read
    }

    private static func check(_ info: stat, path: String, limit: Int) throws {
        switch info.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw BenchError("\(path): is a directory, not a file")
        default: throw BenchError("\(path): not a regular file")
        }
        guard info.st_size <= limit else { throw tooLarge(path, limit: limit, size: Int(info.st_size)) }
    }

    private static func tooLarge(_ path: String, limit: Int, size: Int? = nil) -> BenchError {
        BenchError("\(path): \(size.map { "\($0) bytes, " } ?? "")more than a run's JSON lines (at most \(limit) bytes)")
    }
}

/// The words for an `errno`, as a refusal says them.
enum PlainError {
    static func reason(_ code: Int32) -> String {
        switch code {
        case EACCES, EPERM: "permission denied"
        case ENOENT: "no such parent folder"
        case ENOTDIR: "a parent is not a folder"
        case EROFS: "read-only file system"
        case ENOSPC: "no space left on the device"
        case EISDIR: "is a directory"
        default: String(cString: strerror(code)).lowercased()
        }
    }
}

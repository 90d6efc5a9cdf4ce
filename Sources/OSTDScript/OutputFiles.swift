// Files the commands write whole, and the names they show for them: `writeText` (the SVG of
// `dump --svg`) and `baseName`. Physical-memory images have their own writer (Image.swift).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The last component of `path`.
func baseName(_ path: String) -> String {
    path.split(separator: "/").last.map(String.init) ?? path
}

/// Writes `text` to `path`, replacing it. Returns `nil`, or why it could not.
func writeText(_ text: String, to path: String) -> String? {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { return "cannot create \(path): \(String(cString: strerror(errno)))" }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    var done = 0
    while done < bytes.count {
        let count = bytes[done...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return "cannot write \(path): \(String(cString: strerror(errno)))" }
        done += count
    }
    return nil
}

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

/// Why `path` cannot take an output the command will write after running `script` (`-`:
/// standard input), or `nil` when it can: checked before anything runs, so that a run is not
/// wasted on an output it cannot write, and a script is never overwritten by its own output.
func outputProblem(_ path: String, option: String, script: String) -> String? {
    var target = stat()
    guard stat(path, &target) == 0 else {
        // A new file: its directory must exist and take it.
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        guard access(directory.isEmpty ? "/" : directory, W_OK | X_OK) == 0 else {
            return "\(option) \(path): cannot create it: \(String(cString: strerror(errno)))"
        }
        return nil
    }
    var source = stat()
    if script != "-", stat(script, &source) == 0, source.st_dev == target.st_dev, source.st_ino == target.st_ino {
        return "\(option) \(path) is the script itself; choose another file"
    }
    if target.st_mode & S_IFMT == S_IFDIR { return "\(option) \(path) is a directory" }
    guard access(path, W_OK) == 0 else {
        return "\(option) \(path): cannot write it: \(String(cString: strerror(errno)))"
    }
    return nil
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

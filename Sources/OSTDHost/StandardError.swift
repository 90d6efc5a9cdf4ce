// The commands' writer for standard error: one unbuffered `write(2)` per line, so that error lines
// are never held back behind buffered standard output or a progress line.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes `text` and a newline to standard error (file descriptor 2), unbuffered.
public func printToStandardError(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}

// libc's `memset` and `memcpy`, the baselines benchmarks compare against, kept out of line so
// that the compiler cannot fold a measured loop away.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `memset(pointer, 0, count)`.
@inline(never)
public func zero(_ pointer: UnsafeMutableRawPointer, _ count: Int) {
    memset(pointer, 0, count)
}

/// `memcpy(destination, source, count)`.
@inline(never)
public func copy(_ destination: UnsafeMutableRawPointer, _ source: UnsafeRawPointer, _ count: Int) {
    memcpy(destination, source, count)
}

/// Writes `text` and a newline to standard error (file descriptor 2), unbuffered.
public func printToStandardError(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}

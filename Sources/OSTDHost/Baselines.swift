// libc's `memset` and `memcpy`, the baselines benchmarks compare against, kept out of line so
// that the compiler cannot fold a measured loop away. Named for what they wrap, so that they
// neither clash with Swift's `copy` operator nor need a module prefix at the call site.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `memset(pointer, 0, count)`.
@inline(never)
public func memsetBaseline(_ pointer: UnsafeMutableRawPointer, _ count: Int) {
    memset(pointer, 0, count)
}

/// `memcpy(destination, source, count)`.
@inline(never)
public func memcpyBaseline(_ destination: UnsafeMutableRawPointer, _ source: UnsafeRawPointer, _ count: Int) {
    memcpy(destination, source, count)
}

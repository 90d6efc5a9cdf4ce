// `--image FILE`: the whole physical memory as a file, byte i = physical address i. Pages that are
// all zero are left as holes, so a 256 MiB machine with a few mappings takes a few pages of disk.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec

extension ScriptRunner {
    /// Writes physical memory to `path` as a sparse file of exactly `memorySize` bytes.
    ///
    /// - Returns: `nil`, or why the file could not be written.
    public func writeImage(to path: String) -> String? {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { return "cannot create \(path): \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        guard ftruncate(fd, off_t(memorySize)) == 0 else {
            return "cannot size \(path) to \(memorySize) bytes: \(String(cString: strerror(errno)))"
        }
        let pageBytes = 4096
        var page = 0
        while page < memorySize {
            let pointer = machine.pointer(to: Paddr(UInt64(page)))
            if !isZero(pointer, pageBytes) {
                guard pwrite(fd, pointer, pageBytes, off_t(page)) == pageBytes else {
                    return "cannot write \(path) at \(page): \(String(cString: strerror(errno)))"
                }
            }
            page += pageBytes
        }
        return nil
    }
}

/// Whether `count` bytes (a multiple of 8) at `pointer` are all zero.
private func isZero(_ pointer: UnsafeRawPointer, _ count: Int) -> Bool {
    let words = pointer.assumingMemoryBound(to: UInt64.self)
    for i in 0..<(count / 8) where words[i] != 0 { return false }
    return true
}

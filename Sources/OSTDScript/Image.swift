// `--image FILE`: the whole physical memory as a file, byte i = physical address i. Only pages
// the host has backed (`Machine.forEachResidentRun`) are read, and only those not all zero are
// written; the file is sized first, so everything else is a hole. A 64 GiB machine with a few
// mappings costs a few pages of disk and of work, not a scan of 64 GiB.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@_spi(OSTDInternals) import OSTDMemory
import OSTDHost
import OSTDSpec

/// Where an image's pages go: positioned writes into a destination already `size` bytes long
/// and zero.
public protocol ImageSink {
    /// Writes `bytes` at `offset`. Returns `nil`, or why it could not.
    mutating func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> String?
}

/// What writing an image did.
public struct ImageStatistics: Equatable, Sendable {
    /// Pages read to find out whether they are zero.
    public var pagesExamined = 0
    /// Bytes handed to the sink.
    public var bytesWritten = 0
}

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
        var sink = FileImageSink(fd: fd, path: path)
        if case .failure(let problem) = writeImage(into: &sink) { return problem.message }
        return nil
    }

    /// Hands every page of physical memory that may be non-zero and is to `sink`, at its
    /// physical address; the sink's destination is zero elsewhere.
    public func writeImage<S: ImageSink>(into sink: inout S) -> Result<ImageStatistics, ImageError> {
        var statistics = ImageStatistics()
        do throws(ImageError) {
            try machine.forEachResidentRun { (run: Range<Paddr>) throws(ImageError) in
                var page = run.lowerBound
                while page < run.upperBound {
                    let pointer = machine.readOnlyPointer(to: page)
                    statistics.pagesExamined += 1
                    if !isZero(pointer, pageSize) {
                        let bytes = UnsafeRawBufferPointer(start: pointer, count: pageSize)
                        if let problem = sink.write(bytes, at: Int(page.rawValue)) { throw ImageError(message: problem) }
                        statistics.bytesWritten += pageSize
                    }
                    page = page + pageSize
                }
            }
        } catch {
            return .failure(error)
        }
        return .success(statistics)
    }
}

/// Why an image could not be written.
public struct ImageError: Error, Equatable {
    public var message: String
}

/// An image file: positioned writes with `pwrite`.
struct FileImageSink: ImageSink {
    let fd: Int32
    let path: String

    mutating func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> String? {
        guard pwrite(fd, bytes.baseAddress, bytes.count, off_t(offset)) == bytes.count else {
            return "cannot write \(path) at \(offset): \(String(cString: strerror(errno)))"
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

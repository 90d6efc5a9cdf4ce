// `--image FILE`: the whole physical memory as a file, byte i = physical address i. The file is
// sized first, so everything not written is a hole, and only pages that may be non-zero are read:
// the pages of frame 0 and the metadata region the host has backed (`forEachResidentRun`), and
// the frames whose slots, in those pages, have the written flag (`MetaSlot.markWritten`). Pages all
// zero are not written. A 16 TiB machine with a few mappings costs a few pages of disk and a
// `mincore` walk of its 256 GiB of metadata, not a scan of 16 TiB.

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
        var copier = PageCopier(machine: machine, sink: sink)
        defer { sink = copier.sink }
        let metadata = machine.metadataRange
        do throws(ImageError) {
            try machine.forEachResidentRun(in: Paddr(0)..<metadata.upperBound) { (run) throws(ImageError) in
                var page = run.lowerBound
                while page < run.upperBound {
                    try copier.copy(page)
                    if page >= metadata.lowerBound { try copier.copyWrittenFrames(slotsAt: page - metadata.lowerBound) }
                    page = page + pageSize
                }
            }
        } catch {
            return .failure(error)
        }
        return .success(copier.statistics)
    }
}

/// Copies pages that are not all zero to a sink, counting what it does.
struct PageCopier<S: ImageSink> {
    let machine: Machine
    var sink: S
    var statistics = ImageStatistics()

    /// Hands the page at `page` to the sink unless it is all zero.
    mutating func copy(_ page: Paddr) throws(ImageError) {
        // SAFETY: `page` is a page-aligned address inside physical memory (the caller walks the
        // machine's own runs), so its 4 KiB are mapped while `machine` lives; they are only read.
        let pointer = machine.readOnlyPointer(to: page)
        statistics.pagesExamined += 1
        guard !isZero(pointer, pageSize) else { return }
        if let problem = sink.write(UnsafeRawBufferPointer(start: pointer, count: pageSize), at: Int(page.rawValue)) {
            throw ImageError(message: problem)
        }
        statistics.bytesWritten += pageSize
    }

    /// Copies the allocatable frames whose slots are in the metadata page at byte `offset` of the
    /// metadata region and that may hold non-zero bytes (their written flag is set). A frame whose
    /// slot page the host never backed has a zero slot, so it was never written.
    mutating func copyWrittenFrames(slotsAt offset: Int) throws(ImageError) {
        let first = offset / MetaSlot.size
        let firstFree = Int(machine.metadataRange.upperBound.rawValue) / pageSize
        let end = min(first + pageSize / MetaSlot.size, machine.frameCount)
        for index in max(first, firstFree)..<max(end, firstFree) where machine.mayHoldNonZeroBytes(frame: index) {
            try copy(Paddr(UInt64(index) << UInt64(pageShift)))
        }
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

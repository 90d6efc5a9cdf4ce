// Reading a script line by line as its bytes arrive, so that it is validated while it is read:
// the parser stops at the first invalid line without reading the rest, and the input held at
// once is one line and one block, never the whole file. A line is at most `maxLineLength` bytes
// (SCRIPT.md sets no limit; docs/scripts.md states this one), so endless input without a newline
// (`/dev/zero`) is an error, not an endless allocation.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a script's bytes come from: fills the buffer it is given and returns how many bytes it
/// put there, 0 at the end, or a negative number when it cannot read.
public typealias ScriptByteSource = (UnsafeMutableRawBufferPointer) -> Int

/// Why reading lines stopped short.
enum LineReadError: Error {
    /// The source failed.
    case unreadable
    /// The line (1-based) is longer than `maxLineLength` bytes.
    case tooLong(line: Int)
}

/// The lines of a byte source, one at a time.
struct LineReader {
    /// The most bytes a line may have, its `\n` (or `\r\n`) aside: 1 MiB.
    static let maxLineLength = 1 << 20
    /// The most bytes asked of the source at once.
    static let blockSize = 64 << 10

    private let source: ScriptByteSource
    /// Bytes read and not yet returned start at `start`.
    private var pending: [UInt8] = []
    private var start = 0
    /// Where to look for the next `\n` (bytes before it, from `start`, have none).
    private var scanned = 0
    private var atEnd = false
    /// The number of the line last returned.
    private(set) var lineNumber = 0

    init(_ source: @escaping ScriptByteSource) { self.source = source }

    /// The next line's bytes (without its `\n`, a `\r` before it dropped), or `nil` at the end.
    mutating func nextLine() throws(LineReadError) -> ArraySlice<UInt8>? {
        while true {
            if let newline = pending[scanned...].firstIndex(of: UInt8(ascii: "\n")) {
                var end = newline
                if end > start, pending[end - 1] == UInt8(ascii: "\r") { end -= 1 }
                return try deliver(start..<end, resumingAt: newline + 1)
            }
            scanned = pending.count
            guard pending.count - start <= Self.maxLineLength + 1 else { throw .tooLong(line: lineNumber + 1) }
            if atEnd {
                guard start < pending.count else { return nil }
                return try deliver(start..<pending.count, resumingAt: pending.count)
            }
            try refill()
        }
    }

    private mutating func deliver(_ line: Range<Int>, resumingAt next: Int) throws(LineReadError) -> ArraySlice<UInt8> {
        lineNumber += 1
        guard line.count <= Self.maxLineLength else { throw .tooLong(line: lineNumber) }
        start = next
        scanned = next
        return pending[line]
    }

    /// Drops the bytes already returned and appends the next block of the source.
    private mutating func refill() throws(LineReadError) {
        pending.removeFirst(start)
        scanned -= start
        start = 0
        let old = pending.count
        pending.append(contentsOf: repeatElement(0, count: Self.blockSize))
        let count = pending.withUnsafeMutableBytes { source(UnsafeMutableRawBufferPointer(rebasing: $0[old...])) }
        guard count >= 0 else { throw .unreadable }
        pending.removeLast(Self.blockSize - count)
        if count == 0 { atEnd = true }
    }
}

/// A source reading the file at `path` (`-`: standard input), or `nil` when it cannot be opened.
/// The file is closed when the source is released.
public func fileByteSource(_ path: String) -> ScriptByteSource? {
    let file = path == "-" ? OpenFile(fd: 0, owned: false) : OpenFile(fd: open(path, O_RDONLY), owned: true)
    guard file.fd >= 0 else { return nil }
    return { buffer in
        while true {
            let count = read(file.fd, buffer.baseAddress, buffer.count)
            if count < 0, errno == EINTR { continue }
            return count
        }
    }
}

/// A file descriptor, closed with its owner.
private final class OpenFile {
    let fd: Int32
    let owned: Bool
    init(fd: Int32, owned: Bool) {
        self.fd = fd
        self.owned = owned
    }
    deinit { if owned && fd >= 0 { close(fd) } }
}

/// A source reading `bytes` (a script given as text).
func byteSource<C: Collection<UInt8>>(_ bytes: C) -> ScriptByteSource {
    var rest = Array(bytes)[...]
    return { buffer in
        let count = min(buffer.count, rest.count)
        buffer.copyBytes(from: rest.prefix(count))
        rest = rest.dropFirst(count)
        return count
    }
}

// Where `ostd-mm run` writes its standard output: a buffer of bounded size that hands its bytes
// to a sink whenever it fills (and at the end of each line when asked to), so that a result is
// written as it is produced and the output held in memory never exceeds the buffer's capacity,
// however much a `read` prints. Output.swift formats results into it; `LineCollector` turns the
// pieces back into lines for callers that want lines (tests, `dump`).

/// A bounded output buffer in front of a sink.
public final class ScriptOutput {
    /// The default capacity: 64 KiB.
    public static let defaultCapacity = 64 << 10

    /// The most bytes held before they are handed to the sink.
    public let capacity: Int
    /// Whether every finished line is handed on at once (a terminal), not only a full buffer.
    public let flushesLines: Bool
    private let sink: (UnsafeRawBufferPointer) -> Void
    /// `capacity` bytes, of which the first `count` are pending.
    private var buffer: [UInt8]
    private var count = 0
    /// The most bytes the buffer has held at once.
    public private(set) var peakPending = 0

    /// An output of `capacity` bytes (at least 16) handing its bytes to `sink`.
    public init(capacity: Int = ScriptOutput.defaultCapacity, flushesLines: Bool = false,
                sink: @escaping (UnsafeRawBufferPointer) -> Void) {
        self.capacity = max(capacity, 16)
        self.flushesLines = flushesLines
        self.sink = sink
        buffer = [UInt8](repeating: 0, count: self.capacity)
    }

    /// Appends `bytes`, handing full buffers on as it goes.
    public func append(_ bytes: UnsafeRawBufferPointer) {
        var rest = bytes[...]
        while !rest.isEmpty {
            if count == capacity { flush() }
            let step = min(rest.count, capacity - count)
            buffer[count..<count + step] = ArraySlice(rest.prefix(step))
            count += step
            rest = rest.dropFirst(step)
            peakPending = max(peakPending, count)
        }
    }

    /// Appends the UTF-8 of `text`.
    public func append(_ text: String) {
        var text = text
        text.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    /// Appends `bytes` as lowercase hex digit pairs, encoding at most a buffer's worth at a time.
    public func appendHex(_ bytes: UnsafeRawBufferPointer) {
        var rest = bytes[...]
        while !rest.isEmpty {
            if capacity - count < 2 { flush() }
            let step = min(rest.count, (capacity - count) / 2)
            encodeHex(rest.prefix(step))
            rest = rest.dropFirst(step)
            peakPending = max(peakPending, count)
        }
    }

    /// Encodes `bytes` after the pending ones; they fit.
    private func encodeHex(_ bytes: Slice<UnsafeRawBufferPointer>) {
        let digits = hexDigits
        var out = buffer.mutableSpan
        var at = count
        for byte in bytes {
            out[at] = digits[Int(byte >> 4)]
            out[at + 1] = digits[Int(byte & 15)]
            at += 2
        }
        count = at
    }

    /// Ends a line; hands it on when lines are flushed one by one.
    public func endLine() {
        append("\n")
        if flushesLines { flush() }
    }

    /// Hands every byte held to the sink.
    public func flush() {
        guard count > 0 else { return }
        buffer.withUnsafeBytes { sink(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
        count = 0
    }
}

private let hexDigits = Array("0123456789abcdef".utf8)

/// Reassembles lines from an output's pieces and passes each finished line on.
final class LineCollector {
    private var partial: [UInt8] = []
    private let line: (String) -> Void

    init(_ line: @escaping (String) -> Void) { self.line = line }

    /// Takes a piece of output: every `\n` in it finishes a line.
    func take(_ piece: UnsafeRawBufferPointer) {
        var rest = piece[...]
        while let newline = rest.firstIndex(of: UInt8(ascii: "\n")) {
            partial.append(contentsOf: rest[..<newline])
            line(String(decoding: partial, as: UTF8.self))
            partial.removeAll(keepingCapacity: true)
            rest = rest[(newline + 1)...]
        }
        partial.append(contentsOf: rest)
    }
}

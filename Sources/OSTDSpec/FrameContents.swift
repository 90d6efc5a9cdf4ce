// The contents of one physical frame as the seeds' `MemView` sees it (vostd `virt_mem.rs`:
// `MemContents<u8>`, `FrameContents`; vostd-spec-reference.md §2.1–2.2).
//
// Design. The seeds' `contents` is a `Seq<MemContents<u8>>` of the frame's whole size, and
// `MemView.memory` is keyed by frame base PA, so a 1 GiB leaf carries 1 GiB of contents. A view
// computed from a live space must stay bounded by the range it was asked for, so `contents` is a
// `FrameBytes`: a collection of `size` elements (so `|contents| == size` holds, as in the seed)
// that stores only a window of offsets; every offset outside the window reads as `.uninit`.
//
// `.uninit` therefore means "this view holds no value for the byte": either the seeds' Uninit,
// or a byte the view was not built over, or one that another view owns (the corrected
// `MemView.split` hands each byte to one half). The run time keeps no per-byte initialisation:
// frames are zeroed or written before use, so every byte read from simulated memory is
// `.initialized`; the seeds' Uninit only arises in ghost views.

@_spi(OSTDInternals) import OSTDMemory

/// One byte of a view (the seeds' `MemContents<u8>`: `Init(u8) | Uninit`).
public enum MemContents: Hashable, Sendable {
    /// The seeds' `Init(u8)`.
    case initialized(UInt8)
    /// The seeds' `Uninit`: the view holds no value for this byte.
    case uninit

    /// The seeds' `is Init`.
    public var isInit: Bool { value != nil }

    /// The seeds' `value()`, or `nil` for `uninit`.
    public var value: UInt8? {
        if case .initialized(let byte) = self { return byte }
        return nil
    }
}

/// `size` bytes of which only `window` is stored; the rest read as `.uninit`. Writing outside the
/// window widens it (filling the gap with `.uninit`), so memory grows with what is written.
public struct FrameBytes: RandomAccessCollection, MutableCollection, Sendable, CustomStringConvertible {
    /// The frame's size: the collection always has this many elements.
    public let size: Int
    /// The offsets stored.
    public private(set) var window: Range<Int>
    private var stored: [MemContents]

    /// `size` bytes, all `.uninit`.
    public init(size: Int) {
        self.size = size
        window = 0..<0
        stored = []
    }

    /// `size` bytes; `bytes` are the initialised contents at offsets `offset ..< offset + bytes.count`.
    public init(size: Int, offset: Int, bytes: [UInt8]) {
        precondition(offset >= 0 && offset + bytes.count <= size, "bytes outside the frame")
        self.size = size
        window = offset..<(offset + bytes.count)
        stored = bytes.map { .initialized($0) }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { size }

    public subscript(offset: Int) -> MemContents {
        get { window.contains(offset) ? stored[offset - window.lowerBound] : .uninit }
        set {
            precondition((0..<size).contains(offset), "offset \(offset) outside a frame of \(size) bytes")
            widen(to: offset)
            stored[offset - window.lowerBound] = newValue
        }
    }

    /// Widens the window to hold `offset`.
    private mutating func widen(to offset: Int) {
        if window.isEmpty {
            window = offset..<(offset + 1)
            stored = [.uninit]
        } else if offset < window.lowerBound {
            stored.insert(contentsOf: repeatElement(.uninit, count: window.lowerBound - offset), at: 0)
            window = offset..<window.upperBound
        } else if offset >= window.upperBound {
            stored.append(contentsOf: repeatElement(.uninit, count: offset + 1 - window.upperBound))
            window = window.lowerBound..<(offset + 1)
        }
    }

    /// Whether every byte at `offsets` is initialised.
    public func allInitialized(_ offsets: Range<Int>) -> Bool {
        guard !offsets.isEmpty else { return true }
        guard window.lowerBound <= offsets.lowerBound && offsets.upperBound <= window.upperBound else { return false }
        let base = window.lowerBound
        return stored[(offsets.lowerBound - base)..<(offsets.upperBound - base)].allSatisfy(\.isInit)
    }

    /// Whether no byte at `offsets` is initialised.
    public func noneInitialized(_ offsets: Range<Int>) -> Bool {
        let overlap = offsets.clamped(to: window)
        let base = window.lowerBound
        return overlap.isEmpty || !stored[(overlap.lowerBound - base)..<(overlap.upperBound - base)].contains(where: \.isInit)
    }

    /// These bytes with only the initialised ones at `kept` (each range clamped to the frame).
    public func keeping(_ kept: [Range<Int>]) -> FrameBytes {
        var result = FrameBytes(size: size)
        for range in kept {
            for offset in range.clamped(to: window) where self[offset].isInit { result[offset] = self[offset] }
        }
        return result
    }

    /// These bytes with `other`'s initialised ones written over them.
    public func merging(_ other: FrameBytes) -> FrameBytes {
        var result = self
        for offset in other.window where other[offset].isInit { result[offset] = other[offset] }
        return result
    }

    public var description: String {
        "\(size) bytes, \(window.lowerBound)..<\(window.upperBound) stored"
    }
}

extension FrameBytes: Equatable {
    /// Equal as sequences of `size` bytes, however much of each is stored.
    public static func == (a: FrameBytes, b: FrameBytes) -> Bool {
        guard a.size == b.size else { return false }
        let lower = Swift.min(a.window.lowerBound, b.window.lowerBound)
        let upper = Swift.max(a.window.upperBound, b.window.upperBound)
        return (lower..<upper).allSatisfy { a[$0] == b[$0] }
    }
}

/// The contents of one frame (the seeds' `FrameContents { contents, size, range }`).
public struct FrameContents: Equatable, Sendable {
    /// One element per byte of the frame (`|contents| == size` by construction).
    public var contents: FrameBytes
    /// The frame's size in bytes.
    public var size: Int
    /// The frame's physical range.
    public var range: Range<Paddr>

    public init(contents: FrameBytes, size: Int, range: Range<Paddr>) {
        self.contents = contents
        self.size = size
        self.range = range
    }

    /// A frame of `size` bytes at `base` holding no byte.
    public init(base: Paddr, size: Int) {
        self.init(contents: FrameBytes(size: size), size: size, range: base..<(base + size))
    }

    /// The seeds' `MAX_PADDR`: here the largest simulated machine's memory.
    public static var maxPaddr: Paddr { Paddr(UInt64(Machine.maxMemorySize)) }

    /// `FrameContents::inv` (ref §2.2): "`|contents| == size ∧ size == range.end - range.start
    /// ∧ range.start % size == 0 ∧ range.end % size == 0 ∧ range.start <= range.end < MAX_PADDR`".
    /// A zero `size` fails (the seed's `% size` is undefined there).
    public func inv(maxPaddr: Paddr = FrameContents.maxPaddr) -> Bool {
        size > 0 && contents.count == size
            && range.lowerBound <= range.upperBound && range.upperBound - range.lowerBound == size
            && range.lowerBound.rawValue % UInt64(size) == 0 && range.upperBound.rawValue % UInt64(size) == 0
            && range.upperBound < maxPaddr
    }
}

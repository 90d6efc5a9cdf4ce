// One TLB flush request, packed in a word (OSTD `mm/tlb.rs`, `TlbFlushOp`).
//
// OSTD encodes an operation in 8 bytes: all ones flushes everything (but global entries); a page
// address with bit 0 set flushes one page; a page address with a page count in its low six bits
// flushes that many pages from it. A range of 32 pages or more becomes a flush of everything:
// past that point one full flush is cheaper than page-by-page invalidations (OSTD
// `FLUSH_ALL_PAGES_THRESHOLD`). It is what a platform performs on a CPU's TLB (`Platform.flushTlb`);
// the TLB layer's `TlbFlusher` batches them.

/// A TLB flush operation (OSTD `TlbFlushOp`).
@frozen
public struct TlbFlushOp: Hashable, Sendable, CustomStringConvertible {
    @usableFromInline let word: UInt64

    @inlinable
    init(word: UInt64) { self.word = word }

    /// From this many pages on, a range flush becomes a flush of everything (OSTD
    /// `FLUSH_ALL_PAGES_THRESHOLD`).
    public static var flushAllPagesThreshold: Int { 32 }

    /// Flush every non-global entry (OSTD `for_all`).
    @inlinable
    public static var all: TlbFlushOp { TlbFlushOp(word: .max) }

    /// Flush the page containing `va` (OSTD `for_single`).
    @inlinable
    public static func single(_ va: Vaddr) -> TlbFlushOp {
        TlbFlushOp(word: va.rawValue & ~UInt64(pageSize - 1) | 1)
    }

    /// Flush the pages of `range`, or everything when it spans 32 pages or more
    /// (OSTD `for_range`).
    ///
    /// - Precondition: `range` is non-empty and page aligned.
    @inlinable
    public static func range(_ range: Range<Vaddr>) -> TlbFlushOp {
        precondition(range.lowerBound.isAligned(to: pageSize) && range.upperBound.isAligned(to: pageSize),
                     "TLB flush range \(range.lowerBound)..<\(range.upperBound) is not page aligned")
        precondition(range.lowerBound < range.upperBound, "empty TLB flush range at \(range.lowerBound)")
        let pages = (range.upperBound - range.lowerBound) / pageSize
        return pages >= flushAllPagesThreshold ? .all : TlbFlushOp(word: range.lowerBound.rawValue | UInt64(pages))
    }

    /// Whether the operation flushes everything.
    @inlinable
    public var isAll: Bool { word == .max }

    /// The pages flushed, as a range, or `nil` for a flush of everything.
    @inlinable
    public var pages: Range<Vaddr>? {
        guard !isAll else { return nil }
        let start = Vaddr(word & ~UInt64(pageSize - 1))
        let count = word & 0x3f
        return start..<(start + Int(count) * pageSize)
    }

    /// The number of pages flushed, or `nil` for a flush of everything.
    @inlinable
    public var pageCount: Int? { pages.map { ($0.upperBound - $0.lowerBound) / pageSize } }

    public var description: String {
        guard let pages else { return "flush all" }
        return pageCount == 1 ? "flush \(pages.lowerBound)" : "flush \(pages.lowerBound)..<\(pages.upperBound)"
    }
}

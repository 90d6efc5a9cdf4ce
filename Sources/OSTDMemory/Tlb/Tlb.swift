// A simulated CPU's TLB: the translations it has cached, and nothing else.
//
// Like the hardware it models, the TLB is filled by the page walk that follows a miss and is
// emptied only by flushes (`invlpg`, a CR3 write). An entry keeps the physical page and the
// access rights the walk saw, so after the page table changes a stale entry stays usable until
// it is flushed: exactly the window that `TlbFlusher` closes and that OSTD's "keep the frame
// until every CPU has flushed" rule makes harmless.
//
// Three direct-mapped arrays, one per leaf size, as x86 parts keep separate TLBs for 4 KiB,
// 2 MiB and 1 GiB pages. Negative results are never cached (x86 does not cache non-present
// entries). The TLB belongs to its CPU's `CpuMmu` and is used only with that CPU's MMU lock held.

/// One cached translation: the tag is the virtual page number at the entry's size with bit 0
/// set when valid; the value is the physical page base with the access rights in its low bits.
@usableFromInline
struct TlbEntry {
    @usableFromInline var tag: UInt64
    @usableFromInline var value: UInt64

    @usableFromInline static var userBit: UInt64 { 1 }
    @usableFromInline static var writableBit: UInt64 { 2 }
    @usableFromInline static var invalid: TlbEntry { TlbEntry(tag: 0, value: 0) }

    @inlinable init(tag: UInt64, value: UInt64) {
        self.tag = tag
        self.value = value
    }
}

/// What a TLB lookup found: the physical address of the byte, the bytes left in its page, and
/// the access rights the entry grants.
@usableFromInline
struct TlbTranslation {
    @usableFromInline var paddr: Paddr
    @usableFromInline var bytesLeftInPage: Int
    @usableFromInline var user: Bool
    @usableFromInline var writable: Bool

    @inlinable init(paddr: Paddr, bytesLeftInPage: Int, user: Bool, writable: Bool) {
        self.paddr = paddr
        self.bytesLeftInPage = bytesLeftInPage
        self.user = user
        self.writable = writable
    }
}

/// How often a TLB hit, missed and was flushed.
public struct TlbStatistics: Equatable, Sendable {
    /// Lookups answered from a cached entry.
    public var hits = 0
    /// Lookups that needed a page walk.
    public var misses = 0
    /// Single-page invalidations performed (`invlpg`).
    public var pageFlushes = 0
    /// Full flushes performed (CR3 reloads and `TlbFlushOp.all`).
    public var fullFlushes = 0

    public init() {}
}

/// A software TLB (see the file comment).
@usableFromInline
struct Tlb: ~Copyable {
    /// Entries per leaf size: 64 of 4 KiB, 32 of 2 MiB, 4 of 1 GiB.
    @usableFromInline static var ways: (Int, Int, Int) { (64, 32, 4) }
    @usableFromInline static var entryCount: Int { 100 }

    @usableFromInline let entries: UnsafeMutablePointer<TlbEntry>
    @usableFromInline var statistics = TlbStatistics()

    init() {
        entries = .allocate(capacity: Tlb.entryCount)
        entries.initialize(repeating: .invalid, count: Tlb.entryCount)
    }

    deinit { entries.deallocate() }

    /// The slot for `va` among the entries of `level` (1, 2 or 3) and the tag it would carry.
    @inlinable @inline(__always)
    static func slot(_ va: Vaddr, level: PagingLevel) -> (index: Int, tag: UInt64) {
        let vpn = va.rawValue >> UInt64(PagingConsts.indexShift(level))
        switch level {
        case 1: return (Int(vpn & 63), vpn << 1 | 1)
        case 2: return (64 + Int(vpn & 31), vpn << 1 | 1)
        default: return (96 + Int(vpn & 3), vpn << 1 | 1)
        }
    }

    /// The cached translation of `va`, if any: 4 KiB entries first, then 2 MiB, then 1 GiB.
    @inlinable @inline(__always)
    mutating func lookup(_ va: Vaddr) -> TlbTranslation? {
        for level in PagingLevel(1)...3 {
            let (index, tag) = Tlb.slot(va, level: level)
            let entry = entries[index]
            guard entry.tag == tag else { continue }
            statistics.hits += 1
            let size = PagingConsts.pageSize(level)
            let offset = Int(va.rawValue & UInt64(size - 1))
            return TlbTranslation(
                paddr: Paddr(entry.value & ~UInt64(pageSize - 1)) + offset,
                bytesLeftInPage: size - offset,
                user: entry.value & TlbEntry.userBit != 0,
                writable: entry.value & TlbEntry.writableBit != 0)
        }
        statistics.misses += 1
        return nil
    }

    /// Caches the leaf that a page walk found for `va`.
    @inlinable @inline(__always)
    mutating func fill(_ va: Vaddr, leaf: MappedItemRef) {
        let (index, tag) = Tlb.slot(va, level: leaf.level)
        var value = leaf.paddr.rawValue
        if leaf.property.privilegedFlags.contains(.user) { value |= TlbEntry.userBit }
        if leaf.property.flags.contains(.w) { value |= TlbEntry.writableBit }
        entries[index] = TlbEntry(tag: tag, value: value)
    }

    /// Invalidates every entry that translates `va`, whatever its size (`invlpg`).
    @inlinable
    mutating func flushPage(_ va: Vaddr) {
        statistics.pageFlushes += 1
        invalidate(va)
    }

    /// Drops the entries that translate `va` (what a faulting access does to its entry).
    @inlinable
    mutating func invalidate(_ va: Vaddr) {
        for level in PagingLevel(1)...3 {
            let (index, tag) = Tlb.slot(va, level: level)
            if entries[index].tag == tag { entries[index] = .invalid }
        }
    }

    /// Invalidates everything (a CR3 write without PCID; user entries are never global).
    @inlinable
    mutating func flushAll() {
        statistics.fullFlushes += 1
        entries.update(repeating: .invalid, count: Tlb.entryCount)
    }

    /// Performs `op` on this TLB (OSTD `TlbFlushOp::perform_on_current`).
    @inlinable
    mutating func perform(_ op: TlbFlushOp) {
        guard let pages = op.pages else { return flushAll() }
        var va = pages.lowerBound
        while va < pages.upperBound {
            flushPage(va)
            va = va + pageSize
        }
    }
}

// Page-table configurations: which part of the address space a table manages and how leaves
// tell tracked frames from untracked physical ranges (OSTD `PageTableConfig`, `UserPtConfig`,
// `KernelPtConfig`).
//
// OSTD lets each configuration choose its item type. Here every configuration maps the same
// `MappedItem`, so a configuration is only constants: its top-level index range, whether its
// top-level entries may be removed, and the polarity of the tracked marker (`AVAIL1`). The item
// contract of OSTD still holds: an item goes into an entry with `intoRaw` and comes back exactly
// once with `fromRaw`, possibly split into 512 smaller items or with a changed property, and
// every physical page belongs to exactly one item.

/// A page-table configuration.
public protocol PageTableConfig {
    /// The root-level entries this table manages (OSTD `TOP_LEVEL_INDEX_RANGE`).
    static var topLevelIndexRange: Range<Int> { get }
    /// Whether root-level entries may be removed (OSTD `TOP_LEVEL_CAN_UNMAP`); the kernel's may
    /// not, because every user table shares them.
    static var topLevelCanUnmap: Bool { get }
    /// Whether a set `AVAIL1` bit marks a tracked leaf (kernel) or an untracked one (user).
    static var avail1MeansTracked: Bool { get }
}

extension PageTableConfig {
    /// The virtual range the configuration covers, inclusive at both ends and sign-extended
    /// (OSTD `vaddr_range`).
    @inlinable
    public static var vaddrRange: ClosedRange<Vaddr> {
        let shift = PagingConsts.indexShift(PagingConsts.nrLevels)
        let start = signExtend(UInt64(topLevelIndexRange.lowerBound) << shift)
        let end = signExtend((UInt64(topLevelIndexRange.upperBound) << shift) &- 1)
        return Vaddr(start)...Vaddr(end)
    }

    /// Whether `range` is non-empty and inside the configuration (OSTD `is_valid_range`).
    @inlinable
    public static func isValidRange(_ range: Range<Vaddr>) -> Bool {
        let valid = vaddrRange
        return range.lowerBound < range.upperBound && valid.lowerBound <= range.lowerBound
            && Vaddr(range.upperBound.rawValue - 1) <= valid.upperBound
    }

    /// Whether a leaf with these raw bits holds a tracked reference.
    @inlinable @inline(__always)
    static func isTracked(_ raw: UInt64) -> Bool {
        (raw & PageTableEntry.avail1 != 0) == avail1MeansTracked
    }

    /// The `AVAIL1` bit to store in a leaf of a tracked (or untracked) item.
    @inlinable @inline(__always)
    static func markerBits(tracked: Bool) -> UInt64 {
        tracked == avail1MeansTracked ? PageTableEntry.avail1 : 0
    }
}

/// User address spaces: root entries 0 ..< 256, VA `0 ... 0x7fff_ffff_ffff`
/// (OSTD `UserPtConfig`). `AVAIL1` set marks untracked I/O memory.
public enum UserPtConfig: PageTableConfig {
    @inlinable public static var topLevelIndexRange: Range<Int> { 0..<256 }
    @inlinable public static var topLevelCanUnmap: Bool { true }
    @inlinable public static var avail1MeansTracked: Bool { false }
}

/// The kernel address space: root entries 256 ..< 512, VA `0xffff_8000_0000_0000 ...`
/// (OSTD `KernelPtConfig`). Root entries are never removed. `AVAIL1` set marks tracked frames.
public enum KernelPtConfig: PageTableConfig {
    @inlinable public static var topLevelIndexRange: Range<Int> { 256..<512 }
    @inlinable public static var topLevelCanUnmap: Bool { false }
    @inlinable public static var avail1MeansTracked: Bool { true }
}

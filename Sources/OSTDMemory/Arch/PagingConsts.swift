// Paging constants of x86-64 (OSTD `mm/mod.rs`, `arch/x86/mm/mod.rs`, `page_table/mod.rs`).
//
// 4 KiB base pages, 512 eight-byte entries per node, 4 levels, 48-bit virtual addresses that are
// sign-extended to 64 bits. Levels are numbered as in OSTD: 1 is the node of 4 KiB leaves, 4 the
// root. Leaves may sit at levels 1 (4 KiB), 2 (2 MiB) and 3 (1 GiB): OSTD's x86 configuration
// stops at level 2; we allow level 3 as its `VeryHugePagingConsts` test configuration does.

/// The size of a base page and of every frame: 4 KiB (OSTD `PAGE_SIZE`).
@inlinable public var pageSize: Int { 4096 }

/// `log2(pageSize)`.
@inlinable public var pageShift: Int { 12 }

/// A paging level: 1 is the leaf level of 4 KiB pages (OSTD `PagingLevel`).
public typealias PagingLevel = UInt8

/// The x86-64 paging constants (OSTD `PagingConsts` for x86).
public enum PagingConsts {
    /// The number of levels: 4 (no 5-level paging, as OSTD's `MAX_NR_LEVELS`).
    @inlinable public static var nrLevels: PagingLevel { 4 }
    /// The highest level a leaf may sit at: 3, a 1 GiB page (OSTD x86: 2).
    @inlinable public static var highestTranslationLevel: PagingLevel { 3 }
    /// Entries per node: 512 (OSTD `nr_subpage_per_huge`).
    @inlinable public static var nrEntries: Int { 512 }
    /// Significant virtual-address bits: 48, sign-extended.
    @inlinable public static var addressWidth: Int { 48 }
    /// Index bits per level: 9.
    @inlinable public static var indexBits: Int { 9 }

    /// The bytes one entry at `level` covers: 4 KiB, 2 MiB, 1 GiB, 512 GiB (OSTD `page_size`).
    /// Levels are 1 ... 4 (5 for the span of a whole table); others give meaningless sizes.
    @inlinable @inline(__always)
    public static func pageSize(_ level: PagingLevel) -> Int {
        1 &<< indexShift(level)
    }

    /// `pageSize(level)` as an address-sized word, for arithmetic on virtual and physical
    /// addresses.
    @inlinable @inline(__always)
    public static func pageSpan(_ level: PagingLevel) -> UInt64 { 1 &<< indexShift(level) }

    /// The offset bits inside a page of `level`: `pageSpan(level) - 1`.
    @inlinable @inline(__always)
    public static func offsetMask(_ level: PagingLevel) -> UInt64 { pageSpan(level) &- 1 }

    /// The shift of the index bits of `level` in a virtual address (OSTD `pte_index_bit_offset`).
    @inlinable @inline(__always)
    public static func indexShift(_ level: PagingLevel) -> UInt64 {
        // Wrapping arithmetic: levels are 1 ... 4, and the walks call this at every level.
        UInt64(truncatingIfNeeded: pageShift &+ indexBits &* (Int(level) &- 1))
    }

    /// The index of the entry covering `va` in a node of `level` (OSTD `pte_index`).
    @inlinable @inline(__always)
    public static func pteIndex(_ va: Vaddr, _ level: PagingLevel) -> Int {
        Int(truncatingIfNeeded: (va.rawValue &>> indexShift(level)) & 511)
    }
}

/// Sign-extends a virtual address of `PagingConsts.addressWidth` (48) bits to 64 bits: the
/// canonical form the MMU requires.
@inlinable @inline(__always)
func signExtend(_ va: UInt64) -> UInt64 {
    let unused = UInt64(64 - PagingConsts.addressWidth)
    return UInt64(bitPattern: Int64(bitPattern: va << unused) >> unused)
}

/// The highest user virtual address a mapping may reach (OSTD `MAX_USERSPACE_VADDR`):
/// `0x8000_0000_0000 - PAGE_SIZE`, so that the last user page is left as a guard.
@inlinable public var maxUserspaceVaddr: Vaddr { Vaddr(0x7fff_ffff_f000) }

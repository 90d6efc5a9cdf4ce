// The x86-64 page-table entry, bit for bit as the MMU reads it (OSTD `arch/x86/mm/mod.rs`,
// `PteTrait`, `PteScalar`).
//
//     bit  0  P      present; on a leaf it is OSTD's `R`       bit  7  PS   on every leaf (PAT at level 1)
//     bit  1  RW     writable                                   bit  8  G    global
//     bit  2  US     user                                       bits 12–51   physical address
//     bit  3  PWT    cache-policy index bit 0                   bit 52  AVAIL1 (ignored by the MMU)
//     bit  4  PCD    cache-policy index bit 1                   bit 53  AVAIL2 (ignored by the MMU)
//     bit  5  A      accessed                                   bit 63  NX   set when `X` is clear
//     bit  6  D      dirty
//
// As in OSTD, bit 7 marks a leaf at every level. At levels 2 and 3 it is PS, the huge-page bit; at
// level 1 it is the PAT bit, and the PAT is programmed so that indices 4–7 repeat 0–3, so the
// cache policy is unchanged. A leaf without `R` has P clear and bit 7 set: software sees it mapped,
// the MMU faults on it. An entry is present to software when P or bit 7 is set, so the all-zero
// entry is absent. Intermediate entries are P|RW|US|A without NX, the most permissive: the leaf
// alone decides an access.

/// A raw page-table entry (OSTD `PageTableEntry`).
@frozen
public struct PageTableEntry: Equatable, Sendable, BitwiseCopyable, CustomStringConvertible {
    public var raw: UInt64

    @inlinable @inline(__always)
    public init(raw: UInt64) { self.raw = raw }

    /// The absent entry: all zeros.
    @inlinable public static var absent: PageTableEntry { PageTableEntry(raw: 0) }

    // MARK: Bits

    @inlinable public static var present: UInt64 { 1 << 0 }
    @inlinable public static var writable: UInt64 { 1 << 1 }
    @inlinable public static var user: UInt64 { 1 << 2 }
    @inlinable public static var writeThrough: UInt64 { 1 << 3 }
    @inlinable public static var noCache: UInt64 { 1 << 4 }
    @inlinable public static var accessed: UInt64 { 1 << 5 }
    @inlinable public static var dirty: UInt64 { 1 << 6 }
    /// PS at levels 2–3, PAT at level 1; OSTD's "valid leaf" marker.
    @inlinable public static var huge: UInt64 { 1 << 7 }
    @inlinable public static var global: UInt64 { 1 << 8 }
    @inlinable public static var avail1: UInt64 { 1 << 52 }
    @inlinable public static var avail2: UInt64 { 1 << 53 }
    @inlinable public static var noExecute: UInt64 { 1 << 63 }

    /// The physical-address bits of a leaf at `level` (OSTD `pa_mask_at_level`).
    @inlinable @inline(__always)
    public static func paMask(_ level: PagingLevel) -> UInt64 {
        0x000f_ffff_ffff_f000 & ~PagingConsts.offsetMask(level)
    }

    /// The physical-address bits of an entry pointing at a child node (OSTD `CHILD_PT_ADDR_MASK`).
    @inlinable public static var childMask: UInt64 { 0x000f_ffff_ffff_f000 }

    // MARK: Queries

    /// Whether software sees the entry as present: P or the leaf bit (OSTD `is_present`).
    @inlinable @inline(__always)
    public var isPresent: Bool { raw & (Self.present | Self.huge) != 0 }

    /// Whether the entry is a leaf (a mapped page) rather than a pointer to a child node.
    @inlinable @inline(__always)
    public var isLeaf: Bool { raw & Self.huge != 0 }

    /// The physical address the entry holds, for a leaf at `level` or a child pointer.
    @inlinable @inline(__always)
    public func paddr(level: PagingLevel) -> Paddr {
        Paddr(raw & (isLeaf ? Self.paMask(level) : Self.childMask))
    }

    // MARK: Construction

    /// An entry pointing at a child node (OSTD `new_pt`): P|RW|US, no NX, plus the table flags,
    /// and A already set. OSTD's `new_pt` leaves A clear; we set it as Linux's `_PAGE_TABLE`
    /// does, so the first walk through a new node does not set it with a locked
    /// read-modify-write (nothing reads A in a non-leaf entry; docs/differences.md).
    @inlinable @inline(__always)
    public static func pageTable(_ paddr: Paddr, flags: PageTableFlags = []) -> PageTableEntry {
        precondition(paddr.rawValue & ~childMask == 0, "page table physical address contains invalid bits")
        return PageTableEntry(raw: paddr.rawValue | present | writable | user | accessed | flags.pteBits)
    }

    /// A leaf mapping `paddr` at `level` with property `prop` (OSTD `new_page`).
    @inlinable @inline(__always)
    public static func page(_ paddr: Paddr, level: PagingLevel, prop: PageProperty) -> PageTableEntry {
        precondition(paddr.rawValue & ~paMask(level) == 0, "page physical address contains invalid bits")
        return PageTableEntry(raw: paddr.rawValue | prop.leafBits)
    }

    /// The leaf's property, decoded from its bits.
    @inlinable @inline(__always)
    public var property: PageProperty { PageProperty(leafBits: raw) }

    /// The flags of an intermediate entry.
    @inlinable
    public var pageTableFlags: PageTableFlags { PageTableFlags(pteBits: raw) }

    // MARK: The scalar view

    /// The entry as software reads it at `level` (OSTD `to_repr`).
    @inlinable
    public func repr(level: PagingLevel) -> PteScalar {
        guard isPresent else { return .absent }
        if isLeaf { return .mapped(paddr(level: level), property) }
        return .pageTable(paddr(level: level), pageTableFlags)
    }

    /// The entry for `repr` at `level` (OSTD `from_repr`).
    @inlinable
    public init(repr: PteScalar, level: PagingLevel) {
        switch repr {
        case .absent: self = .absent
        case .pageTable(let paddr, let flags): self = .pageTable(paddr, flags: flags)
        case .mapped(let paddr, let prop): self = .page(paddr, level: level, prop: prop)
        }
    }

    public var description: String { "PTE(0x" + String(raw, radix: 16) + ")" }
}

/// What an entry means, independent of its bits (OSTD `PteScalar`).
public enum PteScalar: Equatable, Sendable {
    case absent
    /// A pointer to a child node at the next level down.
    case pageTable(Paddr, PageTableFlags)
    /// A leaf.
    case mapped(Paddr, PageProperty)
}

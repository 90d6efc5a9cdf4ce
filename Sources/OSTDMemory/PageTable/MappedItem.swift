// What a leaf maps (OSTD's `C::Item`, `VmItem`, `MappedItem`) and how ownership moves into an
// entry and back (OSTD `item_into_raw` / `item_from_raw`).
//
// A tracked item holds references: a 4 KiB leaf holds one reference on its frame, and a huge leaf
// (2 MiB or 1 GiB) holds one reference on each of the 512 or 512² frames of its segment, as a
// `Segment` does. Splitting a huge leaf therefore moves references and never counts: each of the
// 512 smaller leaves takes over the references of its part. An untracked item is a bare physical
// range (the kernel's linear mapping, I/O memory) and holds none.
//
// OSTD's items are enums; this one is a struct carrying the page's description beside its
// ownership, so that callers can look at an item without consuming it.

/// An item to map, or one taken out of the page table: a page of one level and what owns it.
///
/// A tracked item owns references, as a `Frame` or `Segment` handle does, and dropping it drops
/// them; `intoFrame()` and `intoSegment()` turn it back into those handles.
@frozen
public struct MappedItem: ~Copyable {
    /// Where the page is, its level and property, and whether it is tracked.
    public let info: MappedItemRef
    /// The machine of a tracked item's frames (`nil` for untracked items).
    @usableFromInline let context: MachineRef?

    @inlinable
    init(info: MappedItemRef, context: MachineRef?) {
        self.info = info
        self.context = context
    }

    /// A tracked 4 KiB frame (of any metadata type); the item takes over the frame's reference.
    @inlinable
    public init<M: AnyFrameMeta>(frame: consuming Frame<M>, property: PageProperty) {
        let (slot, context) = frame.intoParts()
        let info = MappedItemRef(paddr: context.paddr(of: slot), level: 1, property: property, isTracked: true)
        self.init(info: info, context: context)
    }

    /// A tracked huge page: a segment of exactly 512 (2 MiB) or 512² (1 GiB) frames, aligned to
    /// its size. The item takes over the segment's references.
    ///
    /// - Precondition: the segment has 512 or 512 * 512 frames.
    public init<M: AnyFrameMeta>(hugePage segment: consuming Segment<M>, property: PageProperty) {
        let level = MappedItem.level(ofFrames: segment.count)
        precondition(level >= 2, "a huge page is a segment of 512 or 512 * 512 frames, not \(segment.count)")
        let paddr = segment.paddr
        let (_, context) = segment.intoParts()
        self.init(info: MappedItemRef(paddr: paddr, level: level, property: property, isTracked: true), context: context)
    }

    /// An untracked page of physical memory at `level` (I/O memory, the kernel's linear map).
    ///
    /// - Safety: nothing keeps the memory alive or checks who else uses it: the caller vouches
    ///   that whoever the page will be mapped for may access `paddr ..< paddr + size` for as long
    ///   as the mapping lasts (OSTD's `unsafe` untracked mappings).
    @unsafe @inlinable
    public init(untracked paddr: Paddr, level: PagingLevel, property: PageProperty) {
        self.init(info: MappedItemRef(paddr: paddr, level: level, property: property, isTracked: false), context: nil)
    }

    /// Drops the item's references, if it is tracked.
    deinit {
        guard let context else { return }
        if info.level == 1 {
            _ = AnyFrame(adopting: context.slot(of: info.paddr), context: context)
        } else {
            _ = Segment<DynFrameMeta>(adopting: info.frameIndices, context: context)
        }
    }

    /// The page's first physical address.
    @inlinable public var paddr: Paddr { info.paddr }
    /// The page's level.
    @inlinable public var level: PagingLevel { info.level }
    /// The page's property.
    @inlinable public var property: PageProperty { info.property }
    /// Whether the item owns frame references.
    @inlinable public var isTracked: Bool { info.isTracked }

    /// The tracked 4 KiB frame, as a handle.
    ///
    /// - Precondition: the item is tracked and of level 1.
    public consuming func intoFrame() -> AnyFrame {
        precondition(info.isTracked && info.level == 1, "the item is not a tracked 4 KiB frame")
        let context = self.context!
        let paddr = info.paddr
        discard self
        return AnyFrame(adopting: context.slot(of: paddr), context: context)
    }

    /// The tracked frames, as a segment (of one frame for a 4 KiB item).
    ///
    /// - Precondition: the item is tracked.
    public consuming func intoSegment() -> Segment<DynFrameMeta> {
        precondition(info.isTracked, "the item is not tracked")
        let context = self.context!
        let frames = info.frameIndices
        discard self
        return Segment(adopting: frames, context: context)
    }

    /// The level of a page of `count` frames (0 when `count` is not 1, 512 or 512²).
    @usableFromInline
    static func level(ofFrames count: Int) -> PagingLevel {
        switch count {
        case 1: return 1
        case 512: return 2
        case 512 * 512: return 3
        default: return 0
        }
    }

    /// Consumes the item into an entry's raw parts (OSTD `item_into_raw`): its references now
    /// belong to the entry, and leave the obligation ledger as `Frame.intoRaw` does. `fromRaw`
    /// is the way back.
    @inlinable @inline(__always)
    consuming func intoRaw() -> MappedItemRef {
        let info = self.info
        if let ledger = context?.ledger {
            for index in info.frameIndices { ledger.redeem(index) }
        }
        discard self
        return info
    }

    /// Restores the item a leaf entry owned (OSTD `item_from_raw`), the pair of `intoRaw`: one
    /// ledger entry is minted per frame, as `Frame.fromRaw` does.
    ///
    /// - Safety: the entry's references must be restored once; the caller clears the entry.
    @unsafe @inlinable
    static func fromRaw<C: PageTableConfig>(
        _: C.Type, _ pte: PageTableEntry, level: PagingLevel, context: MachineRef
    ) -> MappedItem {
        let info = MappedItemRef(C.self, pte: pte, level: level)
        guard info.isTracked else { return MappedItem(info: info, context: nil) }
        if let ledger = context.ledger {
            for index in info.frameIndices { ledger.mint(index) }
        }
        return MappedItem(info: info, context: context)
    }
}

/// A leaf as it sits in the table, without ownership (OSTD `C::ItemRef` plus `item_raw_info`).
@frozen
public struct MappedItemRef: Hashable, Sendable, CustomStringConvertible {
    /// The first physical address of the page.
    public var paddr: Paddr
    /// The leaf's level: 1 (4 KiB), 2 (2 MiB) or 3 (1 GiB).
    public var level: PagingLevel
    /// The property, with `AVAIL1` (the page table's marker) cleared.
    public var property: PageProperty
    /// Whether the leaf holds frame references.
    public var isTracked: Bool

    @inlinable
    public init(paddr: Paddr, level: PagingLevel, property: PageProperty, isTracked: Bool) {
        self.paddr = paddr
        self.level = level
        self.property = property
        self.isTracked = isTracked
    }

    /// The page's size in bytes.
    @inlinable public var size: Int { PagingConsts.pageSize(level) }

    /// The physical range of the page.
    @inlinable public var paddrRange: Range<Paddr> { paddr..<(paddr + size) }

    /// The indices of the frames the page covers.
    @inlinable
    public var frameIndices: Range<Int> {
        let first = Int(paddr.rawValue >> UInt64(pageShift))
        return first..<(first + size >> pageShift)
    }

    public var description: String {
        "\(paddr) \(["4K", "2M", "1G"][Int(level) - 1]) \(property)\(isTracked ? "" : " untracked")"
    }
}

extension MappedItemRef {
    /// Decodes a leaf entry at `level` of a table of configuration `C`.
    @inlinable @inline(__always)
    init<C: PageTableConfig>(_: C.Type, pte: PageTableEntry, level: PagingLevel) {
        var prop = pte.property
        prop.flags.remove(.avail1)
        self.init(paddr: pte.paddr(level: level), level: level, property: prop, isTracked: C.isTracked(pte.raw))
    }
}

// The abstract state of a page-table cursor (vostd `CursorView`, vostd-spec-reference.md §5.1–5.2,
// run-time checks B.7–15 of §10): where the cursor is and the leaves it can reach, with the pure
// queries of `cursor/page_table_cursor_specs.rs`. The mutations live in `CursorView+Split.swift`,
// `+Mutations.swift` and `+Scan.swift`.
//
// `mappings` is an array sorted by virtual address, not a set: every function returns it sorted, so
// two views are equal exactly when they hold the same leaves, and an auditor can compare the view
// after a real cursor operation with the spec's result by `==`. Where the real cursor's result is
// deterministic the spec functions give that exact leaf set (which leaves a split produces, where
// the cursor stops); vostd's weaker relational forms are kept beside them where vostd has one.

@_spi(OSTDInternals) import OSTDMemory

/// A cursor's position and the leaves it covers (vostd `CursorView { cur_va, mappings }`).
public struct CursorView: Equatable, Sendable, CustomStringConvertible {
    /// The cursor's virtual address (vostd `cur_va`).
    public var curVa: Vaddr
    /// The leaves, sorted by their first virtual address (vostd's `Set<Mapping>`).
    public var mappings: [Mapping]

    /// A view at `curVa` of `mappings`, which it sorts.
    public init(curVa: Vaddr, mappings: [Mapping]) {
        self.curVa = curVa
        self.mappings = mappings.sorted { $0.va.lowerBound < $1.va.lowerBound }
    }

    /// The view of a cursor at `curVa` over `range`: the leaves of `view` that overlap `range`
    /// (vostd `CursorOwner@` = `{cur_va, view_mappings()}`).
    ///
    /// vostd's `view_mappings` is every leaf under the cursor's locked subtree. Pass that subtree's
    /// range (`lockedRange(barrier:guardLevel:)`) to get the same set: then every piece a split
    /// makes is in the view, and `after == spec(before)` holds exactly. With the barrier range
    /// instead, the pieces of a split leaf that fall outside it are not in the view after the
    /// operation; compare `spec(before).restricted(to: barrier)` then.
    public init(curVa: Vaddr, view: PageTableView, range: Range<Vaddr>) {
        self.init(curVa: curVa, mappings: view.mappings.filter { $0.overlaps(range) })
    }

    /// The range of a cursor's locked subtree: the range of the node at `guardLevel` that covers
    /// `barrier` (`pageSize(guardLevel + 1)` bytes; the end is clamped to `UInt64.max` at the top
    /// of the address space).
    public static func lockedRange(barrier: Range<Vaddr>, guardLevel: PagingLevel) -> Range<Vaddr> {
        return slot(of: barrier.lowerBound, size: PagingConsts.pageSize(guardLevel + 1))
    }

    /// The same view with only the leaves that overlap `range`.
    public func restricted(to range: Range<Vaddr>) -> CursorView {
        CursorView(curVa: curVa, mappings: mappings.filter { $0.overlaps(range) })
    }

    public var description: String {
        "cursor at \(curVa), \(mappings.count) leaves" + mappings.prefix(8).map { "\n  \($0)" }.joined()
            + (mappings.count > 8 ? "\n  …" : "")
    }

    // MARK: Invariant

    /// `CursorView::inv` (ref §5.1): every mapping well formed (`Mapping::inv`), inside the virtual
    /// range of configuration `C` (`vaddr_range_spec<C>`), and pairwise VA-disjoint. Our `mappings`
    /// is an array, so the order is part of it: sorted is checked too.
    public func inv<C: PageTableConfig>(_ config: C.Type) -> Bool { invViolations(config, limit: 1).isEmpty }

    /// What breaks `inv`, in words (at most `limit`).
    public func invViolations<C: PageTableConfig>(_: C.Type, limit: Int = .max) -> [String] {
        var problems = PageTableView(mappings: mappings).invViolations(limit: limit)
        let valid = C.vaddrRange
        for m in mappings where problems.count < limit
            && (m.va.lowerBound < valid.lowerBound || Vaddr(m.va.upperBound.rawValue &- 1) > valid.upperBound) {
            problems.append("mapping \(m) is outside the configuration's range")
        }
        return problems
    }

    // MARK: Queries (ref §5.2 "Basic queries")

    /// `present()` := `∃ m ∈ mappings: m.va.start <= cur_va < m.va.end` (ref §5.2).
    public func present() -> Bool { queryMapping() != nil }

    /// `query_mapping()` := the mapping that covers `cur_va` (vostd's `choose`, unique under `inv`),
    /// or `nil` when `!present()` (ref §5.2).
    public func queryMapping() -> Mapping? { mappings.mapping(covering: curVa) }

    /// What the real `Cursor.query()` returns at a cursor that is at `level`: the range and leaf of
    /// the mapping covering `cur_va`, or, when none does, the range of the absent slot the cursor
    /// finds going down from `level` (the deepest node on the way).
    ///
    /// vostd (seed 002 `query_success_ensures`, lines 1015–1031; check 8): present ⟹ `range ==
    /// qm.va_range` and the item is `qm`; absent ⟹ `range.start == cur_va` and no item. Differences:
    /// our absent range is the slot's (its start is `align_down(cur_va, slot size)`, not `cur_va`),
    /// as OSTD's `query` returns `cur_va_range()`; and which slot that is depends on the tree's
    /// shape, so the spec takes the cursor's level. It assumes no empty node below `level` (true
    /// below the locked root of a user table; the kernel's shared level-3 nodes may be empty).
    /// The real query throws at or past the cursor's range end; this does not know the range.
    public func querySpec(level: PagingLevel) -> (range: Range<Vaddr>, mapping: Mapping?) {
        var level = level
        while true {
            let slot = CursorView.slot(of: curVa, size: PagingConsts.pageSize(level))
            guard let first = mappings.firstOverlapping(slot) else { return (slot, nil) }
            if first.level >= level { return (first.va, first) }   // a leaf of this slot
            level -= 1                                              // a node: go down
        }
    }

    /// `cur_slot_range(size)` = `[align_down(cur_va, size), +size)` (ref §5.2).
    public func curSlotRange(_ size: Int) -> Range<Vaddr> { CursorView.slot(of: curVa, size: size) }

    /// `align_up_spec(size)` = `align_down(cur_va, size) + size` (ref §5.2): it always advances,
    /// even when `cur_va` is aligned, which is where the real `map` leaves the cursor. (vostd's
    /// current text is `nat_align_up`, which does not advance an aligned address; ours follows the
    /// reference and the core.)
    public func alignUpSpec(_ size: Int) -> Vaddr { curSlotRange(size).upperBound }

    /// `jump_spec(va)` sets `cur_va` (vostd); with our core's result (check 13): `nil` when `va` is
    /// outside `barrier` (`Err`, the cursor unchanged), the view at `va` otherwise. The end of the
    /// barrier is outside, as in check 13 (`barrier.start ≤ x < barrier.end`). An unaligned `va`
    /// panics in the core; here it is `nil` too.
    public func jumpSpec(_ va: Vaddr, barrier: Range<Vaddr>) -> CursorView? {
        guard va.isAligned(to: pageSize), barrier.contains(va) else { return nil }
        var moved = self
        moved.curVa = va
        return moved
    }

    // MARK: Helpers

    /// The slot of `size` bytes (a power of two) that holds `va`; a slot ending at 2^64 ends at
    /// `UInt64.max`, as `Cursor.curVaRange` reports it.
    static func slot(of va: Vaddr, size: Int) -> Range<Vaddr> {
        let start = va.rawValue & ~(UInt64(size) - 1)
        let end = start &+ UInt64(size)
        return Vaddr(start)..<Vaddr(end == 0 ? .max : end)
    }

    /// The level of a leaf of `size` bytes.
    static func level(ofSize size: Int) -> PagingLevel {
        var level: PagingLevel = 1
        while PagingConsts.pageSize(level) < size { level += 1 }
        return level
    }
}

extension Mapping {
    /// Whether the leaf shares an address with `range`.
    func overlaps(_ range: Range<Vaddr>) -> Bool {
        va.lowerBound < range.upperBound && range.lowerBound < va.upperBound
    }

    /// The leaf for `item` mapped at `va` (vostd `item_into_mapping`).
    public init(va: Vaddr, item: MappedItemRef) {
        self.init(va: va..<(va + item.size), pa: item.paddrRange, level: item.level, property: item.property,
                  isTracked: item.isTracked)
    }
}

extension Array where Element == Mapping {
    /// The index of the first leaf ending after `va` (`count` if none), by binary search.
    func firstIndex(endingAfter va: Vaddr) -> Int {
        var low = 0
        var high = count
        while low < high {
            let mid = (low + high) / 2
            if self[mid].va.upperBound <= va { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// The leaf covering `va`.
    func mapping(covering va: Vaddr) -> Mapping? {
        let index = firstIndex(endingAfter: va)
        return index < count && self[index].va.contains(va) ? self[index] : nil
    }

    /// The first leaf that overlaps `range`.
    func firstOverlapping(_ range: Range<Vaddr>) -> Mapping? {
        let index = firstIndex(endingAfter: range.lowerBound)
        return index < count && self[index].va.lowerBound < range.upperBound ? self[index] : nil
    }
}

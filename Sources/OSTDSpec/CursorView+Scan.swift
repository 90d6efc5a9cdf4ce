// The forward scans of a cursor on its view: `find_next`, `take_next` and `protect_next`
// (vostd `find_next_impl_spec`, `find_next_spec`, the `take_next` postcondition and `protect_spec`;
// vostd-spec-reference.md §5.2–5.3, checks 12 and 14 of §10 B).
//
// All three are OSTD's `find_next_impl` with different switches, and `scan` replays it on the view,
// slot by slot, as the core's `Cursor.findNextImpl` walks the tree: a slot no leaf overlaps is
// absent (skipped); a leaf of the slot's level or above is a leaf; otherwise the slot holds a node
// (the view has no empty nodes below a cursor's locked root). So the spec gives the core's exact
// result: which leaves a split at a range end produces, what is taken or protected, where the
// cursor stops. The cursor's level matters only to `take_next` (whether a whole node is taken).

@_spi(OSTDInternals) import OSTDMemory

extension CursorView {
    /// `find_next(len)` as our core does it (check 12): moves to the first mapped address in
    /// `[cur_va, cur_va + len)` and returns it, or moves to `cur_va + len` and returns `nil`. The
    /// mappings never change.
    ///
    /// vostd's `find_next_impl_spec` / `find_next_spec` (`page_table_cursor_specs.rs`) only
    /// considers mappings that *start* in the range and moves the cursor to the found mapping's
    /// *end*. OSTD and our core also find a leaf that covers `cur_va` from before (returning
    /// `cur_va`, inside it), and stop *at* the address they return, as check 12 (`v == va'`) and
    /// seed 002's doc comment ("the cursor will stop at the mapped address", lines 1065–1073) say.
    public func findNextSpec(_ len: Int) -> (view: CursorView, found: Vaddr?) {
        let result = scan(len, level: PagingConsts.nrLevels, guardLevel: PagingConsts.nrLevels,
                          findUnmapSubtree: false, splitHuge: false, topLevelCanUnmap: true)
        return (result.view, result.stop == nil ? nil : result.view.curVa)
    }

    /// `take_next(len)` as our core does it (check 14): removes the first leaf, or the first whole
    /// node, that starts in `[cur_va, cur_va + len)` after splitting a huge leaf the range covers in
    /// part, moves to the end of what it removed, and returns it; or moves to `cur_va + len` and
    /// returns `nil`. `level` and `guardLevel` are the real cursor's (`currentLevel`,
    /// `lockedLevel`): a node is taken whole only if the scan meets it as a slot at or below the
    /// cursor's level that the range covers, so the same view can give a leaf or a node.
    ///
    /// vostd (ref §5.3, check 14) states it relative to the fragment returned: `Mapped{v, item}` ⟹
    /// `new == split_while_huge_at(v, item.ps) − {item_mapping(v, item)}`; `StrayPageTable{v, len,
    /// n}` ⟹ `new == old − {m | v <= m.va.start < v + len}` and `n == |removed|`. This function
    /// computes the fragment too; both hold of its result.
    public func takeNextSpec(_ len: Int, level: PagingLevel, guardLevel: PagingLevel,
                             topLevelCanUnmap: Bool = true) -> (view: CursorView, taken: Taken?) {
        let result = scan(len, level: level, guardLevel: guardLevel, findUnmapSubtree: true, splitHuge: true,
                          topLevelCanUnmap: topLevelCanUnmap)
        var view = result.view
        switch result.stop {
        case nil:
            return (view, nil)
        case .leaf(let m):
            view.replace(m, by: [])
            view.curVa = m.va.upperBound
            return (view, .mapped(m))
        case .subtree(let slot):
            let count = view.mappings.count
            view.mappings.removeAll { slot.contains($0.va.lowerBound) }
            view.curVa = slot.upperBound
            return (view, .strayPageTable(va: slot, numFrames: count - view.mappings.count))
        }
    }

    /// `protect_next(len, op)` as our core does it: splits a huge leaf the range covers in part
    /// (down to the piece that starts at the scan's position and fits, or 4 KiB), gives the first
    /// leaf in `[cur_va, cur_va + len)` the property `op(prop)` (without `AVAIL1`, which belongs to
    /// the page table), moves to its end and returns its range; or moves to `cur_va + len` and
    /// returns `nil`.
    ///
    /// vostd's `protect_spec(len, op, target_ps)` (ref §5.2) splits to a given size and is used by
    /// nothing; seed 002's `protect_next` (lines 1455–1485) has no postcondition and requires a
    /// present entry (seed defect 9, docs/SPEC.md). This follows OSTD's `protect_next`. `op` sees
    /// the view's property, without `AVAIL1`; the core's sees the entry's, with it.
    public func protectSpec(_ len: Int, _ op: (PageProperty) -> PageProperty) -> (view: CursorView, protected: Range<Vaddr>?) {
        let result = scan(len, level: PagingConsts.nrLevels, guardLevel: PagingConsts.nrLevels,
                          findUnmapSubtree: false, splitHuge: true, topLevelCanUnmap: true)
        guard case .leaf(let m) = result.stop else { return (result.view, nil) }
        var view = result.view
        var changed = m
        changed.property = op(m.property)
        changed.property.flags.remove(.avail1)
        view.replace(m, by: [changed])
        view.curVa = m.va.upperBound
        return (view, m.va)
    }

    // MARK: The scan (OSTD `find_next_impl`)

    /// Where the scan stopped.
    enum ScanStop: Equatable {
        /// At this leaf (of the view the scan returns).
        case leaf(Mapping)
        /// At this slot, which holds a node the range covers.
        case subtree(Range<Vaddr>)
    }

    /// `Cursor.findNextImpl` on the view, from a cursor at `level` under a locked root at
    /// `guardLevel`: the view after the splits it made (cursor at the stop, or at `cur_va + len`
    /// when it found nothing), the level it ended at, and where it stopped.
    func scan(_ len: Int, level startLevel: PagingLevel, guardLevel: PagingLevel, findUnmapSubtree: Bool,
              splitHuge: Bool, topLevelCanUnmap: Bool) -> (view: CursorView, level: PagingLevel, stop: ScanStop?) {
        var view = self
        var level = startLevel
        let end = curVa.rawValue + UInt64(len)
        while view.curVa.rawValue < end {
            let va = view.curVa.rawValue
            let size = UInt64(PagingConsts.pageSize(level))
            let slot = CursorView.slot(of: view.curVa, size: Int(size))
            let covered = va == slot.lowerBound.rawValue && end &- slot.lowerBound.rawValue >= size
            guard let first = view.mappings.firstOverlapping(slot) else {
                // Absent: move to the slot's end, going up while it starts a node (`advance`).
                let next = slot.lowerBound.rawValue &+ size
                if next == 0 || next > end { view.curVa = Vaddr(end); break }
                view.curVa = Vaddr(next)
                while level < guardLevel && next & (UInt64(PagingConsts.pageSize(level + 1)) - 1) == 0 { level += 1 }
                continue
            }
            if first.level >= level {   // a leaf of this slot
                let fits = va == first.va.lowerBound.rawValue && end &- va >= UInt64(first.pageSize)
                if !splitHuge || first.level == 1 || fits { return (view, first.level, .leaf(first)) }
                let pieceSize = first.pageSize / PagingConsts.nrEntries
                view.replace(first, by: (0..<PagingConsts.nrEntries).map { CursorView.splitIndex(first, pieceSize, $0) })
                level = first.level - 1
                continue
            }
            if findUnmapSubtree && covered && (topLevelCanUnmap || level < PagingConsts.nrLevels) {
                return (view, level, .subtree(slot))
            }
            level -= 1   // a node: go down into it
        }
        return (view, level, nil)
    }
}

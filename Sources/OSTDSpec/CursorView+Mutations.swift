// Map and unmap on a cursor view (vostd `remove_subtree`, `map_spec`, `unmap_spec`;
// vostd-spec-reference.md §5.2 "Mutations", checks 9–11 of §10 B), and `unmapResult`, the exact
// view our core's unmap loop leaves, where vostd only has the relation `unmap_spec`.

@_spi(OSTDInternals) import OSTDMemory

extension CursorView {
    /// `remove_subtree(size)` = `mappings − {m | A <= m.va.start < A + size}` with `A =
    /// align_down(cur_va, size)` (ref §5.2). vostd returns the set; so does this (sorted).
    public func removeSubtree(_ size: Int) -> [Mapping] {
        let slot = curSlotRange(size)
        return mappings.filter { !slot.contains($0.va.lowerBound) }
    }

    /// `map_spec(pa, size, prop)` (ref §5.2, check 10; seed 002 `map_item_ensures`, lines 1309–1319):
    /// ```
    /// S  = split_while_huge(size)
    /// S' = { cur_va: S.align_up_spec(size),
    ///        mappings: S.remove_subtree(size) ∪ {Mapping{cur_slot_range(size), pa..pa+size, size, prop}} }
    /// ```
    /// with `size = pageSize(level)`. The new leaf's property loses `AVAIL1` (the page table's
    /// tracked marker, as the core's `leafEntry` and the view do) and carries `isTracked`.
    ///
    /// Our core (like OSTD) maps only into an empty slot: when `canMapSpec(level:)` is false, `map`
    /// panics ("mapping over an already mapped page") and `tryMap` fails, leaving the view and
    /// `cur_va` unchanged (it refuses on meeting a huge leaf, without splitting it; OSTD splits).
    /// When it is true, the split and the removal are no-ops and this is the core's exact result.
    /// vostd's replacing form is seed defect 10 (docs/SPEC.md).
    public func mapSpec(pa: Paddr, level: PagingLevel, property: PageProperty, isTracked: Bool = true) -> CursorView {
        let size = PagingConsts.pageSize(level)
        var prop = property
        prop.flags.remove(.avail1)
        let new = Mapping(va: curSlotRange(size), pa: pa..<(pa + size), level: level, property: prop, isTracked: isTracked)
        let split = splitWhileHuge(size)
        return CursorView(curVa: split.alignUpSpec(size), mappings: split.removeSubtree(size) + [new])
    }

    /// Whether our core's `map` of a leaf of `level` succeeds here, given the range and alignment
    /// checks (check 9): nothing is mapped in `cur_slot_range(pageSize(level))`.
    public func canMapSpec(level: PagingLevel) -> Bool {
        mappings.firstOverlapping(curSlotRange(PagingConsts.pageSize(level))) == nil
    }

    /// `unmap_spec(len, new, n)` as the reference states it (ref §5.2, check 11), with `s = cur_va`
    /// and `e = cur_va + len`:
    /// 1. `new.cur_va >= e`;
    /// 2. `∀ m ∈ old: m.va.end <= s ∨ m.va.start >= e ⟹ m ∈ new`;
    /// 3. `∀ m ∈ new` with `s <= m.va.start < e`: some `p ∈ old` with `p.va.start < s` contains
    ///    `m`, with `m.pa.start == p.pa.start + (m.va.start - p.va.start)` and `m.prop == p.prop`;
    /// 4. `∀ m ∈ new`: `m ∈ old` or `m` is such a sub-mapping of some `p ∈ old`.
    ///
    /// The count `n` is not constrained, so it is not a parameter. A sub-mapping here must also
    /// keep `p`'s tracking. This relation is weak: clause 3 lets pieces of a leaf straddling `s`
    /// stay inside the range (vostd's current text forbids any mapping starting in `[s, e)`), and
    /// nothing forces the cursor to stop at `e`. `unmapResult` is the exact result.
    public func unmapSpec(len: Int, new: CursorView) -> Bool {
        unmapSpecViolations(len: len, new: new, limit: 1).isEmpty
    }

    /// What breaks `unmapSpec(len:new:)`, in words (at most `limit`).
    public func unmapSpecViolations(len: Int, new: CursorView, limit: Int = .max) -> [String] {
        let s = curVa
        let e = curVa + len
        var problems: [String] = []
        if new.curVa < e { problems.append("the cursor is at \(new.curVa), before the range end \(e)") }
        let kept = Set(new.mappings)
        for m in mappings where (m.va.upperBound <= s || m.va.lowerBound >= e) && !kept.contains(m) {
            if problems.count < limit { problems.append("\(m), outside the range, is gone") }
        }
        let old = Set(mappings)
        for m in new.mappings where problems.count < limit {
            let parent = mappings.mapping(covering: m.va.lowerBound).flatMap { m.isSubMapping(of: $0) ? $0 : nil }
            if (s..<e).contains(m.va.lowerBound) && !(parent.map { $0.va.lowerBound < s } ?? false) {
                problems.append("\(m) starts in the range and is not a piece of a leaf starting before it")
            } else if !old.contains(m) && parent == nil {
                problems.append("\(m) is neither an old leaf nor a piece of one")
            }
        }
        return problems
    }

    /// The exact view our core's unmap of `len` bytes leaves (a `takeNext` loop, as
    /// `VmSpace.CursorMut.unmap`): the leaves a range end falls strictly inside are split at it
    /// (`split(at:)`), every leaf then inside `[cur_va, cur_va + len)` is gone, and the cursor is
    /// at `cur_va + len`. It satisfies `unmapSpec(len:new:)`.
    public func unmapResult(_ len: Int) -> CursorView {
        let range = curVa..<(curVa + len)
        let split = self.split(at: range.lowerBound).split(at: range.upperBound)
        return CursorView(curVa: range.upperBound, mappings: split.mappings.filter { !range.contains($0.va.lowerBound) })
    }
}

extension Mapping {
    /// Whether this leaf maps a part of `parent` the way `parent` does: inside its virtual range,
    /// at the same offset in its physical range, with its property and tracking (the sub-mapping
    /// of `unmap_spec`, clause 3).
    public func isSubMapping(of parent: Mapping) -> Bool {
        parent.va.lowerBound <= va.lowerBound && va.upperBound <= parent.va.upperBound
            && pa.lowerBound == parent.pa.lowerBound + (va.lowerBound - parent.va.lowerBound)
            && property == parent.property && isTracked == parent.isTracked
    }
}

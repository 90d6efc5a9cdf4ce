// Splitting huge leaves in a cursor view (vostd `split_index`, `split_if_mapped_huge_spec`,
// `split_while_huge`; vostd-spec-reference.md §5.2 "Splitting huge pages").
//
// A split replaces one leaf by the 512 leaves one level down that map the same memory with the same
// property and tracking, exactly what the core's `NodeRef.fillSplit` writes. `split(at:)` is the
// split the core does at the two ends of a take or protect range: it splits the leaf an address
// falls strictly inside, then the piece holding the address, until the address is a leaf boundary.

@_spi(OSTDInternals) import OSTDMemory

extension CursorView {
    /// `split_index(m, s, n)` = `Mapping{va: m.va.start + n*s .. +s, pa: m.pa.start + n*s .. +s,
    /// ps: s, prop: m.prop}` (ref §5.2). The piece keeps `m`'s tracking too (vostd's `Mapping` has
    /// none).
    public static func splitIndex(_ m: Mapping, _ size: Int, _ n: Int) -> Mapping {
        Mapping(va: (m.va.lowerBound + n * size)..<(m.va.lowerBound + (n + 1) * size),
                pa: (m.pa.lowerBound + n * size)..<(m.pa.lowerBound + (n + 1) * size),
                level: level(ofSize: size), property: m.property, isTracked: m.isTracked)
    }

    /// `split_if_mapped_huge_spec(s)`: replaces `query_mapping()` by `{split_index(qm, s, n) | 0 <= n
    /// < qm.ps / s}` (ref §5.2). Unchanged when nothing is mapped at `cur_va` (vostd leaves that
    /// case to its `recommends`).
    public func splitIfMappedHugeSpec(_ size: Int) -> CursorView {
        guard let m = queryMapping(), m.pageSize > size else { return self }
        var split = self
        split.replace(m, by: (0..<(m.pageSize / size)).map { CursorView.splitIndex(m, size, $0) })
        return split
    }

    /// `split_while_huge(size)`: while `present() ∧ qm.page_size > size`, split `qm` into
    /// `page_size / 512` pieces (ref §5.2). `cur_va` is unchanged. This is what the core's `map`
    /// does on its way down to the item's level (`Cursor.descend`).
    public func splitWhileHuge(_ size: Int) -> CursorView {
        var view = self
        while let m = view.queryMapping(), m.pageSize > size {
            view = view.splitIfMappedHugeSpec(m.pageSize / PagingConsts.nrEntries)
        }
        return view
    }

    /// Splits until `va` is not strictly inside any leaf: the leaf it falls strictly inside is
    /// split, then the piece holding it, and so on (the splits a take or protect loop makes at
    /// each end of its range; `PageTable.splitNodesNeeded` counts the same ones). `cur_va` is
    /// unchanged. Not a vostd function: vostd applies `split_while_huge` at the range's ends in
    /// its comment on `unmap_spec` but leaves the result relational.
    public func split(at va: Vaddr) -> CursorView {
        var view = self
        while let m = view.mappings.mapping(covering: va), m.va.lowerBound != va, m.level > 1 {
            let size = m.pageSize / PagingConsts.nrEntries
            view.replace(m, by: (0..<PagingConsts.nrEntries).map { CursorView.splitIndex(m, size, $0) })
        }
        return view
    }

    /// Replaces the leaf `m` (present) by `pieces`, which lie where it did, keeping the order.
    mutating func replace(_ m: Mapping, by pieces: [Mapping]) {
        let index = mappings.firstIndex(endingAfter: m.va.lowerBound)
        precondition(index < mappings.count && mappings[index] == m, "replacing a leaf that is not in the view")
        mappings.replaceSubrange(index...index, with: pieces)
    }
}

// What one `takeNext` removes (OSTD `PageTableFrag`).
//
// The fragment owns what it removed. Dropping it drops the item, or the whole detached subtree
// with every item in it, so the caller decides when: after the TLB flush that makes the removal
// visible to every CPU (OSTD wraps both in `RcuDrop` for the same reason).

/// A removed leaf or subtree.
public enum PageTableFrag<C: PageTableConfig>: ~Copyable {
    /// One leaf at `va`.
    case mapped(va: Vaddr, item: MappedItem)
    /// A whole subtree covering `va ..< va + len`, detached and marked stray; `numFrames` is the
    /// number of leaves it holds.
    case strayPageTable(node: PageTableNode<C>, va: Vaddr, len: Int, numFrames: Int)
}

extension PageTableFrag where C: PageTableConfig {
    /// The first virtual address the fragment covered.
    public var va: Vaddr {
        switch self {
        case .mapped(let va, _): return va
        case .strayPageTable(_, let va, _, _): return va
        }
    }
}

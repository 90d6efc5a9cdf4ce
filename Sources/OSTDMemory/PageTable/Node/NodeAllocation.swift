// Allocating a page-table node and giving its frame back. A node's handle is forgotten into the
// entry (or table, or retired list) that owns it, and restored from it when the node goes.

extension MachineRef {
    /// Allocates a zeroed node at `level`, born locked (OSTD `PageTableNode::alloc` followed by
    /// locking before publication), and forgets its handle: the caller stores it in an entry or
    /// a `PageTable`. Returns `nil` when memory is exhausted.
    @inlinable
    func allocNode(level: PagingLevel) -> NodeRef? {
        guard let index = allocFrame() else { return nil }
        var meta = PageTablePageMeta(level: level)
        meta.lock = 1
        let slot = slot(index: index)
        let frame = isAccounting
            ? Frame.claimAccounted(slot, meta: meta, zeroed: true, context: self)
            : Frame.claim(slot, meta: meta, zeroed: true, context: self)
        slot.markWritten()  // its entries are written in place
        // SAFETY: the frame was just allocated as a page-table node; the reference forgotten by
        // `intoRaw` keeps it allocated until the caller's holder gives it to `freeNode`.
        return unsafe NodeRef(frame.intoRaw(), self)
    }

    /// Drops the reference an entry (or a retired list) held on a node whose entries are all
    /// absent or already torn down.
    @inlinable
    func freeNode(_ node: NodeRef) {
        // SAFETY: the node's reference was forgotten into its parent entry (or the table, or a
        // retired list) by `allocNode`, and the caller has just cleared that holder.
        _ = unsafe Frame<PageTablePageMeta>.fromRaw(node.paddr(self), in: self)
    }
}

// Returning the frames that page-table leaves held, in contiguous runs (one allocator lock per
// run), as a subtree is torn down.

/// Drops references that page-table entries held (no handle, so no ledger entry) and returns
/// the frames left unreferenced to the allocator in contiguous runs.
struct FrameRuns {
    let context: MachineRef
    var start = 0
    var count = 0

    init(context: MachineRef) { self.context = context }

    mutating func dropReference(_ index: Int) {
        let slot = context.slot(index: index)
        let context = context
        guard context.isFrameAudited ? FrameRuns.releaseAudited(slot, context) : FrameRuns.release(slot, context) else { return }
        if count > 0 && start + count == index {
            count += 1
            return
        }
        flush()
        start = index
        count = 1
    }

    /// Drops the entry's reference on `slot`; returns whether it was the last (the frame is then
    /// unused, and the caller returns it to the allocator).
    static func release(_ slot: MetaSlot, _ context: MachineRef) -> Bool {
        guard slot.decRefCount(paddr: context.paddr(of: slot)) else { return false }
        slot.storeUnused()
        return true
    }

    /// `release` past the machine's frame auditor.
    @inline(never)
    static func releaseAudited(_ slot: MetaSlot, _ context: MachineRef) -> Bool {
        context.auditingFrames(.entryReleased(context.paddr(of: slot))) { FrameRuns.release(slot, context) }
    }

    mutating func flush() {
        if count > 0 { context.deallocRange(start, count: count) }
        count = 0
    }
}

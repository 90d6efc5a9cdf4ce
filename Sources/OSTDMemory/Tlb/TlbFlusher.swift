// Batched TLB flushes for one address space (OSTD `mm/tlb.rs`, `TlbFlusher` and `OpsStack`).
//
// Whoever changes a user page table issues flush operations here, with the frames and detached
// page-table nodes the change released; `dispatchTlbFlush` then performs the batch, through the
// platform, on every CPU of the flusher's CPU set (where the space is, or may still be, active),
// and only after the last of them has flushed are the kept frames and nodes dropped. So a frame can never be handed out again while some CPU's
// TLB may still translate to it: a stale entry reads the old, still-owned frame, and nothing else.
//
// Batching follows OSTD: up to 32 operations are kept; once the pages they cover reach 32 (or an
// operation flushes everything) the batch collapses into one flush of everything.
//
// Deliberate differences from OSTD:
// - Delivery is synchronous. OSTD queues the batch on each remote CPU and sends an IPI, and
//   `syncTlbFlush` waits for them; here `Platform.flushTlb` returns once the target has flushed
//   (the simulated platform flushes it under its MMU lock, which is what the IPI handler would
//   do). `syncTlbFlush` is kept and returns at once.
// - No RCU grace period: an access through a TLB holds its CPU's MMU lock, so once a CPU has been
//   flushed no access that could still use the old translation is in progress there.
// - Dropping a flusher with pending operations dispatches them (OSTD defers only the frames), so
//   forgetting to dispatch cannot leave a stale translation to a freed frame.

/// A released frame, segment or subtree that must outlive the TLB flush of its translations.
@usableFromInline
enum KeptItem {
    /// Tracked frames, as `Segment.intoRaw` gave them.
    case frames(Range<Paddr>)
    /// A detached page-table subtree (a stray node and everything below it), owned.
    case subtree(Paddr)
}

/// A batch of TLB flushes for one address space (OSTD `TlbFlusher`).
public struct TlbFlusher: ~Copyable {
    /// The CPUs to flush: the address space's active CPUs, read at each dispatch.
    let targets: AtomicCpuSet
    /// The machine whose CPUs and frames these are.
    let context: MachineRef
    /// The pending operations (OSTD `OpsStack.ops`); meaningful only when `flushAll` is false.
    /// Out of line (allocated on the first operation), so that cursors that never flush stay
    /// small to move.
    var ops: [TlbFlushOp] = []
    /// Pages covered by the pending operations.
    var pendingPages = 0
    /// The batch has collapsed into one flush of everything.
    var flushAll = false
    /// What must be dropped only after the flush (OSTD `frame_keeper`).
    var kept: [KeptItem] = []

    /// A flusher for the address space active on `targets`.
    init(targets: AtomicCpuSet, context: MachineRef) {
        self.targets = targets
        self.context = context
    }

    deinit {
        if flushAll || !ops.isEmpty {
            TlbFlusher.perform(ops: ops, all: flushAll, on: targets, context: context)
        }
        TlbFlusher.release(kept, context: context)
    }

    /// Whether operations are waiting for `dispatchTlbFlush`.
    public var hasPendingFlush: Bool { flushAll || !ops.isEmpty }

    /// Queues `op` (OSTD `issue_tlb_flush`).
    public mutating func issueTlbFlush(_ op: TlbFlushOp) {
        guard !flushAll else { return }
        guard let pages = op.pageCount, pendingPages + pages < TlbFlushOp.flushAllPagesThreshold,
              ops.count < 32 else {
            flushAll = true
            ops.removeAll()
            return
        }
        if ops.isEmpty { ops.reserveCapacity(TlbFlushOp.flushAllPagesThreshold) }
        ops.append(op)
        pendingPages += pages
    }

    /// Queues `op` and keeps `frame` until every CPU has performed it (OSTD
    /// `issue_tlb_flush_with`).
    public mutating func issueTlbFlushWith<M: AnyFrameMeta>(_ op: TlbFlushOp, keeping frame: consuming Frame<M>) {
        issueTlbFlushWith(op, keeping: Segment(frame))
    }

    /// Queues `op` and keeps `segment`'s frames until every CPU has performed it.
    public mutating func issueTlbFlushWith<M: AnyFrameMeta>(_ op: TlbFlushOp, keeping segment: consuming Segment<M>) {
        issueTlbFlush(op)
        kept.append(.frames(segment.intoRaw()))
    }

    /// Queues `op` and keeps what `fragment` removed (its frames, or its detached subtree) until
    /// every CPU has performed it.
    public mutating func issueTlbFlushWith(_ op: TlbFlushOp, keeping fragment: consuming PageTableFrag<UserPtConfig>) {
        switch consume fragment {
        case .mapped(_, let item):
            keep(item, flushing: op)
        case .strayPageTable(let node, _, _, _):
            issueTlbFlush(op)
            kept.append(.subtree(node.intoRaw()))
        }
    }

    /// Performs the pending operations on every CPU where the space is active, then drops what
    /// was kept (OSTD `dispatch_tlb_flush`). Synchronous here: see the file comment.
    public mutating func dispatchTlbFlush() {
        guard flushAll || !ops.isEmpty else {
            TlbFlusher.release(kept, context: context)
            kept = []
            return
        }
        #if DEBUG
        if !context.hasMutant(.flusherDoesNotFlush) {
            TlbFlusher.perform(ops: ops, all: flushAll, on: targets, context: context)
        }
        #else
        TlbFlusher.perform(ops: ops, all: flushAll, on: targets, context: context)
        #endif
        TlbFlusher.release(kept, context: context)
        kept = []
        ops.removeAll(keepingCapacity: true)
        pendingPages = 0
        flushAll = false
    }

    /// Waits until every dispatched flush has been performed (OSTD `sync_tlb_flush`). Dispatch
    /// is synchronous here, so there is nothing to wait for.
    public func syncTlbFlush() {}
}

extension TlbFlusher {
    /// Flushes the TLB of every CPU in `targets`.
    static func perform(ops: [TlbFlushOp], all: Bool, on targets: AtomicCpuSet, context: MachineRef) {
        for cpu in targets.load() { context.platform.flushTlb(ops, all: all, on: cpu) }
    }

    /// Drops frames and subtrees kept for a flush that has been performed.
    static func release(_ kept: [KeptItem], context: MachineRef) {
        for item in kept {
            switch item {
            // SAFETY: `keep` and `issueTlbFlush(removing:)` forgot these exactly once.
            case .frames(let range): _ = unsafe Segment<DynFrameMeta>.fromRaw(range, in: context)
            // SAFETY: a subtree detached from the table and kept (unfreed) for this flush; its
            // owner is this list, so the node is live until the teardown frees it.
            case .subtree(let paddr): context.tearDown(UserPtConfig.self, unsafe NodeRef(paddr, context), detached: true)
            }
        }
    }

    /// Issues the flush for what `fragment` removed, keeping it until the flush; returns the 4 KiB
    /// frames its tracked mappings held.
    mutating func issueTlbFlush(removing fragment: consuming PageTableFrag<UserPtConfig>) -> Int {
        switch consume fragment {
        case .mapped(let va, let item):
            let frames = item.isTracked ? PagingConsts.pageSize(item.level) / pageSize : 0
            keep(item, flushing: .single(va))
            return frames
        case .strayPageTable(let node, let va, let len, _):
            let frames = node.trackedBasePages
            issueTlbFlush(.range(va..<(va + len)))
            kept.append(.subtree(node.intoRaw()))
            return frames
        }
    }

    /// Issues `op` and keeps `item`'s frames, if it owns any, until it is performed.
    mutating func keep(_ item: consuming MappedItem, flushing op: TlbFlushOp) {
        issueTlbFlush(op)
        if item.isTracked { kept.append(.frames(item.intoSegment().intoRaw())) }
    }
}

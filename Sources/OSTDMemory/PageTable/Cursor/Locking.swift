// How a cursor locks its range (OSTD `page_table/cursor/locking.rs`).
//
// 1. Find the subtree root: from the root, go down while the whole range falls into one entry,
//    hand over hand (lock the child, then release the parent). A mutable cursor allocates missing
//    nodes on the way, as OSTD does, so that cursors over disjoint small ranges lock disjoint
//    subtrees; a read-only cursor does not allocate and stops at the absent entry instead (OSTD
//    allocates for both), and neither allocates for an absent entry the range covers exactly.
//    If memory runs out, the cursor simply locks the larger subtree.
// 2. Lock every node of that subtree that overlaps the range, in pre-order (parent before child,
//    lower index before higher): OSTD's `dfs_acquire_lock`. Release is the mirror image.
//
// Every thread acquires node locks in the same global order (pre-order position), so cursors never
// deadlock; two cursors over overlapping ranges always share a node, so one waits for the other.
//
// The hand-over-hand descent means a node is only freed by a thread that holds its parent's lock,
// and anyone waiting for a node's lock holds that same parent lock: so a waiter never wakes up on
// a freed node. (OSTD descends without locks under RCU and re-checks `stray`; that lock-free
// descent can replace step 1 once retired nodes wait for a grace period, which
// `PageTable.defersReclamation` provides.)

extension Cursor where C: PageTableConfig {
    /// Step 1: the locked root of the smallest subtree covering `range`, and its level.
    static func lockSubtreeRoot(
        _ table: PageTable<C>, _ range: Range<Vaddr>, allocating: Bool
    ) -> (NodeRef, PagingLevel) {
        let context = table.context
        let last = Vaddr(range.upperBound.rawValue - 1)
        var node = table.root
        var level = PagingConsts.nrLevels
        node.lock()
        while level > 1 {
            let index = PagingConsts.pteIndex(range.lowerBound, level)
            guard index == PagingConsts.pteIndex(last, level) else { break }
            let pte = node.read(index)
            let child: NodeRef
            if pte.isPresent {
                if pte.isLeaf { break }
                child = NodeRef(pte.paddr(level: level), context)
                child.lock()
            } else {
                // An absent entry the range covers exactly is not filled with a node: the cursor
                // stays here, so that it can map a page of the entry's size (OSTD allocates, and
                // then cannot).
                let entrySize = PagingConsts.pageSize(level)
                let exact = range.lowerBound.isAligned(to: entrySize) && range.upperBound - range.lowerBound == entrySize
                guard allocating, !exact, let fresh = context.allocNode(level: level - 1) else { break }
                node.write(index, .pageTable(fresh.paddr(context)))
                node.nrChildren += 1
                child = fresh
            }
            node.unlock()
            node = child
            level -= 1
        }
        return (node, level)
    }

    /// The indices of `node`'s entries (at `level`, its range starting at `base`) that overlap
    /// the cursor's range.
    func overlappingIndices(base: UInt64, level: PagingLevel) -> ClosedRange<Int> {
        let span = UInt64(PagingConsts.pageSize(level + 1))
        let low = max(barrierVa.lowerBound.rawValue, base)
        let high = min(barrierVa.upperBound.rawValue - 1, base &+ (span - 1))
        return PagingConsts.pteIndex(Vaddr(low), level)...PagingConsts.pteIndex(Vaddr(high), level)
    }

    /// The first virtual address of the node at `level` that covers `va`.
    func nodeBase(_ va: Vaddr, level: PagingLevel) -> UInt64 {
        va.rawValue & ~(UInt64(PagingConsts.pageSize(level + 1)) - 1)
    }

    /// Step 2: locks the child nodes of `node` that overlap the range, recursively, in pre-order.
    func dfsAcquireLock(_ node: NodeRef, level: PagingLevel) {
        dfsAcquireLock(node, level: level, base: nodeBase(barrierVa.lowerBound, level: level))
    }

    private func dfsAcquireLock(_ node: NodeRef, level: PagingLevel, base: UInt64) {
        guard level > 1 else { return }
        let size = UInt64(PagingConsts.pageSize(level))
        for index in overlappingIndices(base: base, level: level) {
            let pte = node.read(index)
            guard pte.isPresent && !pte.isLeaf else { continue }
            let child = NodeRef(pte.paddr(level: level), context)
            child.lock()
            dfsAcquireLock(child, level: level - 1, base: base &+ UInt64(index) &* size)
        }
    }

    /// Unlocks `node` and every node below it that overlaps the range, children first, in
    /// reverse pre-order (OSTD `dfs_release_lock`). Nodes the cursor created are included.
    func dfsReleaseLock(_ node: NodeRef, level: PagingLevel) {
        dfsReleaseLock(node, level: level, base: nodeBase(barrierVa.lowerBound, level: level))
    }

    private func dfsReleaseLock(_ node: NodeRef, level: PagingLevel, base: UInt64) {
        if level > 1 {
            let size = UInt64(PagingConsts.pageSize(level))
            for index in overlappingIndices(base: base, level: level).reversed() {
                let pte = node.read(index)
                guard pte.isPresent && !pte.isLeaf else { continue }
                dfsReleaseLock(NodeRef(pte.paddr(level: level), context), level: level - 1,
                               base: base &+ UInt64(index) &* size)
            }
        }
        node.unlock()
    }

    /// Marks a detached subtree stray and unlocks it (OSTD `dfs_mark_stray_and_unlock`); returns
    /// the number of leaves in it.
    @usableFromInline
    func markStrayAndUnlock(_ node: NodeRef, level: PagingLevel) -> Int {
        var leaves = 0
        if node.nrChildren > 0 {
            for index in 0..<PagingConsts.nrEntries {
                let pte = node.read(index)
                guard pte.isPresent else { continue }
                if pte.isLeaf {
                    leaves += 1
                } else {
                    leaves += markStrayAndUnlock(NodeRef(pte.paddr(level: level), context), level: level - 1)
                }
            }
        }
        node.isStray = true
        node.unlock()
        return leaves
    }

    /// After the cursor's locks are released: if its subtree root was left empty, detach it and
    /// every ancestor that becomes empty in turn (the root, and the kernel's shared level-3
    /// nodes, excepted). Locks the path from the root down again, so it waits for any cursor now
    /// holding a node on it. Returns the detached nodes.
    func reclaimEmptyAncestors() -> [Paddr] {
        let target = barrierVa.lowerBound
        var nodes = InlineArray<4, NodeRef?>(repeating: nil)
        var level = PagingConsts.nrLevels
        nodes[3] = pageTable.root
        pageTable.root.lock()
        while level > guardLevel {
            let pte = nodes[Int(level) - 1]!.read(PagingConsts.pteIndex(target, level))
            guard pte.isPresent && !pte.isLeaf else { break }
            level -= 1
            let child = NodeRef(pte.paddr(level: level + 1), context)
            child.lock()
            nodes[Int(level) - 1] = child
        }
        let lowestRemovable: PagingLevel = C.topLevelCanUnmap ? PagingConsts.nrLevels - 1 : PagingConsts.nrLevels - 2
        var detached: [Paddr] = []
        while level <= lowestRemovable, let node = nodes[Int(level) - 1], node.nrChildren == 0 {
            let parent = nodes[Int(level)]!
            parent.write(PagingConsts.pteIndex(target, level + 1), .absent)
            parent.nrChildren -= 1
            node.isStray = true
            node.unlock()
            detached.append(node.paddr(context))
            nodes[Int(level) - 1] = nil
            level += 1
        }
        for l in Int(level)...Int(PagingConsts.nrLevels) { nodes[l - 1]?.unlock() }
        return detached
    }
}

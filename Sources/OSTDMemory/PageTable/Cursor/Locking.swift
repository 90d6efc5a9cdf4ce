// How a cursor locks its range (OSTD `page_table/cursor/locking.rs`); docs/CONCURRENCY.md
// states the protocol, its invariants and why it is safe.
//
// 1. Find the subtree root without locks: from the root, go down while the whole range falls
//    into one entry, reading entries inside a read-side section (`Rcu`), so that no node on the
//    way can be freed under the walk. Lock the node found and check it is not stray (detached
//    meanwhile); if it is, start again from the root. A mutable cursor that meets an absent
//    entry on the way locks that node, re-reads the entry and allocates the child, as OSTD
//    does, so that cursors over disjoint small ranges lock disjoint subtrees; a read-only cursor
//    does not allocate and locks the node with the absent entry instead (OSTD allocates for
//    both), and neither allocates for an absent entry the range covers exactly. If memory runs
//    out, the cursor simply locks the larger subtree.
// 2. Lock every node of that subtree that overlaps the range, in pre-order (parent before child,
//    lower index before higher): OSTD's `dfs_acquire_lock`. Release is the mirror image.
//
// Every thread acquires node locks in the same global order (pre-order position) and holds none
// while it descends, so cursors never deadlock; two cursors over overlapping ranges always lock a
// common node, so one waits for the other (or, for `tryCursorMut`, gives up). A node is detached
// only by a thread holding its parent's lock and its own; it is marked stray before its lock is
// released, and freed only after a grace period (`MachineRef.dropAfterGracePeriod`), so a
// cursor that reached it without locks can still lock it and see the mark.

/// What one lock-free descent found.
enum SubtreeRootAttempt {
    /// The subtree root, locked by the caller, and its level.
    case locked(NodeRef, PagingLevel)
    /// The node found was detached before it could be locked: start again.
    case stray
    /// A lock was held by another thread and the caller does not wait.
    case busy
}

extension Cursor where C: PageTableConfig {
    // MARK: Step 1: the subtree root

    /// The locked root of the smallest subtree covering `range`, and its level; `nil` when
    /// `blocking` is off and a node on the way was locked by another thread.
    static func lockSubtreeRoot(
        _ table: PageTable<C>, _ range: Range<Vaddr>, allocating: Bool, blocking: Bool
    ) -> (NodeRef, PagingLevel)? {
        while true {
            switch tryTraverseAndLockSubtreeRoot(table, range, allocating: allocating, blocking: blocking) {
            case .locked(let node, let level): return (node, level)
            case .stray: continue
            case .busy: return nil
            }
        }
    }

    /// One descent from the root (OSTD `try_traverse_and_lock_subtree_root`).
    private static func tryTraverseAndLockSubtreeRoot(
        _ table: PageTable<C>, _ range: Range<Vaddr>, allocating: Bool, blocking: Bool
    ) -> SubtreeRootAttempt {
        let context = table.context
        let last = Vaddr(range.upperBound.rawValue - 1)
        let section = context.readSection()
        // The root lives as long as the table; every other node reached here was read from an
        // entry inside `section`, so it is not freed before the section ends.
        var node = table.root
        var level = PagingConsts.nrLevels
        // The node this descent allocated last: born locked by us, so it needs no locking.
        var fresh: NodeRef? = nil
        while level > 1 {
            let index = PagingConsts.pteIndex(range.lowerBound, level)
            guard index == PagingConsts.pteIndex(last, level) else { break }
            let pte = node.read(index)
            if pte.isPresent {
                if pte.isLeaf { break }
                // SAFETY: read from an entry inside `section`: not freed before the section ends.
                node = unsafe NodeRef(pte.paddr(level: level), context)
                level -= 1
                continue
            }
            // An absent entry the range covers exactly is not filled with a node: the cursor
            // stays here, so that it can map a page of the entry's size (OSTD allocates, and
            // then cannot).
            let entrySize = PagingConsts.pageSize(level)
            let exact = range.lowerBound.isAligned(to: entrySize) && range.upperBound - range.lowerBound == entrySize
            guard allocating, !exact else { break }
            let parent: PageTableGuard
            if let mine = fresh, mine == node {
                // SAFETY: `mine` was allocated locked by this descent and no guard owns it.
                parent = unsafe PageTableGuard(assumingLocked: mine)
            } else if let taken = blocking ? node.lock(context) : node.tryLock() {
                guard !taken.node.isStray else { return .stray }
                parent = taken
            } else {
                return .busy
            }
            let now = node.read(index)
            if now.isPresent {
                // Another cursor filled the entry after our lock-free read.
                if now.isLeaf { return .locked(parent.forget(), level) }
                // SAFETY: read under `parent`'s lock (and inside `section`): it cannot be detached.
                node = unsafe NodeRef(now.paddr(level: level), context)
                level -= 1
                continue
            }
            guard let child = context.allocNode(level: level - 1) else { return .locked(parent.forget(), level) }
            parent.write(index, .pageTable(child.paddr(context)))
            parent.countChildren(+1)
            fresh = child
            node = child
            level -= 1
        }
        if let mine = fresh, mine == node { return .locked(node, level) }
        guard let taken = blocking ? node.lock(context) : node.tryLock() else { return .busy }
        guard !taken.node.isStray else { return .stray }
        _ = consume section
        return .locked(taken.forget(), level)
    }

    // MARK: Step 2: the nodes in range

    /// The indices of `node`'s entries (at `level`, its range starting at `base`) that overlap
    /// the cursor's range.
    func overlappingIndices(base: UInt64, level: PagingLevel) -> ClosedRange<Int> {
        Cursor.overlappingIndices(barrierVa, base: base, level: level)
    }

    static func overlappingIndices(_ range: Range<Vaddr>, base: UInt64, level: PagingLevel) -> ClosedRange<Int> {
        let span = PagingConsts.pageSpan(level &+ 1)
        let low = max(range.lowerBound.rawValue, base)
        let high = min(range.upperBound.rawValue - 1, base &+ (span - 1))
        return PagingConsts.pteIndex(Vaddr(low), level)...PagingConsts.pteIndex(Vaddr(high), level)
    }

    /// The first virtual address of the node at `level` that covers `va`.
    static func nodeBase(_ va: Vaddr, level: PagingLevel) -> UInt64 {
        va.rawValue & ~PagingConsts.offsetMask(level &+ 1)
    }

    /// Locks the child nodes of the locked `node` that overlap the range, recursively, in
    /// pre-order (OSTD `dfs_acquire_lock`). Without `blocking`, gives up at the first lock held
    /// by another thread, releasing what it took, and returns `false`.
    static func dfsAcquireLock(_ node: NodeRef, level: PagingLevel, range: Range<Vaddr>, context: MachineRef,
                               blocking: Bool) -> Bool {
        guard level > 1 else { return true }
        var taken: [NodeRef] = []
        guard dfsAcquireLock(node, level: level, base: nodeBase(range.lowerBound, level: level), range: range,
                             context: context, blocking: blocking, taken: &taken) else {
            // SAFETY: each node in `taken` was locked above by this thread; no guard owns it.
            for child in taken.reversed() { _ = unsafe PageTableGuard(assumingLocked: child) }
            return false
        }
        return true
    }

    /// The recursion of `dfsAcquireLock`; without `blocking` it logs each lock taken in `taken`.
    private static func dfsAcquireLock(_ node: NodeRef, level: PagingLevel, base: UInt64, range: Range<Vaddr>,
                                       context: MachineRef, blocking: Bool, taken: inout [NodeRef]) -> Bool {
        guard level > 1 else { return true }
        let size = PagingConsts.pageSpan(level)
        for index in overlappingIndices(range, base: base, level: level) {
            // Under `node`'s lock: the child cannot be detached, so it needs no section.
            let pte = node.read(index)
            guard pte.isPresent && !pte.isLeaf else { continue }
            // SAFETY: read under `node`'s lock, held: the child cannot be detached or freed.
            let child = unsafe NodeRef(pte.paddr(level: level), context)
            if blocking {
                _ = child.lock(context).forget()
            } else {
                guard let held = child.tryLock() else { return false }
                taken.append(held.forget())
            }
            guard dfsAcquireLock(child, level: level - 1, base: base &+ UInt64(index) &* size, range: range,
                                 context: context, blocking: blocking, taken: &taken) else { return false }
        }
        return true
    }

    /// Unlocks `node` and every node below it that overlaps the range, children first, in
    /// reverse pre-order (OSTD `dfs_release_lock`). Nodes the cursor created are included.
    func dfsReleaseLock(_ node: NodeRef, level: PagingLevel) {
        dfsReleaseLock(node, level: level, base: Cursor.nodeBase(barrierVa.lowerBound, level: level))
    }

    private func dfsReleaseLock(_ node: NodeRef, level: PagingLevel, base: UInt64) {
        if level > 1 {
            let size = PagingConsts.pageSpan(level)
            for index in overlappingIndices(base: base, level: level).reversed() {
                let pte = node.read(index)
                guard pte.isPresent && !pte.isLeaf else { continue }
                // SAFETY: a child overlapping the range of a node in the lock set is in it too.
                dfsReleaseLock(unsafe NodeRef(pte.paddr(level: level), context), level: level - 1,
                               base: base &+ UInt64(index) &* size)
            }
        }
        // SAFETY: the cursor's lock set holds `node` (it overlaps the range); this releases it.
        _ = unsafe PageTableGuard(assumingLocked: node)
    }

    // MARK: Detaching

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
                    // SAFETY: every node of the detached subtree is in the cursor's lock set.
                    leaves += markStrayAndUnlock(unsafe NodeRef(pte.paddr(level: level), context), level: level - 1)
                }
            }
        }
        // SAFETY: the node is in the cursor's locked subtree (it is inside the range the cursor
        // detached it for); this releases it.
        let held = unsafe PageTableGuard(assumingLocked: node)
        held.markStray()
        return leaves
    }

    /// After the cursor's locks are released: if its subtree root was left empty, detach it and
    /// each ancestor that becomes empty in turn (the root, and the kernel's shared level-3 nodes,
    /// excepted), one parent and child lock at a time. Returns the detached nodes.
    func reclaimEmptyAncestors() -> [Paddr] {
        let lowestRemovable: PagingLevel = C.topLevelCanUnmap ? PagingConsts.nrLevels - 1 : PagingConsts.nrLevels - 2
        var detached: [Paddr] = []
        var level = guardLevel
        while level <= lowestRemovable, let node = detachIfEmpty(level: level) {
            detached.append(node)
            level += 1
        }
        return detached
    }

    /// Detaches the node at `level` that covers the cursor's start if it exists and has no
    /// entries: locks its parent (found without locks, checked not stray), then the node. Returns
    /// the detached node, or `nil` when it is gone or not empty.
    private func detachIfEmpty(level target: PagingLevel) -> Paddr? {
        let va = barrierVa.lowerBound
        while true {
            let section = context.readSection()
            // SAFETY: the table outlives the cursor (`owner`, or the scope that borrowed it).
            var node = unsafe pageTable.root
            var level = PagingConsts.nrLevels
            while level > target + 1 {
                let pte = node.read(PagingConsts.pteIndex(va, level))
                guard pte.isPresent && !pte.isLeaf else { return nil }
                // SAFETY: read from an entry inside `section`: not freed before the section ends.
                node = unsafe NodeRef(pte.paddr(level: level), context)
                level -= 1
            }
            let parent = node.lock(context)
            guard !parent.node.isStray else { continue }
            _ = consume section
            let index = PagingConsts.pteIndex(va, target + 1)
            let pte = parent.node.read(index)
            guard pte.isPresent && !pte.isLeaf else { return nil }
            // SAFETY: read under `parent`'s lock, held: the child cannot be detached or freed.
            let child = unsafe NodeRef(pte.paddr(level: target + 1), context).lock(context)
            guard child.nrChildren == 0 else { return nil }
            parent.write(index, .absent)
            parent.countChildren(-1)
            child.markStray()
            child.recordAllAbsent(context)
            return child.node.paddr(context)
        }
    }
}

// The edit primitives behind `CursorMut` (OSTD's `CursorMut` internals): preparing a slot for a
// mapping (allocating nodes, splitting huge leaves), committing a leaf, taking a slot's content
// out, and detaching nodes that an edit left empty. Every primitive keeps `nrChildren` exact.

extension Cursor where C: PageTableConfig {
    /// Checks that an item like `raw` can be mapped at `va`, goes to its level (allocating nodes
    /// and splitting huge leaves on the way) and checks that the slot is empty.
    @inlinable @inline(__always)
    mutating func prepareSlot(for raw: MappedItemRef) throws(PageTableError) {
        let size = PagingConsts.pageSize(raw.level)
        guard va < barrierVa.upperBound, size <= barrierVa.upperBound - va else { throw .invalidVaddr(va) }
        guard raw.level >= 1, raw.level <= PagingConsts.highestTranslationLevel, raw.level <= guardLevel else {
            throw .unsuitableLevel(raw.level)
        }
        guard va.isAligned(to: size) else { throw .unalignedVaddr(va) }
        guard raw.paddr.rawValue & ~PageTableEntry.paMask(raw.level) == 0 else { throw .unalignedPaddr(raw.paddr) }
        while level < raw.level { popLevel() }
        if level > raw.level { try descend(to: raw.level) }
        if _slowPath(currentEntry().isPresent) { throw .alreadyMapped(va) }
    }

    /// Whether `raw` can be committed at the current slot as it is: a 4 KiB item, the cursor at an
    /// empty 4 KiB slot inside its range, the address aligned. This is the state of every map of
    /// a run after the first, for which `prepareSlot` would check, move and find nothing to do.
    @inlinable @inline(__always)
    func slotReadyForPage(_ raw: MappedItemRef) -> Bool {
        guard raw.level == 1, level == 1, va < barrierVa.upperBound,
              raw.paddr.rawValue & PagingConsts.offsetMask(1) == 0 else { return false }
        return !currentEntry(at: 1).isPresent
    }

    /// Goes down to `target`, allocating absent nodes. On running out of memory, the nodes just
    /// allocated (all empty) are detached again.
    ///
    /// A huge leaf on the way means the slot is mapped: it throws `alreadyMapped` without
    /// splitting the leaf. (OSTD splits it and then panics. Splitting without a TLB flush would
    /// leave CPUs caching the huge translation over the smaller leaves, a TLB entry that is not
    /// one of the table's mappings: the audited property test found that after a failed
    /// `tryMap`.)
    @usableFromInline
    mutating func descend(to target: PagingLevel) throws(PageTableError) {
        while level > target {
            let pte = currentEntry()
            if pte.isPresent {
                if pte.isLeaf {
                    reclaimEmptyPath()
                    throw .alreadyMapped(va)
                } else {
                    // SAFETY: a child of the current node that covers `va` is in the cursor's lock
                    // set (Cursor.swift), so it is live.
                    pushLevel(unsafe NodeRef(pte.paddr(level: level), context))
                }
                continue
            }
            guard let child = context.allocNode(level: level - 1) else {
                reclaimEmptyPath()
                throw .outOfMemory
            }
            let index = currentIndex
            // SAFETY: the current node is in the cursor's lock set; `child`, born locked, joins it.
            unsafe currentNode.withHeld { node in
                node.write(index, .pageTable(child.paddr(context)))
                node.countChildren(+1)
            }
            pushLevel(child)
        }
    }

    /// Writes the leaf for `raw` into the current (empty) slot, at `knownLevel` (the cursor's:
    /// a constant on the 4 KiB fast path), and moves past it.
    @inlinable @inline(__always)
    mutating func commitMap(_ raw: MappedItemRef, at knownLevel: PagingLevel) {
        var entry = leafEntry(raw)
        #if DEBUG
        if context.hasMutant(.mapWritesWrongPaddr) && raw.level == 1 {
            entry = PageTableEntry(raw: entry.raw &+ UInt64(pageSize))
        }
        #endif
        let index = PagingConsts.pteIndex(va, knownLevel)
        // SAFETY: the current node is in the cursor's lock set.
        unsafe currentNode(at: knownLevel).withHeld { node in
            node.write(index, entry)
            node.countChildren(+1)
        }
        advance(to: (va.rawValue & ~PagingConsts.offsetMask(knownLevel)) &+ PagingConsts.pageSpan(knownLevel), from: knownLevel)
    }

    /// Clears the current slot and returns what it held, as a fragment.
    @inlinable
    mutating func takeCurrent() -> PageTableFrag<C> {
        let index = currentIndex
        let pte = currentNode.read(index)
        // SAFETY: the current node is in the cursor's lock set.
        unsafe currentNode.withHeld { node in
            node.write(index, .absent)
            node.countChildren(-1)
        }
        let slotVa = curVaRange.lowerBound
        if pte.isLeaf {
            #if DEBUG
            if context.hasMutant(.takeNextLeaksFrameReference) && MappedItemRef(C.self, pte: pte, level: level).isTracked {
                context.slot(of: pte.paddr(level: level)).incRefCount(paddr: pte.paddr(level: level))
            }
            #endif
            // SAFETY: the leaf's references were forgotten into this entry by `commitMap` (or a
            // split moved them here), and the entry was cleared above under the node's lock, so
            // they are restored exactly once.
            return .mapped(va: slotVa, item: unsafe MappedItem.fromRaw(C.self, pte, level: level, context: context))
        }
        // SAFETY: the child, covered whole by the range, is in the cursor's lock set; the entry
        // cleared above held its reference, which the fragment's `PageTableNode` now owns.
        let child = unsafe NodeRef(pte.paddr(level: level), context)
        let leaves = markStrayAndUnlock(child, level: level - 1)
        return .strayPageTable(node: PageTableNode(adopting: child, context: context), va: slotVa,
                               len: PagingConsts.pageSize(level), numFrames: leaves)
    }

    /// Detaches the current node and each ancestor that is left without entries, up to (not
    /// including) the cursor's subtree root, and stays at the level of the first non-empty one.
    /// The kernel's shared level-3 nodes are never detached. The detached nodes are retired when
    /// the cursor is dropped.
    @inlinable
    mutating func reclaimEmptyPath() {
        while level < guardLevel && currentNode.nrChildren == 0
            && (C.topLevelCanUnmap || level < PagingConsts.nrLevels - 1) {
            let node = currentNode
            // SAFETY: the node is in the cursor's lock set; this marks it and releases it.
            let held = unsafe PageTableGuard(assumingLocked: node)
            held.markStray()
            held.recordAllAbsent(context)
            _ = consume held
            retired.append(node.paddr(context))
            popLevel()
            let index = currentIndex
            // SAFETY: the parent, the cursor's new current node, is in its lock set.
            unsafe currentNode.withHeld { parent in
                parent.write(index, .absent)
                parent.countChildren(-1)
            }
        }
    }
}

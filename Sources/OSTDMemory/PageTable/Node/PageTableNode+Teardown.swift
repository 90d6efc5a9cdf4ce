// Tearing a subtree down (OSTD `PageTablePageMeta::on_drop`): every tracked leaf drops the
// references it held and every node is freed, at once when no walker can be in the subtree (a
// table being destroyed), or after a grace period when one might (a detached subtree); and
// counting what a subtree maps.

extension MachineRef {
    /// Counts the base pages of tracked leaves below `node` (owned by the caller, so unlocked).
    func trackedBasePages<C: PageTableConfig>(_: C.Type, _ node: NodeRef, level: PagingLevel) -> Int {
        guard node.nrChildren > 0 else { return 0 }
        var pages = 0
        for index in 0..<PagingConsts.nrEntries {
            let pte = node.read(index)
            guard pte.isPresent else { continue }
            if pte.isLeaf {
                if MappedItemRef(C.self, pte: pte, level: level).isTracked { pages += PagingConsts.pageSize(level) / pageSize }
            } else {
                // SAFETY: a child of a node the caller owns belongs to the same owned subtree.
                pages += trackedBasePages(C.self, unsafe NodeRef(pte.paddr(level: level), self), level: level - 1)
            }
        }
        return pages
    }

    /// Drops a node that the caller owns, and everything below it (OSTD `on_drop`). At the root
    /// only the configuration's top-level range is visited, so a user root never touches the
    /// shared kernel half. With `detached`, lock-free walkers may still be in the subtree: its
    /// nodes are freed after a grace period (the leaves' frames at once: a walk only reads the
    /// entries, which are cleared first).
    func tearDown<C: PageTableConfig>(_: C.Type, _ node: NodeRef, detached: Bool) {
        tearDown(node, rootIndices: C.topLevelIndexRange, avail1MeansTracked: C.avail1MeansTracked, detached: detached)
    }

    /// `tearDown` with the configuration's two constants as values: one compiled copy serves
    /// every configuration. Frames whose last reference goes are returned in contiguous runs,
    /// one allocator lock per run.
    func tearDown(_ node: NodeRef, rootIndices: Range<Int>, avail1MeansTracked: Bool, detached: Bool) {
        var freed = FrameRuns(context: self)
        var nodes: [Paddr] = []
        tearDown(node, rootIndices: rootIndices, avail1MeansTracked: avail1MeansTracked, freed: &freed, nodes: &nodes)
        freed.flush()
        nodes.append(node.paddr(self))
        if detached {
            dropAfterGracePeriod(nodes)
        } else {
            // SAFETY: the nodes of the owned subtree, collected above and not freed yet; no walker
            // can be in them (not detached: the owner is tearing down a whole table).
            for paddr in nodes { freeNode(unsafe NodeRef(paddr, self)) }
        }
    }

    /// Clears the entries below `node`, dropping the leaves' references into `freed` and
    /// collecting the child nodes (children first) into `nodes`.
    private func tearDown(_ node: NodeRef, rootIndices: Range<Int>, avail1MeansTracked: Bool,
                          freed: inout FrameRuns, nodes: inout [Paddr]) {
        let level = node.level
        guard node.nrChildren > 0 else { return }
        // The caller owns the subtree, so the lock is free (a walker that reached the node
        // detached may take it, see it stray and leave).
        let held = node.lock(self)
        let indices = level == PagingConsts.nrLevels ? rootIndices : 0..<PagingConsts.nrEntries
        for i in indices {
            let pte = node.read(i)
            guard pte.isPresent else { continue }
            held.write(i, .absent)
            if !pte.isLeaf {
                // SAFETY: a child of a node the caller owns belongs to the same owned subtree; it
                // is freed only after this walk (by the caller, or after a grace period).
                let child = unsafe NodeRef(pte.paddr(level: level), self)
                tearDown(child, rootIndices: rootIndices, avail1MeansTracked: avail1MeansTracked, freed: &freed, nodes: &nodes)
                nodes.append(child.paddr(self))
            } else if (pte.raw & PageTableEntry.avail1 != 0) == avail1MeansTracked {
                let first = Int(pte.paddr(level: level).rawValue >> UInt64(pageShift))
                for index in first..<(first + PagingConsts.pageSize(level) >> pageShift) { freed.dropReference(index) }
            }
        }
        held.setNrChildren(0)
    }
}

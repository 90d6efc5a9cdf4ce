// Tearing a subtree down (OSTD `PageTablePageMeta::on_drop`): every node is freed and every
// tracked leaf drops the references it held; and counting what a subtree maps.

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
                pages += trackedBasePages(C.self, NodeRef(pte.paddr(level: level), self), level: level - 1)
            }
        }
        return pages
    }

    /// Drops a node that the caller owns, and everything below it (OSTD `on_drop`). At the root
    /// only the configuration's top-level range is visited, so a user root never touches the
    /// shared kernel half.
    func tearDown<C: PageTableConfig>(_: C.Type, _ node: NodeRef) {
        tearDown(node, rootIndices: C.topLevelIndexRange, avail1MeansTracked: C.avail1MeansTracked)
    }

    /// `tearDown` with the configuration's two constants as values: one compiled copy serves
    /// every configuration. Frames whose last reference goes are returned in contiguous runs,
    /// one allocator lock per run.
    func tearDown(_ node: NodeRef, rootIndices: Range<Int>, avail1MeansTracked: Bool) {
        var freed = FrameRuns(context: self)
        tearDown(node, rootIndices: rootIndices, avail1MeansTracked: avail1MeansTracked, freed: &freed)
        freed.flush()
        freeNode(node)
    }

    private func tearDown(_ node: NodeRef, rootIndices: Range<Int>, avail1MeansTracked: Bool,
                          freed: inout FrameRuns) {
        let level = node.level
        guard node.nrChildren > 0 else { return }
        let indices = level == PagingConsts.nrLevels ? rootIndices : 0..<PagingConsts.nrEntries
        for i in indices {
            let pte = node.read(i)
            guard pte.isPresent else { continue }
            node.write(i, .absent)
            if !pte.isLeaf {
                let child = NodeRef(pte.paddr(level: level), self)
                tearDown(child, rootIndices: rootIndices, avail1MeansTracked: avail1MeansTracked, freed: &freed)
                freeNode(child)
            } else if (pte.raw & PageTableEntry.avail1 != 0) == avail1MeansTracked {
                let first = Int(pte.paddr(level: level).rawValue >> UInt64(pageShift))
                for index in first..<(first + PagingConsts.pageSize(level) >> pageShift) { freed.dropReference(index) }
            }
        }
        node.nrChildren = 0
    }
}

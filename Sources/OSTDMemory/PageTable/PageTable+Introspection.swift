// Read-only introspection of a page table, for the executable specification (`OSTDSpec`) and the
// tool's dumps: a walk over the nodes and their entries, reading them as the MMU does, without
// locks. Exact at a quiescent point (no cursor alive), a best-effort snapshot otherwise. Nothing
// here changes the table; it is SPI because it exposes the tree's layout.

/// One node of a page table, as a walk finds it.
@_spi(OSTDInternals) public struct PageTableNodeVisit {
    /// The node's physical address.
    public let paddr: Paddr
    /// The level the node's position gives it (4 for the root).
    public let level: PagingLevel
    /// The level recorded in the node's metadata.
    public let recordedLevel: PagingLevel
    /// The node's `nrChildren` counter.
    public let nrChildren: Int
    /// Whether some thread holds the node's lock (a cursor over it).
    public var isLocked: Bool { node.isLocked }
    /// The entries that belong to this table: all 512, or the configuration's top-level range
    /// at the root (a user root's shared kernel half is not the user table's).
    public let indices: Range<Int>
    /// The unextended first virtual address the node covers.
    let base: UInt64
    let node: NodeRef

    /// Entry `index`, read atomically.
    public func entry(_ index: Int) -> PageTableEntry { node.read(index) }

    /// The first virtual address the node covers (sign-extended).
    public var va: Vaddr { Vaddr(signExtend(base)) }

    /// The first virtual address entry `index` covers (sign-extended).
    public func va(ofEntry index: Int) -> Vaddr {
        Vaddr(signExtend(base &+ UInt64(index) &* PagingConsts.pageSpan(level)))
    }
}

extension PageTable {
    /// Visits every node of the table in pre-order (the root first, children in index order);
    /// a user table's shared kernel nodes are not visited. With `range`, only the nodes whose
    /// part of the address space overlaps it (a cursor's locked range can be read this way while
    /// other cursors work elsewhere).
    ///
    /// - Safety: no node the walk reaches is freed meanwhile: call it at a quiescent point (no
    ///   cursor alive anywhere in the table), or with a `range` that a cursor of the calling
    ///   thread covers (its nodes are locked, and their ancestors are not empty, so not removed).
    ///   The walk takes no read-side section, so a node freed under it could be reused and read as
    ///   garbage entries, which would then be followed outside physical memory.
    @unsafe
    @_spi(OSTDInternals) public func forEachNode(overlapping range: Range<Vaddr>? = nil,
                                                 _ visit: (PageTableNodeVisit) -> Void) {
        func visitNode(_ node: NodeRef, _ level: PagingLevel, _ base: UInt64) {
            let indices = level == PagingConsts.nrLevels ? C.topLevelIndexRange : 0..<PagingConsts.nrEntries
            visit(PageTableNodeVisit(paddr: node.paddr(context), level: level, recordedLevel: node.level,
                                     nrChildren: node.nrChildren, indices: indices, base: base, node: node))
            guard level > 1 else { return }
            let size = PagingConsts.pageSpan(level)
            for index in range.map({ Self.indices(of: base, size, overlapping: $0, within: indices) }) ?? indices {
                let childBase = base &+ UInt64(index) &* size
                let pte = node.read(index)
                guard pte.isPresent && !pte.isLeaf else { continue }
                // SAFETY: the caller's contract: no node of the walk is freed meanwhile.
                visitNode(unsafe NodeRef(pte.paddr(level: level), context), level - 1, childBase)
            }
        }
        visitNode(root, PagingConsts.nrLevels, 0)
    }

    /// The entries of a node (whose entries cover `size` bytes each from the unextended address
    /// `base`) that overlap `range`, among `indices`: computed, not searched, so that a walk of a
    /// small range visits only the nodes on its way.
    static func indices(of base: UInt64, _ size: UInt64, overlapping range: Range<Vaddr>,
                        within indices: Range<Int>) -> Range<Int> {
        guard !range.isEmpty else { return 0..<0 }
        let mask: UInt64 = (1 << 48) - 1
        let first = range.lowerBound.rawValue & mask
        let last = (range.upperBound.rawValue &- 1) & mask
        guard first <= last else { return indices }   // a range across the non-canonical hole
        let span = size &* UInt64(PagingConsts.nrEntries)
        guard last >= base, first < base &+ span else { return 0..<0 }
        let lower = first > base ? Int((first - base) / size) : 0
        let upper = Int(min((last - base) / size, UInt64(PagingConsts.nrEntries - 1))) + 1
        return (lower..<upper).clamped(to: indices)
    }

    /// What the leaf entry `pte` at `level` of this table maps: its page, property (the table's
    /// `AVAIL1` marker cleared) and whether it holds frame references.
    @_spi(OSTDInternals) public func leaf(_ pte: PageTableEntry, level: PagingLevel) -> MappedItemRef {
        MappedItemRef(C.self, pte: pte, level: level)
    }
}

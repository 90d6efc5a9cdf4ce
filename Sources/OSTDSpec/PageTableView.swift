// The abstract view of a page table and its structural invariants (vostd `PageTableView`,
// `view_rec`, `PageTableOwner::inv`, `metaregion_sound`; run-time checks A.1–A.6 and C.18 of
// `vostd-spec-reference.md` §10).
//
// `view()` walks the live tree without locks, like the MMU, through the core's read-only
// introspection (`PageTable.forEachNode`, SPI): exact at a quiescent point (no cursor alive), a
// best-effort snapshot otherwise. `structuralViolations()` lists what is wrong with the tree in
// words, empty when every invariant holds.

@_spi(OSTDInternals) import OSTDMemory

/// One leaf of a page table (vostd `Mapping`).
public struct Mapping: Hashable, Sendable, CustomStringConvertible {
    /// The virtual range the leaf maps.
    public var va: Range<Vaddr>
    /// The physical range it maps to.
    public var pa: Range<Paddr>
    /// The leaf's level (1, 2 or 3).
    public var level: PagingLevel
    /// The leaf's property (with the page table's `AVAIL1` marker cleared).
    public var property: PageProperty
    /// Whether the leaf holds frame references.
    public var isTracked: Bool

    public init(va: Range<Vaddr>, pa: Range<Paddr>, level: PagingLevel, property: PageProperty, isTracked: Bool) {
        self.va = va
        self.pa = pa
        self.level = level
        self.property = property
        self.isTracked = isTracked
    }

    /// `page_size`: the bytes the leaf maps.
    public var pageSize: Int { PagingConsts.pageSize(level) }

    /// `Mapping::inv`: a supported page size, both ranges aligned to it and of its length.
    public func inv() -> Bool {
        let size = pageSize
        return (1...PagingConsts.highestTranslationLevel).contains(level)
            && pa.lowerBound.isAligned(to: size) && pa.upperBound - pa.lowerBound == size
            && va.lowerBound.isAligned(to: size) && va.upperBound - va.lowerBound == size
    }

    public var description: String {
        "\(va.lowerBound)..<\(va.upperBound) -> \(pa.lowerBound) \(["4K", "2M", "1G"][Int(level) - 1]) \(property)"
            + (isTracked ? "" : " untracked")
    }
}

/// One node of a page table, for introspection.
public struct PageTableNodeInfo: Hashable, Sendable {
    /// The node's physical address.
    public var paddr: Paddr
    /// Its level (4 is the root).
    public var level: PagingLevel
    /// The first virtual address its entries cover.
    public var va: Vaddr
    /// Its `nrChildren` counter.
    public var nrChildren: Int
    /// The present entries actually found in it (the shared kernel half of a user root excluded).
    public var presentEntries: Int

    public init(paddr: Paddr, level: PagingLevel, va: Vaddr, nrChildren: Int, presentEntries: Int) {
        self.paddr = paddr
        self.level = level
        self.va = va
        self.nrChildren = nrChildren
        self.presentEntries = presentEntries
    }
}

/// The abstract view of a page table: the set of its leaves, in address order
/// (vostd `PageTableView { mappings }`).
public struct PageTableView: Sendable {
    public var mappings: [Mapping]

    /// A view of `mappings`, which should be in address order.
    public init(mappings: [Mapping]) { self.mappings = mappings }

    /// `PageTableView::inv`: every mapping well formed and the mappings pairwise VA-disjoint.
    /// (Physical disjointness is not required: one frame may be mapped at several addresses.)
    public func inv() -> Bool { invViolations(limit: 1).isEmpty }

    /// What breaks `inv`, in words: the malformed mappings and those overlapping their
    /// predecessor (at most `limit`).
    public func invViolations(limit: Int = .max) -> [String] {
        var problems: [String] = []
        for mapping in mappings where !mapping.inv() && problems.count < limit {
            problems.append("malformed mapping \(mapping)")
        }
        for (a, b) in zip(mappings, mappings.dropFirst()) where a.va.upperBound > b.va.lowerBound && problems.count < limit {
            problems.append("mappings overlap: \(a) and \(b)")
        }
        return problems
    }

    /// The mapping that covers `va`, if any.
    public func mapping(covering va: Vaddr) -> Mapping? {
        var low = 0
        var high = mappings.count
        while low < high {
            let mid = (low + high) / 2
            if mappings[mid].va.upperBound <= va { low = mid + 1 } else { high = mid }
        }
        return low < mappings.count && mappings[low].va.contains(va) ? mappings[low] : nil
    }
}

extension PageTable {
    /// The table's leaves in virtual-address order (vostd `view_rec` from the root).
    ///
    /// With `range`, only the leaves that overlap it: the view of a cursor's locked range, which
    /// is exact while the cursor is alive.
    public func view(overlapping range: Range<Vaddr>? = nil) -> PageTableView {
        var mappings: [Mapping] = []
        forEachNode(overlapping: range) { node in
            for index in node.indices {
                let pte = node.entry(index)
                guard pte.isPresent && pte.isLeaf else { continue }
                let leaf = self.leaf(pte, level: node.level)
                let va = node.va(ofEntry: index)
                if let range, !(va < range.upperBound && range.lowerBound.rawValue < va.rawValue &+ UInt64(leaf.size)) {
                    continue
                }
                mappings.append(Mapping(va: va..<Vaddr(va.rawValue &+ UInt64(leaf.size)), pa: leaf.paddrRange,
                                        level: node.level, property: leaf.property, isTracked: leaf.isTracked))
            }
        }
        // Nodes come in pre-order, so a node's own leaves come before those of its children
        // that lie at lower addresses.
        mappings.sort { $0.va.lowerBound < $1.va.lowerBound }
        return PageTableView(mappings: mappings)
    }

    /// Every node of the table (the root first, then pre-order); a user table's shared kernel
    /// nodes are not included.
    public func nodes() -> [PageTableNodeInfo] {
        var nodes: [PageTableNodeInfo] = []
        forEachNode { node in
            let present = node.indices.reduce(0) { $0 + (node.entry($1).isPresent ? 1 : 0) }
            nodes.append(PageTableNodeInfo(paddr: node.paddr, level: node.level, va: node.va,
                                           nrChildren: node.nrChildren, presentEntries: present))
        }
        return nodes
    }

    /// How many leaves map each tracked frame, by frame physical address: the page table's share
    /// of every reference count (vostd `paths_in_pt`).
    public func trackedMappingCounts() -> [Paddr: Int] { PageTable.trackedMappingCounts(view()) }

    /// `trackedMappingCounts` of a view already taken.
    static func trackedMappingCounts(_ view: PageTableView) -> [Paddr: Int] {
        var counts: [Paddr: Int] = [:]
        for mapping in view.mappings where mapping.isTracked {
            for offset in stride(from: 0, to: mapping.pageSize, by: pageSize) {
                counts[mapping.pa.lowerBound + offset, default: 0] += 1
            }
        }
        return counts
    }

    /// The page-table paths to every frame this table references (vostd `paths_in_pt`): one per
    /// leaf mapping a tracked frame, one per node (its parent entry, or the table for the root).
    /// Feed it to `Machine.metaRegionOwners(pathsInPt:)`; merge the counts of several tables.
    public func pathsInPt() -> [Paddr: Int] { pathsInPt(view: view()) }

    /// `pathsInPt` with the table's view already taken (`view` must be this table's, now).
    public func pathsInPt(view: PageTableView) -> [Paddr: Int] {
        var paths = PageTable.trackedMappingCounts(view)
        forEachNode { node in paths[node.paddr, default: 0] += 1 }
        return paths
    }

    /// Everything wrong with the tree's structure, in words; empty when the invariants hold:
    /// - each node's `nrChildren` equals its present entries, and its level is its parent's minus
    ///   one (`metaregion_sound`: `nr_children == count_present`, levels match);
    /// - each node is a page-table frame with exactly one reference, and appears once (exactly
    ///   one parent entry);
    /// - no node but the root is empty (our reclamation; not an OSTD invariant);
    /// - every leaf is aligned, at a level that may hold leaves, and a tracked leaf's frames are
    ///   in use and not page-table nodes (`metaregion_sound` for frames, C.18).
    public func structuralViolations() -> [String] {
        var problems: [String] = []
        var seen = Set<Paddr>()
        forEachNode { node in
            let paddr = node.paddr
            if !seen.insert(paddr).inserted { problems.append("node \(paddr) is reachable twice") }
            let slot = machine.metaSlot(of: paddr)
            if slot.typeTag != PageTablePageMeta.typeTag { problems.append("node \(paddr) is not a page-table frame") }
            if slot.referenceCount != 1 { problems.append("node \(paddr) has \(slot.referenceCount) references, not 1") }
            if node.recordedLevel != node.level {
                problems.append("node \(paddr) has level \(node.recordedLevel), expected \(node.level)")
            }
            var present = 0
            for index in node.indices {
                let pte = node.entry(index)
                guard pte.isPresent else { continue }
                present += 1
                if pte.isLeaf { problems += leafViolations(pte, level: node.level) }
                else if node.level == 1 { problems.append("node \(paddr) entry \(index): a child pointer at level 1") }
            }
            if present != node.nrChildren {
                problems.append("node \(paddr): nrChildren \(node.nrChildren) but \(present) present entries")
            }
            let level = node.level
            if present == 0 && level < PagingConsts.nrLevels && (C.topLevelCanUnmap || level < PagingConsts.nrLevels - 1) {
                problems.append("node \(paddr) at level \(level) (va \(node.va)) is empty")
            }
        }
        return problems
    }

    private func leafViolations(_ pte: PageTableEntry, level: PagingLevel) -> [String] {
        let leaf = self.leaf(pte, level: level)
        guard level <= PagingConsts.highestTranslationLevel else { return ["a leaf at level \(level)"] }
        guard leaf.isTracked else { return [] }
        guard Int(leaf.paddrRange.upperBound.rawValue) <= machine.memorySize else {
            return ["tracked leaf \(leaf) is outside physical memory"]
        }
        for index in leaf.frameIndices {
            let slot = machine.metaSlot(of: Paddr(UInt64(index) << 12))
            guard case .shared = slot.status, slot.usage != .pageTable else {
                return ["tracked leaf \(leaf): frame \(Paddr(UInt64(index) << 12)) is \(slot.status), usage \(slot.usage)"]
            }
        }
        return []
    }
}

// The boot page table (OSTD `page_table/boot_pt.rs`).
//
// Early in boot, before the page tables of the running kernel exist, OSTD edits a page table with
// this small walker: no cursor, no locks, no items. It maps and protects base pages only,
// allocating intermediate nodes on the way down, and splits a huge page it has to protect a page
// inside. Every leaf it writes is untracked — a bare physical address holding no frame reference
// — so tearing the table down frees its nodes and nothing else.
//
// Differences from OSTD. OSTD adopts the firmware's table from CR3 and marks the firmware's nodes
// (`PTE_POINTS_TO_FIRMWARE_PT`) so that only its own nodes are freed; a simulated machine has no
// firmware table, so this one starts from a fresh root and owns every node in it. Frame metadata
// always exists here, so nodes are ordinary page-table frames (`allocNode`) rather than early
// allocations. Each node's `nrChildren` is kept exact, so the nodes satisfy the same bookkeeping
// invariants as those of a `PageTable`. OSTD's split fills the new node with `BASE_PAGE_SIZE`
// steps at every level; here the step is the child level's page size, so a 1 GiB page splits
// into 2 MiB pages that still map the same memory. The value owns its nodes: dropping it, or
// `dismiss()`, frees them (OSTD frees them when the last CPU dismisses the table).
//
// Editing requires exclusive access (`mutating`, Rust's `&mut self`): the table is for one thread
// at a time, as OSTD's is behind its spin lock. Its nodes stay locked from allocation until they
// are freed, so the table's lock set is every node it owns, and its writes go through guards
// made from that (`NodeRef.withHeld`).

/// A page table for early, single-threaded setup: base pages only, untracked (OSTD
/// `BootPageTable`).
///
///     var bootPt = try BootPageTable(machine: machine)
///     bootPt.mapBasePage(Vaddr(0x1000), Paddr(0x2000), .kernel(.rw))
///     bootPt.protectBasePage(Vaddr(0x1000)) { $0.flags.remove(.w) }
///     print(bootPt.pageWalk(Vaddr(0x1004))!)   // (paddr: 0x2004, property: r-- wb)
@_spi(OSTDInternals) public struct BootPageTable: ~Copyable {
    /// The machine whose frames hold the table.
    @_spi(OSTDInternals) public let machine: Machine
    @usableFromInline let context: MachineRef
    /// The root node, at level `PagingConsts.nrLevels`.
    let root: NodeRef

    /// An empty boot page table: a root with no entries (OSTD `BootPageTable::new`).
    ///
    /// - Throws: `outOfMemory` when there is no frame for the root.
    @_spi(OSTDInternals) public init(machine: Machine) throws(PageTableError) {
        guard let root = machine.context.allocNode(level: PagingConsts.nrLevels) else {
            throw .outOfMemory
        }
        self.machine = machine
        context = machine.context
        self.root = root
    }

    /// Frees every node of the table (OSTD `dismiss` by the last CPU). The mapped pages are
    /// untracked, so no other frame is touched.
    deinit {
        BootPageTable.freeSubtree(root, level: PagingConsts.nrLevels, context: context)
    }

    /// Gives the table up: frees its nodes now (OSTD `dismiss`). Dropping the value does the same.
    @_spi(OSTDInternals) public consuming func dismiss() {}

    /// The physical address of the root node: what CR3 holds when the table is active (OSTD
    /// `root_address`).
    @_spi(OSTDInternals) public var rootPaddr: Paddr { root.paddr(context) }

    // MARK: Editing

    /// Maps the 4 KiB page at `va` to the frame at `pa` with property `prop`, allocating the
    /// missing intermediate nodes (OSTD `map_base_page`).
    ///
    /// - Precondition: `va` and `pa` are 4 KiB aligned; no huge page covers `va` ("mapping an
    ///   already mapped huge page in the boot page table"); `va` is not mapped ("mapping an
    ///   already mapped page in the boot page table"); a node can be allocated.
    @_spi(OSTDInternals) public mutating func mapBasePage(_ va: Vaddr, _ pa: Paddr, _ prop: PageProperty) {
        precondition(va.isAligned(to: pageSize), "virtual address \(va) is not aligned to a base page")
        var node = root
        var level = PagingConsts.nrLevels
        while level > 1 {
            let index = PagingConsts.pteIndex(va, level)
            switch node.read(index).repr(level: level) {
            case .absent:
                node = allocChild(of: node, at: index, level: level)
            case .mapped:
                preconditionFailure("mapping an already mapped huge page in the boot page table")
            case .pageTable(let child, _):
                // SAFETY: a child entry of this table points at a node this table allocated.
                node = unsafe NodeRef(child, context)
            }
            level -= 1
        }
        let index = PagingConsts.pteIndex(va, 1)
        if node.read(index).isPresent {
            preconditionFailure("mapping an already mapped page in the boot page table")
        }
        // SAFETY: the boot table holds the locks of all its nodes.
        unsafe node.withHeld { held in
            held.write(index, PageTableEntry(repr: .mapped(pa, prop), level: 1))
            held.countChildren(+1)
        }
    }

    /// Applies `op` to the property of the 4 KiB page at `va` (OSTD `protect_base_page`). A huge
    /// page covering `va` is split on the way down, one level at a time, into pages that map the
    /// same memory with the same property; this allocates a node per split.
    ///
    /// - Precondition: `va` is mapped ("protecting an unmapped page in the boot page table"); a
    ///   node can be allocated when a split is needed.
    @_spi(OSTDInternals) public mutating func protectBasePage(_ va: Vaddr, _ op: (inout PageProperty) -> Void) {
        var node = root
        var level = PagingConsts.nrLevels
        while level > 1 {
            let index = PagingConsts.pteIndex(va, level)
            switch node.read(index).repr(level: level) {
            case .absent:
                preconditionFailure("protecting an unmapped page in the boot page table")
            case .pageTable(let child, _):
                // SAFETY: a child entry of this table points at a node this table allocated.
                node = unsafe NodeRef(child, context)
            case .mapped(let hugePa, let prop):
                node = splitHugePage(node, at: index, level: level, paddr: hugePa, prop: prop)
            }
            level -= 1
        }
        let index = PagingConsts.pteIndex(va, 1)
        guard case .mapped(let pa, var prop) = node.read(index).repr(level: 1) else {
            preconditionFailure("protecting an unmapped page in the boot page table")
        }
        op(&prop)
        // SAFETY: the boot table holds the locks of all its nodes.
        unsafe node.withHeld { $0.write(index, PageTableEntry(repr: .mapped(pa, prop), level: 1)) }
    }

    // MARK: Reading

    /// Translates `va` the way the MMU does: the physical address of the byte and the leaf's
    /// property as stored, or `nil` when nothing maps it (OSTD `page_walk` on the boot table's
    /// root).
    @_spi(OSTDInternals) public func pageWalk(_ va: Vaddr) -> (paddr: Paddr, property: PageProperty)? {
        var node = root
        var level = PagingConsts.nrLevels
        while true {
            switch node.read(PagingConsts.pteIndex(va, level)).repr(level: level) {
            case .absent:
                return nil
            case .mapped(let pa, let prop):
                return (pa + Int(va.rawValue & PagingConsts.offsetMask(level)), prop)
            case .pageTable(let child, _):
                guard level > 1 else { return nil }
                // SAFETY: a child entry of this table points at a node this table allocated.
                node = unsafe NodeRef(child, context)
                level -= 1
            }
        }
    }

    // MARK: Nodes

    /// Allocates an empty node one level below `level`, links it into entry `index` of `parent`
    /// and returns it (OSTD `alloc_child`).
    private func allocChild(of parent: NodeRef, at index: Int, level: PagingLevel) -> NodeRef {
        guard let child = context.allocNode(level: level - 1) else {
            preconditionFailure("Failed to allocate a page table node")
        }
        // SAFETY: the boot table holds the locks of all its nodes, `child` (born locked) included.
        unsafe parent.withHeld { held in
            held.write(index, .pageTable(child.paddr(context)))
            held.countChildren(+1)
        }
        return child
    }

    /// Replaces the huge leaf in entry `index` of `parent` (at `level`) with a node of 512 leaves
    /// one level down that map the same memory with the same property, and returns the node.
    private func splitHugePage(
        _ parent: NodeRef, at index: Int, level: PagingLevel, paddr: Paddr, prop: PageProperty
    ) -> NodeRef {
        guard let child = context.allocNode(level: level - 1) else {
            preconditionFailure("Failed to allocate a page table node")
        }
        // SAFETY: the boot table holds the locks of all its nodes, `child` (born locked) included.
        unsafe child.withHeld { $0.fillSplit(of: PageTableEntry(repr: .mapped(paddr, prop), level: level), level: level) }
        // Still one entry: no count change.
        unsafe parent.withHeld { $0.write(index, .pageTable(child.paddr(context))) }
        return child
    }

    /// Frees `node` and every node below it, children first (OSTD `dfs_walk_on_leave` in
    /// `dismiss`). Leaves are untracked and left alone.
    private static func freeSubtree(
        _ node: NodeRef, level: PagingLevel, context: MachineRef
    ) {
        if level > 1 && node.nrChildren > 0 {
            for i in 0..<PagingConsts.nrEntries {
                let pte = node.read(i)
                guard pte.isPresent && !pte.isLeaf else { continue }
                // SAFETY: the entry points at a node this table allocated and still owns; it is
                // cleared right after, so the node is freed exactly once.
                freeSubtree(unsafe NodeRef(pte.paddr(level: level), context), level: level - 1, context: context)
            }
        }
        // SAFETY: the boot table holds the node's lock; the guard clears it and releases it.
        let held = unsafe PageTableGuard(assumingLocked: node)
        for i in 0..<PagingConsts.nrEntries where node.read(i).isPresent { held.write(i, .absent) }
        held.setNrChildren(0)
        _ = consume held
        context.freeNode(node)
    }
}

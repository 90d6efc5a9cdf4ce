// A page table: a root node and the cursors that edit it (OSTD `page_table/mod.rs`).
//
// The nodes are frames of the simulated physical memory and the entries are real x86-64 entries,
// so `rootPaddr` is what a CPU would load into CR3. All editing goes through cursors, which lock
// the part of the tree they cover; `pageWalk` is the lock-free reader the MMU would be.
//
// Reclamation. OSTD leaves empty nodes behind; here a node whose last entry is removed is freed,
// so that unmapping everything brings the table back to its root. A freed node is first
// *retired*: detached, marked stray and unlocked. With `defersReclamation` off (the default) it is
// freed when the cursor that removed it is dropped; with it on, retired nodes wait in the table
// until `reclaimRetired()` is called, which is where a TLB flush and an RCU-style grace period
// plug in (the VmSpace layer does that).

// Sendable: the nodes are shared through physical memory under the node locks the cursors take
// (entries are atomics), the retired list under `retireLock`, and the other stored properties are
// immutable. Not yet: `defersReclamation` and `walkerCpus` are plain variables, set once before the
// table is shared (`VmSpace.init` sets `walkerCpus`); issue 15 makes them creation options.
/// A page table of configuration `C`.
public final class PageTable<C: PageTableConfig>: @unchecked Sendable {
    /// The machine whose frames hold the table.
    public let machine: Machine
    @usableFromInline let context: MachineRef
    @usableFromInline let root: NodeRef
    /// The kernel table whose level-3 nodes a user table shares: kept alive as long as this one.
    let kernel: PageTable<KernelPtConfig>?

    let retireLock = SpinLock()
    /// Retired nodes awaiting `reclaimRetired()`, owned (each holds the reference its parent
    /// entry held).
    var retiredNodes: [Paddr] = []
    /// Whether retired nodes wait for `reclaimRetired()` instead of being freed when the cursor
    /// that removed them is dropped.
    @_spi(OSTDInternals) public var defersReclamation = false
    /// The CPUs that may be walking this table (a `VmSpace`'s active CPUs). Before a retired
    /// node is freed, each of them is quiesced (`Platform.quiesce`): any walk it was in the
    /// middle of has finished.
    var walkerCpus: AtomicCpuSet?

    init(machine: Machine, root: NodeRef, kernel: PageTable<KernelPtConfig>?) {
        self.machine = machine
        context = machine.context
        self.root = root
        self.kernel = kernel
        root.unlock()
    }

    /// An empty table: a root with no entries (OSTD `PageTable::empty`).
    ///
    /// - Throws: `outOfMemory` when there is no frame for the root.
    @_spi(OSTDInternals) public convenience init(empty machine: Machine) throws(PageTableError) {
        guard let root = machine.context.allocNode(level: PagingConsts.nrLevels) else {
            throw .outOfMemory
        }
        self.init(machine: machine, root: root, kernel: nil)
    }

    deinit {
        reclaimRetired()
        context.tearDown(C.self, root)
    }

    /// The physical address of the root node: what CR3 holds when the table is active.
    public var rootPaddr: Paddr { root.paddr(context) }

    // MARK: Cursors

    /// A read-only cursor over `range` (OSTD `PageTable::cursor`).
    ///
    /// - Throws: `invalidVaddrRange` for an empty, reversed or out-of-configuration range;
    ///   `unalignedVaddr` when an end is not 4 KiB aligned.
    @_spi(OSTDInternals) public func cursor(_ range: Range<Vaddr>) throws(PageTableError) -> Cursor<C> {
        try Cursor(self, range, mutable: false)
    }

    /// A cursor that may map, unmap and protect in `range` (OSTD `PageTable::cursor_mut`).
    ///
    /// - Throws: as `cursor(_:)`.
    @_spi(OSTDInternals) public func cursorMut(_ range: Range<Vaddr>) throws(PageTableError) -> CursorMut<C> {
        CursorMut(try Cursor(self, range, mutable: true))
    }

    // MARK: Lock-free reads

    /// Translates `va` the way the MMU does, without locks (OSTD `page_walk`): the physical
    /// address of the byte and the leaf's property, or `nil` when nothing maps it.
    @inlinable
    public func pageWalk(_ va: Vaddr) -> (paddr: Paddr, property: PageProperty)? {
        guard let (leaf, offset) = translate(va) else { return nil }
        return (leaf.paddr + offset, leaf.property)
    }

    /// The leaf mapping `va` and the offset of `va` inside it, without locks.
    @inlinable
    public func translate(_ va: Vaddr) -> (leaf: MappedItemRef, offset: Int)? {
        var node = root
        var level = PagingConsts.nrLevels
        while true {
            let pte = node.read(PagingConsts.pteIndex(va, level))
            guard pte.isPresent else { return nil }
            if pte.isLeaf {
                let leaf = MappedItemRef(C.self, pte: pte, level: level)
                return (leaf, Int(va.rawValue & UInt64(PagingConsts.pageSize(level) - 1)))
            }
            if level == 1 { return nil }
            node = NodeRef(pte.paddr(level: level), context)
            level -= 1
        }
    }

    // MARK: Split costs

    /// The page-table nodes that splitting the huge leaves around `range`'s two ends takes: an end
    /// strictly inside a leaf of level 2 or 3 splits it into a node of smaller leaves, again as
    /// long as it falls strictly inside one of them. Exact while the caller holds a cursor over
    /// `range` (the leaves an end falls strictly inside overlap the range, so they are locked).
    func splitNodesNeeded(_ range: Range<Vaddr>) -> Int {
        var split: [(start: UInt64, level: PagingLevel)] = []
        for end in [range.lowerBound, range.upperBound] where end <= C.vaddrRange.upperBound {
            guard let (leaf, _) = translate(end) else { continue }
            var level = leaf.level
            while level >= 2 {
                let size = UInt64(PagingConsts.pageSize(level))
                guard end.rawValue % size != 0 else { break }
                let start = end.rawValue & ~(size - 1)
                if !split.contains(where: { $0 == (start, level) }) { split.append((start, level)) }
                level -= 1
            }
        }
        return split.count
    }

    // MARK: Reclamation

    /// Takes ownership of detached, empty nodes: frees them now, or keeps them for
    /// `reclaimRetired()` when reclamation is deferred.
    func retire(_ nodes: [Paddr]) {
        guard !nodes.isEmpty else { return }
        guard defersReclamation else {
            quiesceWalkers()
            for paddr in nodes { context.freeNode(NodeRef(paddr, context)) }
            return
        }
        retireLock.lock()
        retiredNodes.append(contentsOf: nodes)
        retireLock.unlock()
    }

    /// Frees every retired node: call once no CPU can still reach them (after the TLB flush and
    /// the grace period that follow their removal). Returns how many were freed.
    @discardableResult
    @_spi(OSTDInternals) public func reclaimRetired() -> Int {
        retireLock.lock()
        let nodes = retiredNodes
        retiredNodes = []
        retireLock.unlock()
        if !nodes.isEmpty { quiesceWalkers() }
        for paddr in nodes { context.freeNode(NodeRef(paddr, context)) }
        return nodes.count
    }

    /// Waits until no CPU that may walk this table is in the middle of a walk.
    func quiesceWalkers() {
        guard let walkerCpus else { return }
        for cpu in walkerCpus.load() { context.platform.quiesce(cpu) }
    }

    /// The number of retired nodes waiting for `reclaimRetired()`.
    @_spi(OSTDInternals) public var retiredCount: Int {
        retireLock.lock()
        defer { retireLock.unlock() }
        return retiredNodes.count
    }
}

extension PageTable where C == KernelPtConfig {
    /// The kernel table: a root whose entries 256 ..< 512 all point at level-3 nodes, allocated
    /// now and never removed, so that every user table can share them (OSTD
    /// `new_kernel_page_table`).
    ///
    /// - Throws: `outOfMemory` when the 257 nodes do not fit.
    public static func newKernelPageTable(machine: Machine) throws(PageTableError) -> PageTable<KernelPtConfig> {
        let table = try PageTable(empty: machine)
        for i in KernelPtConfig.topLevelIndexRange {
            guard let child = machine.context.allocNode(level: PagingConsts.nrLevels - 1) else {
                throw .outOfMemory   // `table` drops the nodes made so far
            }
            child.unlock()
            table.root.write(i, .pageTable(child.paddr(machine.context)))
            table.root.nrChildren += 1
        }
        return table
    }

    /// A user table sharing this kernel table's top-level entries 256 ..< 512 (OSTD
    /// `create_user_page_table`). The shared entries are copies without a reference: the user
    /// configuration never visits them, the kernel's never removes them, and the user table keeps
    /// this one alive. They are not counted in the user root's `nrChildren`.
    ///
    /// - Throws: `outOfMemory` when there is no frame for the root.
    @_spi(OSTDInternals) public func createUserPageTable() throws(PageTableError) -> PageTable<UserPtConfig> {
        guard let root = context.allocNode(level: PagingConsts.nrLevels) else { throw .outOfMemory }
        for i in KernelPtConfig.topLevelIndexRange { root.write(i, self.root.read(i)) }
        return PageTable<UserPtConfig>(machine: machine, root: root, kernel: self)
    }
}

// Page-table nodes: a node is a frame (OSTD `page_table/node/*`).
//
// The 4 KiB page of the frame holds the 512 entries the MMU walks; the bookkeeping lives in the
// frame's metadata slot, as OSTD's `PageTablePageMeta`:
//
//     storage offset 0  lock         UInt32, 0 unlocked / 1 locked, a spin lock (atomic)
//     storage offset 4  nr_children  UInt16, the number of present entries (changed under the lock)
//     storage offset 6  level        UInt8, fixed at allocation
//     storage offset 7  stray        UInt8, set when the node is detached from its parent
//
// Ownership follows OSTD: a parent entry owns its child (the child's handle is forgotten into the
// entry with `intoRaw`), the `PageTable` owns its root, and a detached subtree is owned by the
// `PageTableNode` handle that carries it. Every entry is read and written with atomic loads and
// stores (Acquire/Release when publishing a child), because the MMU, and lock-free walkers, read
// the table concurrently.

import Synchronization

/// The metadata of a page-table node (OSTD `PageTablePageMeta`).
@frozen
public struct PageTablePageMeta: FrameMeta {
    public static var typeTag: FrameMetaTag { FrameMetaTag(usage: .pageTable, typeID: 0x10, untyped: false) }

    @usableFromInline var lock: UInt32 = 0
    @usableFromInline var nrChildren: UInt16 = 0
    /// The node's level: 1 holds 4 KiB leaves, 4 is a root.
    public let level: PagingLevel
    @usableFromInline var stray: UInt8 = 0

    @inlinable
    init(level: PagingLevel) { self.level = level }
}

/// A non-owning view of a node: its entries and its metadata (OSTD `PageTableNodeRef` plus the
/// guard's accessors). Mutating accessors require the caller to hold the node's lock.
@frozen @usableFromInline
struct NodeRef: Equatable {
    /// The node's 512 entries in host memory (the linear mapping of its frame).
    @usableFromInline let entries: UnsafeMutablePointer<Atomic<UInt64>>
    /// The node's metadata storage.
    @usableFromInline let meta: UnsafeMutableRawPointer

    @inlinable @inline(__always)
    init(_ paddr: Paddr, _ context: UnsafeMutablePointer<MachineContext>) {
        // SAFETY: `paddr` is a page-table node's frame inside physical memory; its page holds 512
        // eight-byte entries that are only accessed atomically.
        entries = context.pointee.pointer(to: paddr).assumingMemoryBound(to: Atomic<UInt64>.self)
        meta = context.pointee.slot(of: paddr).storage
    }

    @inlinable @inline(__always)
    static func == (a: NodeRef, b: NodeRef) -> Bool { a.entries == b.entries }

    /// The node's physical address.
    @inlinable @inline(__always)
    func paddr(_ context: UnsafeMutablePointer<MachineContext>) -> Paddr {
        Paddr(UInt64(UnsafeMutableRawPointer(entries) - context.pointee.memoryBase))
    }

    // MARK: Entries

    /// Reads entry `index` (Acquire: a child published by another CPU is fully initialised).
    @inlinable @inline(__always)
    func read(_ index: Int) -> PageTableEntry {
        PageTableEntry(raw: (entries + index).pointee.load(ordering: .acquiring))
    }

    /// Writes entry `index` (Release). The old entry's ownership is the caller's business.
    @inlinable @inline(__always)
    func write(_ index: Int, _ pte: PageTableEntry) {
        (entries + index).pointee.store(pte.raw, ordering: .releasing)
    }

    // MARK: Metadata

    @inlinable @inline(__always)
    var lockWord: UnsafeMutablePointer<Atomic<UInt32>> {
        // SAFETY: offset 0 of the slot storage is the 4-byte aligned lock word of
        // `PageTablePageMeta`, only ever accessed atomically.
        meta.assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    /// The number of present entries (OSTD `nr_children`).
    @inlinable @inline(__always)
    var nrChildren: Int {
        get { Int(meta.load(fromByteOffset: 4, as: UInt16.self)) }
        nonmutating set { meta.storeBytes(of: UInt16(truncatingIfNeeded: newValue), toByteOffset: 4, as: UInt16.self) }
    }

    /// The node's level.
    @inlinable @inline(__always)
    var level: PagingLevel { meta.load(fromByteOffset: 6, as: UInt8.self) }

    /// Whether the node has been detached from the tree (OSTD `stray`).
    @inlinable @inline(__always)
    var isStray: Bool {
        get { meta.load(fromByteOffset: 7, as: UInt8.self) != 0 }
        nonmutating set { meta.storeBytes(of: newValue ? 1 : 0, toByteOffset: 7, as: UInt8.self) }
    }

    // MARK: Lock

    /// Spins until the node's lock is taken (OSTD `PageTableNodeRef::lock`).
    @inlinable @inline(__always)
    func lock() {
        while !lockWord.pointee.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged {
            while lockWord.pointee.load(ordering: .relaxed) != 0 {}
        }
    }

    /// Releases the lock (OSTD `Drop for PageTableGuard`).
    @inlinable @inline(__always)
    func unlock() {
        lockWord.pointee.store(0, ordering: .releasing)
    }

    /// Fills this new, empty node with the 512 leaves, one level down, that together map what
    /// the huge leaf `pte` at `level` did, with the same property and marker bits (the split of
    /// OSTD's `split_if_mapped_huge`).
    @usableFromInline
    func fillSplit(of pte: PageTableEntry, level: PagingLevel) {
        let base = pte.paddr(level: level).rawValue
        let step = UInt64(PagingConsts.pageSize(level - 1))
        let bits = pte.raw & ~PageTableEntry.childMask   // the property bits and the leaf bit
        for i in 0..<PagingConsts.nrEntries {
            write(i, PageTableEntry(raw: (base + UInt64(i) * step) | bits))
        }
        nrChildren = PagingConsts.nrEntries
    }

    /// Whether some thread holds the lock (for tests and audits).
    var isLocked: Bool { lockWord.pointee.load(ordering: .relaxed) != 0 }
}

extension UnsafeMutablePointer where Pointee == MachineContext {
    /// Allocates a zeroed node at `level`, born locked (OSTD `PageTableNode::alloc` followed by
    /// locking before publication), and forgets its handle: the caller stores it in an entry or
    /// a `PageTable`. Returns `nil` when memory is exhausted.
    @inlinable
    func allocNode(level: PagingLevel) -> NodeRef? {
        guard let index = allocFrame() else { return nil }
        let slot = pointee.slot(index: index)
        if _slowPath(slot.claimUnused() != nil) { allocatorReturnedInUse(pointee.paddr(of: slot)) }
        let paddr = pointee.paddr(of: slot)
        slot.zeroFrameIfTouched(pointee.pointer(to: paddr))
        var meta = PageTablePageMeta(level: level)
        meta.lock = 1
        let frame = Frame(initializing: slot, meta: meta, context: self)
        return NodeRef(frame.intoRaw(), self)
    }

    /// Drops the reference an entry (or a retired list) held on a node whose entries are all
    /// absent or already torn down.
    @inlinable
    func freeNode(_ node: NodeRef) {
        _ = Frame<PageTablePageMeta>(restoring: node.paddr(self), context: self)
    }
}

/// Drops references that page-table entries held (no handle, so no ledger entry) and returns
/// the frames left unreferenced to the allocator in contiguous runs.
struct FrameRuns {
    let context: UnsafeMutablePointer<MachineContext>
    var start = 0
    var count = 0

    init(context: UnsafeMutablePointer<MachineContext>) { self.context = context }

    mutating func dropReference(_ index: Int) {
        let slot = context.pointee.slot(index: index)
        guard slot.decRefCount(paddr: context.pointee.paddr(of: slot)) else { return }
        slot.storeUnused()
        if count > 0 && start + count == index {
            count += 1
            return
        }
        flush()
        start = index
        count = 1
    }

    mutating func flush() {
        if count > 0 { context.deallocRange(start, count: count) }
        count = 0
    }
}

extension Frame {
    /// Restores a handle forgotten into a page-table entry (the context-level `fromRaw`).
    @inlinable
    init(restoring paddr: Paddr, context: UnsafeMutablePointer<MachineContext>) {
        let slot = context.pointee.slot(of: paddr)
        context.pointee.ledger?.mint(context.pointee.frameIndex(of: slot))
        self.init(adopting: slot, context: context)
    }
}

/// An owned, detached subtree (OSTD `PageTableNode<C>` as carried by `StrayPageTable`). Dropping
/// it drops every node and every item in it: tracked frames lose the references their leaves
/// held (OSTD's `PageTablePageMeta::on_drop`).
@frozen
public struct PageTableNode<C: PageTableConfig>: ~Copyable {
    @usableFromInline let node: NodeRef
    @usableFromInline let context: UnsafeMutablePointer<MachineContext>

    @inlinable
    init(adopting node: NodeRef, context: UnsafeMutablePointer<MachineContext>) {
        self.node = node
        self.context = context
    }

    deinit { context.tearDown(C.self, node) }

    /// The node's physical address.
    public var paddr: Paddr { node.paddr(context) }
    /// The node's level.
    public var level: PagingLevel { node.level }
    /// The number of present entries.
    public var nrChildren: Int { node.nrChildren }
    /// Whether the node has been detached from a page table.
    public var isStray: Bool { node.isStray }

    /// Forgets the handle without dropping the subtree and returns the node's address; the
    /// caller tears it down later (`MachineContext.tearDown`).
    consuming func intoRaw() -> Paddr {
        let paddr = node.paddr(context)
        discard self
        return paddr
    }

    /// The 4 KiB pages that tracked leaves of this subtree map (frames a leaf of 2 MiB counts 512).
    public var trackedBasePages: Int { context.trackedBasePages(C.self, node, level: node.level) }
}

extension UnsafeMutablePointer where Pointee == MachineContext {
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

// A non-owning view of a page-table node: its 512 entries, read and written atomically, and its
// metadata (lock, `nrChildren`, level, stray), as OSTD's `PageTableNodeRef` and guard accessors.
// Mutating accessors require the caller to hold the node's lock.

import Synchronization

/// A non-owning view of a node: its entries and its metadata (OSTD `PageTableNodeRef` plus the
/// guard's accessors). Mutating accessors require the caller to hold the node's lock.
@frozen @usableFromInline
struct NodeRef: Equatable {
    /// The node's 512 entries in host memory (the linear mapping of its frame).
    @usableFromInline let entries: UnsafeMutablePointer<Atomic<UInt64>>
    /// The node's metadata storage.
    @usableFromInline let meta: UnsafeMutableRawPointer

    @inlinable @inline(__always)
    init(_ paddr: Paddr, _ context: MachineRef) {
        // SAFETY: `paddr` is a page-table node's frame inside physical memory; its page holds 512
        // eight-byte entries that are only accessed atomically.
        entries = context.pointer(to: paddr).assumingMemoryBound(to: Atomic<UInt64>.self)
        meta = context.slot(of: paddr).storage
    }

    @inlinable @inline(__always)
    static func == (a: NodeRef, b: NodeRef) -> Bool { a.entries == b.entries }

    /// The node's physical address.
    @inlinable @inline(__always)
    func paddr(_ context: MachineRef) -> Paddr {
        Paddr(UInt64(UnsafeMutableRawPointer(entries) - context.memoryBase))
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

    /// Replaces entry `index`, read as `old`, by `new` without losing the A and D bits the MMU
    /// set in it since (Release): a compare-exchange that, when it finds A or D newly set, ORs
    /// them into `new` and tries again. Only for a node whose lock the caller holds, whose
    /// entries then change only by the MMU setting A/D (`SimulatedMmu`).
    @inlinable @inline(__always)
    func update(_ index: Int, from old: PageTableEntry, to new: PageTableEntry) {
        var expected = old.raw
        var desired = new.raw
        while true {
            // SAFETY: `index < 512` and `entries` are this live node's entries; they are accessed only atomically.
            let (exchanged, current) = (entries + index).pointee.compareExchange(
                expected: expected, desired: desired, ordering: .acquiringAndReleasing)
            if exchanged { return }
            let appeared = current & ~expected
            precondition(appeared & ~(PageTableEntry.accessed | PageTableEntry.dirty) == 0 && expected & ~current == 0,
                         "a locked page-table entry changed other than by the MMU setting A/D")
            desired |= appeared
            expected = current
        }
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

    /// Sets the level of a node that is in no tree yet (a spare taken for a split); returns it.
    @inlinable @inline(__always)
    func relevelled(_ level: PagingLevel) -> NodeRef {
        meta.storeBytes(of: level, toByteOffset: 6, as: UInt8.self)
        return self
    }

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

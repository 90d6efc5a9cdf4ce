// A non-owning view of a page-table node, as OSTD's `PageTableNodeRef`: its 512 entries and its
// metadata (lock, `nrChildren`, level, stray), read atomically. It only reads; every write goes
// through the `PageTableGuard` that locking the node returns (`PageTableGuard.swift`).

import Synchronization

/// A non-owning view of a node: its entries and its metadata (OSTD `PageTableNodeRef`).
///
/// `@safe`: a view is made only by the `@unsafe` `init(_:_:)`, OSTD's `borrow_paddr`, whose
/// caller vouches that the node is live and stays so while the view is used: the table's root
/// (owned by the table), a child read from an entry inside a read-side section or under its
/// parent's lock, or a node the caller owns (allocated, detached, or being torn down). OSTD's
/// `PageTableNodeRef<'a>` carries that lifetime in its type; here it is the maker's promise.
/// Within it, `entries` are the node's 512 entries, accessed only atomically, and `meta` its
/// slot's storage (`PageTablePageMeta`).
@safe @frozen @usableFromInline
struct NodeRef: Equatable {
    /// The node's 512 entries in host memory (the linear mapping of its frame).
    @usableFromInline let entries: UnsafeMutablePointer<Atomic<UInt64>>
    /// The node's metadata storage.
    @usableFromInline let meta: UnsafeMutableRawPointer

    /// A view of the node at `paddr` (OSTD `PageTableNodeRef::borrow_paddr`).
    ///
    /// - Safety: `paddr` is a page-table node of `context`'s machine, which stays allocated while
    ///   the view (and every copy of it) is used: see the type.
    @unsafe @inlinable @inline(__always)
    init(_ paddr: Paddr, _ context: MachineRef) {
        // SAFETY: `paddr` is a page-table node's frame inside physical memory; its page holds 512
        // eight-byte entries that are only accessed atomically.
        unsafe entries = context.pointer(to: paddr).assumingMemoryBound(to: Atomic<UInt64>.self)
        unsafe meta = context.slot(of: paddr).storage
    }

    /// The node whose entries are at `entries` (a pointer a cursor kept of a node it holds).
    ///
    /// - Safety: as `init(_:_:)`: `entries` are those of a live node of `context`'s machine.
    @unsafe @inlinable @inline(__always)
    init(entries: UnsafeMutablePointer<Atomic<UInt64>>, _ context: MachineRef) {
        // SAFETY: the node's frame is `entries - memoryBase` in the linear mapping; its slot is
        // at `metaBase + frame / 4096 * 64`, that is `metaBase + frame / 64` (frames are 4 KiB
        // aligned).
        unsafe self.entries = entries
        unsafe meta = context.metaBase + ((UnsafeMutableRawPointer(entries) - context.memoryBase) &>> (pageShift &- MetaSlot.sizeShift))
    }

    /// The entries of the child node a non-leaf entry points to, for a walk that keeps the
    /// linear mapping's base at hand and reads only entries.
    ///
    /// - Safety: `pte` points at a live node of the machine whose memory starts at `memoryBase`.
    @unsafe @inlinable @inline(__always)
    static func childEntries(_ pte: PageTableEntry, memoryBase: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Atomic<UInt64>> {
        // SAFETY: the child's frame in the linear mapping (the caller's contract).
        unsafe (memoryBase + Int(truncatingIfNeeded: pte.raw & PageTableEntry.childMask)).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    @inlinable @inline(__always)
    static func == (a: NodeRef, b: NodeRef) -> Bool {
        // SAFETY: compares two addresses; neither is dereferenced.
        unsafe a.entries == b.entries
    }

    /// The node's physical address.
    @inlinable @inline(__always)
    func paddr(_ context: MachineRef) -> Paddr {
        // SAFETY: address arithmetic in the linear mapping; nothing is dereferenced.
        Paddr(UInt64(unsafe UnsafeMutableRawPointer(entries) - context.memoryBase))
    }

    // MARK: Entries

    /// Reads entry `index` (Acquire: a child published by another CPU is fully initialised).
    /// Without the node's lock the caller is in a read-side section, or owns the node.
    @inlinable @inline(__always)
    func read(_ index: Int) -> PageTableEntry {
        // SAFETY: `index < 512` (a page-table index) of this live node (see the type).
        unsafe NodeRef.read(entries, index)
    }

    /// Reads entry `index` of the node whose entries are at `entries` (as `read(_:)`, for a walk
    /// that keeps only entry pointers).
    ///
    /// - Safety: `entries` are a live node's entries for the whole call, and `index < 512`.
    @unsafe @inlinable @inline(__always)
    static func read(_ entries: UnsafeMutablePointer<Atomic<UInt64>>, _ index: Int) -> PageTableEntry {
        // SAFETY: inside the live node (the caller's contract); entries are accessed only
        // atomically.
        let raw = unsafe (entries + index).pointee.load(ordering: .acquiring)
        #if DEBUG
        if _slowPath(raw == PoisonReads.poison) { PoisonReads.count.add(1, ordering: .relaxed) }
        #endif
        return PageTableEntry(raw: raw)
    }

    // MARK: Metadata

    @inlinable @inline(__always)
    var lockWord: UnsafeMutablePointer<Atomic<UInt32>> {
        // SAFETY: offset 0 of the slot storage is the 4-byte aligned lock word of
        // `PageTablePageMeta`, only ever accessed atomically.
        unsafe meta.assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    // `nrChildren`, `level` and `stray` are plain bytes of the node's `PageTablePageMeta`,
    // written only by the lock holder (`PageTableGuard`) or, for a node in no tree yet, its
    // owner. The core reads them holding the lock or owning the node, or right after taking the
    // lock (its Acquire orders the last holder's writes first). Introspection
    // (`PageTable.forEachNode`) reads them without the lock: exact at a quiescent point, while
    // with a range and other cursors at work, an ancestor's count may be read while another
    // cursor changes it (a racy read of a live, aligned byte pair: a stale value for the audit).

    /// The number of present entries (OSTD `nr_children`).
    @inlinable @inline(__always)
    var nrChildren: Int {
        // SAFETY: offset 4 of the live node's metadata (see the type), read as the note above says.
        Int(unsafe meta.load(fromByteOffset: 4, as: UInt16.self))
    }

    /// The node's level.
    @inlinable @inline(__always)
    var level: PagingLevel {
        // SAFETY: offset 6 of the live node's metadata (see the type), read as the note above says.
        unsafe meta.load(fromByteOffset: 6, as: UInt8.self)
    }

    /// Whether the node has been detached from the tree (OSTD `stray`).
    @inlinable @inline(__always)
    var isStray: Bool {
        // SAFETY: offset 7 of the live node's metadata (see the type), read as the note above says.
        unsafe meta.load(fromByteOffset: 7, as: UInt8.self) != 0
    }

    // MARK: Lock

    /// Takes the node's lock, spinning and then yielding while another thread holds it (OSTD
    /// `PageTableNodeRef::lock`); the guard releases it.
    @inlinable @inline(__always)
    func lock(_ context: MachineRef) -> PageTableGuard {
        // SAFETY: the lock word of this live node, an atomic (see `lockWord`).
        if _slowPath(unsafe !lockWord.pointee.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged) {
            lockContended(context)
        }
        // SAFETY: the lock was just taken, by this thread, and the new guard is its only owner.
        return unsafe PageTableGuard(assumingLocked: self)
    }

    @usableFromInline @inline(never)
    func lockContended(_ context: MachineRef) {
        var backoff = Backoff(relax: context.rcu.relax)
        // SAFETY: the lock word of this live node, an atomic (see `lockWord`).
        repeat {
            while unsafe lockWord.pointee.load(ordering: .relaxed) != 0 { backoff.wait() }
        } while unsafe !lockWord.pointee.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged
    }

    /// Takes the node's lock if it is free, without waiting.
    @inlinable @inline(__always)
    func tryLock() -> PageTableGuard? {
        // SAFETY: the lock word of this live node, an atomic (see `lockWord`).
        guard unsafe lockWord.pointee.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged else { return nil }
        // SAFETY: as in `lock`.
        return unsafe PageTableGuard(assumingLocked: self)
    }

    /// Whether some thread holds the lock (for tests and audits).
    @_spi(OSTDInternals) public var isLocked: Bool {
        // SAFETY: the lock word of this live node, an atomic (see `lockWord`).
        unsafe lockWord.pointee.load(ordering: .relaxed) != 0
    }
}

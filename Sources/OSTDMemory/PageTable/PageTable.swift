// A page table: a root node and the cursors that edit it (OSTD `page_table/mod.rs`).
//
// The nodes are frames of the simulated physical memory and the entries are real x86-64 entries,
// so `rootPaddr` is what a CPU would load into CR3. All editing goes through cursors, which lock
// the part of the tree they cover; `pageWalk` is the lock-free reader the MMU would be.
//
// Reclamation. OSTD leaves empty nodes behind; here a node whose last entry is removed is freed,
// so that unmapping everything brings the table back to its root. A freed node is first
// *retired*: detached, marked stray and unlocked. When the cursor that removed it is dropped, it
// is handed to the machine, which frees it after a grace period: once no lock-free walk (a
// cursor's descent, `pageWalk`, a CPU's MMU) that might have reached it is still in flight
// (`MachineRef.dropAfterGracePeriod`, docs/CONCURRENCY.md).

import Synchronization

// Sendable: the nodes are shared through physical memory under the node locks the cursors take
// and the read-side sections of lock-free walks (entries are atomics); every stored property is
// immutable.
/// A page table of configuration `C`.
public final class PageTable<C: PageTableConfig>: @unchecked Sendable {
    /// The machine whose frames hold the table.
    public let machine: Machine
    @usableFromInline let context: MachineRef
    @usableFromInline let root: NodeRef
    /// The kernel table whose level-3 nodes a user table shares: kept alive as long as this one.
    let kernel: PageTable<KernelPtConfig>?

    init(machine: Machine, root: NodeRef, kernel: PageTable<KernelPtConfig>?) {
        self.machine = machine
        context = machine.context
        self.root = root
        self.kernel = kernel
        // SAFETY: the root was allocated locked and no guard owns it; publishing the table
        // releases it.
        _ = unsafe PageTableGuard(assumingLocked: root)
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
        // No thread holds this table any more, so no cursor or walk can be in it.
        context.tearDown(C.self, root, detached: false)
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

    /// Runs `body` with a read-only cursor over `range` that borrows the table for the call, as
    /// OSTD's cursors borrow `&'rcu PageTable`: no reference count is touched, so cursors of many
    /// CPUs over disjoint ranges share no cache line of the table object.
    ///
    /// - Throws: as `cursor(_:)`, or what `body` throws.
    @_spi(OSTDInternals) public func withCursor<R: ~Copyable, E: Error>(
        _ range: Range<Vaddr>, _ body: (inout Cursor<C>) throws(E) -> R
    ) throws(WithCursorError<E>) -> R {
        var cursor: Cursor<C>
        do { cursor = try Cursor(self, range, mutable: false, retaining: false) } catch { throw .pageTable(error) }
        // `self` lives until this method returns, and `cursor` is dropped before it does.
        do { return try body(&cursor) } catch { throw .body(error) }
    }

    /// `withCursor` with a cursor that may map, unmap and protect.
    @_spi(OSTDInternals) public func withCursorMut<R: ~Copyable, E: Error>(
        _ range: Range<Vaddr>, _ body: (inout CursorMut<C>) throws(E) -> R
    ) throws(WithCursorError<E>) -> R {
        var cursor: CursorMut<C>
        do { cursor = CursorMut(try Cursor(self, range, mutable: true, retaining: false)) } catch { throw .pageTable(error) }
        do { return try body(&cursor) } catch { throw .body(error) }
    }

    /// `cursorMut`, or `nil` at once when a node it would lock is locked by another cursor (or a
    /// node it would read is being removed): no waiting, and nothing taken or changed.
    ///
    /// - Throws: as `cursor(_:)`.
    @_spi(OSTDInternals) public func tryCursorMut(_ range: Range<Vaddr>) throws(PageTableError) -> CursorMut<C>? {
        guard let cursor = try Cursor.tryLocking(self, range, mutable: true) else { return nil }
        return CursorMut(cursor)
    }

    // MARK: Lock-free reads

    /// Translates `va` the way the MMU does, without locks (OSTD `page_walk`): the physical
    /// address of the byte and the leaf's property, or `nil` when nothing maps it. The walk runs
    /// in a read-side section of its own; `withReadSection` runs many walks in one.
    @inlinable
    public func pageWalk(_ va: Vaddr) -> (paddr: Paddr, property: PageProperty)? {
        let section = context.readSection()
        return pageWalk(va, in: section)
    }

    /// `pageWalk` inside the caller's read-side section.
    @inlinable @inline(__always)
    public func pageWalk(_ va: Vaddr, in section: borrowing RcuReadGuard) -> (paddr: Paddr, property: PageProperty)? {
        guard let (leaf, offset) = translate(va, in: section) else { return nil }
        return (leaf.paddr + offset, leaf.property)
    }

    /// The leaf mapping `va` and the offset of `va` inside it, without locks, in a read-side
    /// section of its own.
    @inlinable
    public func translate(_ va: Vaddr) -> (leaf: MappedItemRef, offset: Int)? {
        let section = context.readSection()
        return translate(va, in: section)
    }

    /// Runs `body` inside one read-side section (OSTD's RCU read lock): lock-free walks made
    /// with it (`pageWalk(_:in:)`, `translate(_:in:)`) read nodes that stay allocated until
    /// `body` returns. Keep it short: freeing detached nodes waits for it.
    @inlinable
    public func withReadSection<R: ~Copyable, E: Error>(_ body: (borrowing RcuReadGuard) throws(E) -> R) throws(E) -> R {
        let section = context.readSection()
        return try body(section)
    }

    /// `translate` inside the caller's read-side section. Always inlined: a caller that reads
    /// only the address does not pay for decoding the property.
    @inlinable @inline(__always)
    public func translate(_ va: Vaddr, in section: borrowing RcuReadGuard) -> (leaf: MappedItemRef, offset: Int)? {
        // Unrolled, each level a constant. Every node below the root is read from an entry inside
        // `section`: it stays allocated. Only the entries are read, so only their addresses are
        // formed.
        // SAFETY: the machine's linear mapping and the root's entries, live as long as the table;
        // the steps below use them only as the section allows.
        let memoryBase = unsafe context.memoryBase
        var entries = unsafe root.entries
        var pte = PageTableEntry.absent
        // SAFETY (the three steps): `entries` is a live node: the root, or a child read from an
        // entry inside `section`, not freed before the section ends.
        // No leaf sits at level 4 (`highestTranslationLevel` is 3).
        guard unsafe walkStep(&entries, &pte, va, 4, memoryBase) else { return nil }
        if unsafe !walkStep(&entries, &pte, va, 3, memoryBase) { return leafOrNil(pte, va, 3) }
        if unsafe !walkStep(&entries, &pte, va, 2, memoryBase) { return leafOrNil(pte, va, 2) }
        // SAFETY: as above.
        pte = unsafe walkRead(entries, va, 1)
        return leafOrNil(pte, va, 1)
    }

    /// Reads the entry covering `va` in the node at `entries` of `level` into `pte`, and moves
    /// `entries` to its child node: `true` when there is one (the entry is present and not a
    /// leaf).
    ///
    /// - Safety: `entries` are a live node's entries, and its children stay live for the walk.
    @unsafe @inlinable @inline(__always)
    func walkStep(_ entries: inout UnsafeMutablePointer<Atomic<UInt64>>, _ pte: inout PageTableEntry, _ va: Vaddr,
                  _ level: PagingLevel, _ memoryBase: UnsafeMutableRawPointer) -> Bool {
        pte = unsafe walkRead(entries, va, level)
        guard pte.isPresent && !pte.isLeaf else { return false }
        // SAFETY: the child is live (the caller's contract).
        unsafe entries = NodeRef.childEntries(pte, memoryBase: memoryBase)
        return true
    }

    /// The leaf `pte` at `level` and the offset of `va` in it, or `nil` when `pte` is absent.
    @inlinable @inline(__always)
    func leafOrNil(_ pte: PageTableEntry, _ va: Vaddr, _ level: PagingLevel) -> (leaf: MappedItemRef, offset: Int)? {
        guard pte.isLeaf else { return nil }
        return (MappedItemRef(C.self, pte: pte, level: level), Int(va.rawValue & PagingConsts.offsetMask(level)))
    }

    /// The entry covering `va` in the node at `entries` of `level` (Acquire, as `NodeRef.read`).
    ///
    /// - Safety: `entries` are a live node's entries for the whole call.
    @unsafe @inlinable @inline(__always)
    func walkRead(_ entries: UnsafeMutablePointer<Atomic<UInt64>>, _ va: Vaddr, _ level: PagingLevel) -> PageTableEntry {
        // SAFETY: a live node (the caller's contract); a page-table index is below 512.
        unsafe NodeRef.read(entries, PagingConsts.pteIndex(va, level))
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
                let size = PagingConsts.pageSpan(level)
                guard end.rawValue % size != 0 else { break }
                let start = end.rawValue & ~(size - 1)
                if !split.contains(where: { $0 == (start, level) }) { split.append((start, level)) }
                level -= 1
            }
        }
        return split.count
    }
}

/// Why `withCursor` / `withCursorMut` failed: the cursor could not be created, or the body threw.
public enum WithCursorError<E: Error>: Error {
    case pageTable(PageTableError)
    case body(E)
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
            // SAFETY: `child` was allocated locked and no guard owns it; this publishes and releases it.
            _ = unsafe PageTableGuard(assumingLocked: child)
            let root = table.root.lock(machine.context)
            root.write(i, .pageTable(child.paddr(machine.context)))
            root.countChildren(+1)
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
        // SAFETY: the new root was allocated locked and is published only below.
        unsafe root.withHeld { held in
            for i in KernelPtConfig.topLevelIndexRange { held.write(i, self.root.read(i)) }
        }
        return PageTable<UserPtConfig>(machine: machine, root: root, kernel: self)
    }
}

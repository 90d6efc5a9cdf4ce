// The page-table cursor: a locked range of the tree and a position in it (OSTD
// `page_table/cursor/mod.rs`).
//
// A cursor covers `barrierVa`, the range it was created for, and holds the locks of every node
// of the smallest subtree that covers it that overlaps the range (see `Locking.swift`): its lock
// set. It keeps no guards for them; it edits and releases them through guards made from that
// invariant (`NodeRef.withHeld`, `PageTableGuard.init(assumingLocked:)`), and nodes it allocates
// or splits into join the set. `path[L - 1]` is the node at level
// `L` on the way from that subtree's root (at `guardLevel`) down to the cursor's current `level`;
// the slot the cursor is at is the entry of `path[level - 1]` that covers `va`. Moving only
// pushes and pops levels; nothing here waits for another cursor once the cursor exists.
//
// `Cursor` only reads. `CursorMut` (its own file) adds map, take and protect.

import Synchronization

/// A read-only cursor over a range of a page table (OSTD `Cursor`).
///
/// `@safe`: its raw pointers are the entries of the nodes of its lock set (`nodes`), which stay
/// allocated and locked by it until its `deinit` releases them, and its table is kept alive as
/// `pageTable` says.
@safe @_spi(OSTDInternals) public struct Cursor<C: PageTableConfig>: ~Copyable {
    /// The table, not retained: `owner` keeps it alive, or the scope of `withCursor` /
    /// `withCursorMut` does (a retain here would be a contended atomic on the table's shared
    /// reference count for every cursor of every CPU).
    // SAFETY: every use relies on the table outliving the cursor: `owner` holds it, or the
    // cursor was made by `withCursor`/`withCursorMut`, which drop it before they return.
    @usableFromInline unowned(unsafe) let pageTable: PageTable<C>
    /// The table, retained, for a cursor that may outlive its creator's reference; `nil` for a
    /// cursor that borrows the table for a scope.
    @usableFromInline let owner: PageTable<C>?
    @usableFromInline let context: MachineRef
    /// `nodes[L - 1]`: the entries of the locked node at level `L`, for `level ... guardLevel`;
    /// the slots below `level` hold nodes the cursor has left, and are never read (`path` shows
    /// them as `nil`). Neither optional nor a whole `NodeRef`, so that moving down stores one
    /// word and moving up loads nothing; `currentNode` forms the node's metadata address when
    /// an edit needs it.
    @usableFromInline var nodes: InlineArray<4, UnsafeMutablePointer<Atomic<UInt64>>>
    /// The level of the slot the cursor is at.
    @usableFromInline var level: PagingLevel
    /// The level of the locked subtree's root; the cursor never goes above it.
    @usableFromInline var guardLevel: PagingLevel
    /// The current virtual address.
    @usableFromInline var va: Vaddr
    /// The range the cursor was created for and owns (OSTD `barrier_va`).
    @_spi(OSTDInternals) public let barrierVa: Range<Vaddr>
    /// Whether the cursor may allocate and free nodes (a `CursorMut`).
    @usableFromInline let isMutable: Bool
    /// Nodes detached by this cursor, handed to the table when it is dropped.
    @usableFromInline var retired: [Paddr] = []
    /// Nodes reserved for huge-leaf splits (`CursorMut.reserveSplitNodes`), born locked and not
    /// yet in the tree; splits take them before allocating, and the rest are freed on drop.
    @usableFromInline var spareNodes: [NodeRef] = []
    /// The last property encoded (`encodedBits`), packed (`PageProperty.packed`), and its bits
    /// without AVAIL1: a run of maps or protects that write one property encodes it once.
    /// Always a matching pair.
    @usableFromInline var lastProperty = PageProperty(flags: [], cache: .writeback).packed
    @usableFromInline var lastPropertyBits = PageProperty(flags: [], cache: .writeback).leafBits & ~PageTableEntry.avail1
    /// The last leaf bits decoded (`decodedProperty`, the address masked off) and their
    /// property: a run of protects over pages of one property decodes it once. Always a
    /// matching pair.
    @usableFromInline var lastDecodedBits: UInt64 = 0
    @usableFromInline var lastDecoded = PageProperty(leafBits: 0)

    /// Validates `range`, finds and locks the subtree that covers it, and starts at its start
    /// (OSTD `Cursor::new`), waiting for cursors that hold locks it needs. With `retaining`
    /// off, the caller guarantees that the table outlives the cursor.
    /// The table is borrowed (a retain only when the cursor keeps it, `retaining`).
    init(_ pageTable: borrowing PageTable<C>, _ range: Range<Vaddr>, mutable: Bool, retaining: Bool = true) throws(PageTableError) {
        try Cursor.validate(range)
        let (subtreeRoot, rootLevel) = Cursor.lockSubtreeRoot(pageTable, range, allocating: mutable, blocking: true)!
        _ = Cursor.dfsAcquireLock(subtreeRoot, level: rootLevel, range: range, context: pageTable.context, blocking: true)
        self.init(pageTable, range, mutable: mutable, locked: subtreeRoot, at: rootLevel, retaining: retaining)
    }

    /// `init(_:_:mutable:)` without waiting: `nil` when another cursor holds a lock it needs,
    /// having taken and changed nothing.
    static func tryLocking(_ pageTable: PageTable<C>, _ range: Range<Vaddr>, mutable: Bool) throws(PageTableError) -> Cursor? {
        try validate(range)
        guard let (subtreeRoot, rootLevel) = lockSubtreeRoot(pageTable, range, allocating: mutable, blocking: false)
        else { return nil }
        guard dfsAcquireLock(subtreeRoot, level: rootLevel, range: range, context: pageTable.context, blocking: false) else {
            // SAFETY: the subtree root was locked above and no guard owns it.
            _ = unsafe PageTableGuard(assumingLocked: subtreeRoot)
            return nil
        }
        return Cursor(pageTable, range, mutable: mutable, locked: subtreeRoot, at: rootLevel, retaining: true)
    }

    /// Refuses an empty, reversed, out-of-configuration or unaligned range.
    @inline(__always)
    static func validate(_ range: Range<Vaddr>) throws(PageTableError) {
        guard C.isValidRange(range) else { throw .invalidVaddrRange(range.lowerBound, range.upperBound) }
        guard range.lowerBound.isAligned(to: pageSize) else { throw .unalignedVaddr(range.lowerBound) }
        guard range.upperBound.isAligned(to: pageSize) else { throw .unalignedVaddr(range.upperBound) }
    }

    /// A cursor at the start of `range` whose lock set, rooted at `subtreeRoot` at `rootLevel`,
    /// has been taken.
    private init(_ pageTable: borrowing PageTable<C>, _ range: Range<Vaddr>, mutable: Bool,
                 locked subtreeRoot: NodeRef, at rootLevel: PagingLevel, retaining: Bool) {
        // SAFETY: stored unretained; `owner` or the caller's scope keeps the table alive for as
        // long as the cursor (the `retaining` contract).
        unsafe self.pageTable = copy pageTable
        owner = retaining ? copy pageTable : nil
        context = pageTable.context
        barrierVa = range
        isMutable = mutable
        va = range.lowerBound
        // SAFETY: stores the root's entry pointer (the lock set's node, see `nodes`).
        unsafe nodes = InlineArray(repeating: subtreeRoot.entries)
        level = rootLevel
        guardLevel = rootLevel
    }

    deinit {
        // SAFETY: the lock set's root, a live node of this machine.
        let subtreeRoot = unsafe NodeRef(entries: nodes[Int(guardLevel) - 1], context)
        // Read while the lock is still held: afterwards another cursor may own the node.
        let leftEmpty = isMutable && guardLevel < PagingConsts.nrLevels && subtreeRoot.nrChildren == 0
        dfsReleaseLock(subtreeRoot, level: guardLevel)
        if !spareNodes.isEmpty { releaseSpareNodes() }
        var detached = retired
        if leftEmpty { detached += reclaimEmptyAncestors() }
        // What `PageTable.retire` does, through the cursor's own machine reference: the table is
        // not touched, so not retained.
        context.retire(detached)
    }

    /// Frees the nodes reserved for splits that no split took. They were never published, so no
    /// walker can be in them.
    @usableFromInline @inline(never)
    func releaseSpareNodes() {
        for node in spareNodes {
            // SAFETY: a spare node was allocated locked by this cursor, and no guard owns it.
            _ = unsafe PageTableGuard(assumingLocked: node)
            context.freeNode(node)
        }
    }

    // MARK: Position

    /// The current virtual address (OSTD `virt_addr`).
    @inlinable
    @_spi(OSTDInternals) public var virtAddr: Vaddr { va }

    /// The level of the slot the cursor is at.
    @_spi(OSTDInternals) public var currentLevel: PagingLevel { level }

    /// The level of the locked subtree's root.
    @_spi(OSTDInternals) public var lockedLevel: PagingLevel { guardLevel }

    /// The virtual range of the current slot (OSTD `cur_va_range`); it may extend past
    /// `barrierVa`. A slot ending at 2^64 is reported as ending at `UInt64.max`.
    @inlinable @inline(__always)
    @_spi(OSTDInternals) public var curVaRange: Range<Vaddr> { slotRange(at: level) }

    // MARK: Queries

    /// The current slot's whole range and what maps it, without moving (OSTD `query`): for a huge
    /// page the full huge range even when the cursor is inside it; for an absent entry the range
    /// of that entry at its level.
    ///
    /// - Throws: `invalidVaddr(va)` when the cursor is at or past the end of its range.
    @inlinable @inline(__always)
    @_spi(OSTDInternals) public mutating func query() throws(PageTableError) -> (range: Range<Vaddr>, item: MappedItemRef?) {
        guard va < barrierVa.upperBound else { throw .invalidVaddr(va) }
        // Unrolled: each step's level is a constant, so its shifts, sizes and path slot are too.
        // SAFETY (the steps): `memoryBase` is this machine's linear mapping, which the steps
        // use only to form the addresses of nodes in the lock set.
        let memoryBase = unsafe context.memoryBase
        switch level {
        case 4:
            if let found = unsafe queryStep(4, memoryBase) { return found }
            fallthrough
        case 3:
            // SAFETY: as above.
            if let found = unsafe queryStep(3, memoryBase) { return found }
            fallthrough
        case 2:
            // SAFETY: as above.
            if let found = unsafe queryStep(2, memoryBase) { return found }
            fallthrough
        default:
            // Level 1 holds only leaves (bit 7 is set on every leaf, PAT at this level).
            let pte = currentEntry(at: 1)
            let range = slotRange(at: 1)
            return (range, pte.isLeaf ? MappedItemRef(C.self, pte: pte, level: 1) : nil)
        }
    }

    /// One step of `query` at `stepLevel`, the cursor's level: the answer when the slot is
    /// absent or a leaf, or `nil` having moved down into the child node.
    @inlinable @inline(__always)
    mutating func queryStep(_ stepLevel: PagingLevel, _ memoryBase: UnsafeMutableRawPointer) -> (range: Range<Vaddr>, item: MappedItemRef?)? {
        let pte = currentEntry(at: stepLevel)
        if !pte.isPresent { return (slotRange(at: stepLevel), nil) }
        if pte.isLeaf { return (slotRange(at: stepLevel), MappedItemRef(C.self, pte: pte, level: stepLevel)) }
        level = stepLevel &- 1
        // SAFETY: the child covering `va` overlaps the range, so it is in the cursor's lock set,
        // a live node of this machine; `stepLevel` is 2 ... 4, so the index is 0 ... 2.
        unsafe nodes[unchecked: Int(stepLevel) &- 2] = NodeRef.childEntries(pte, memoryBase: memoryBase)
        return nil
    }

    /// Moves to the first mapped address in `va ..< va + len` and returns it, or returns `nil`
    /// having moved to `min(va + len, barrierVa.upperBound)` (OSTD `find_next`). The address may
    /// be inside a huge page.
    ///
    /// - Precondition: `len` is a multiple of 4 KiB and at most what remains of the range ("len
    ///   exceeds remaining cursor range").
    @inlinable
    @_spi(OSTDInternals) public mutating func findNext(_ len: Int) -> Vaddr? {
        // Without splitting nothing is allocated, so nothing can fail.
        (try? findNextImpl(len, findUnmapSubtree: false, splitHuge: false)) == true ? va : nil
    }

    /// Moves to `va`, anywhere in the cursor's range (OSTD `jump`).
    ///
    /// - Throws: `invalidVaddr(va)` when `va` is outside `barrierVa` (its end is outside too).
    /// - Precondition: `va` is 4 KiB aligned.
    @inlinable
    @_spi(OSTDInternals) public mutating func jump(_ target: Vaddr) throws(PageTableError) {
        precondition(target.isAligned(to: pageSize), "jump to an unaligned virtual address \(target)")
        guard barrierVa.contains(target) else { throw .invalidVaddr(target) }
        // Up to the lowest level whose node covers both addresses: the node at level `L` covers
        // the address bits below `12 + 9 L`, so the highest differing bit `b` needs
        // `L = (b - 12) / 9 + 1`. Going up only raises `level`: the nodes above stay in `nodes`.
        let differing = target.rawValue ^ va.rawValue
        if differing &>> PagingConsts.indexShift(level &+ 1) != 0 {
            let highestBit = UInt(truncatingIfNeeded: 63 &- differing.leadingZeroBitCount)
            let needed = PagingLevel(truncatingIfNeeded: (highestBit &- UInt(pageShift)) / UInt(PagingConsts.indexBits) &+ 1)
            level = min(needed, guardLevel)
        }
        va = target
    }

    /// The leaf entry for `raw` in this table, with the tracked marker.
    @inlinable @inline(__always)
    mutating func leafEntry(_ raw: MappedItemRef) -> PageTableEntry {
        // The item's own AVAIL1 is dropped (`encodedBits`): the marker says what the item is.
        PageTableEntry(raw: raw.paddr.rawValue | encodedBits(raw.property) | C.markerBits(tracked: raw.isTracked))
    }

    /// `prop.leafBits` without AVAIL1 (the page table's marker, which its callers set or keep
    /// themselves), remembered for the next call. One comparison of the packed property.
    @inlinable @inline(__always)
    mutating func encodedBits(_ prop: PageProperty) -> UInt64 {
        let packed = prop.packed
        if lastProperty != packed {
            lastProperty = packed
            lastPropertyBits = prop.leafBits & ~PageTableEntry.avail1
        }
        return lastPropertyBits
    }

    /// The property of the leaf `pte` at `level`, remembered for the next call.
    @inlinable @inline(__always)
    mutating func decodedProperty(_ pte: PageTableEntry, level: PagingLevel) -> PageProperty {
        let bits = pte.raw & ~PageTableEntry.paMask(level)
        if bits != lastDecodedBits {
            lastDecodedBits = bits
            lastDecoded = PageProperty(leafBits: bits)
        }
        return lastDecoded
    }

    // MARK: Movement (internal)

    /// The index of the current slot in the current node.
    @inlinable @inline(__always)
    var currentIndex: Int { PagingConsts.pteIndex(va, level) }

    /// The node the cursor is in: `nodes[level - 1]`.
    @inlinable @inline(__always)
    var currentNode: NodeRef {
        // SAFETY: `1 <= level <= guardLevel <= 4`, and `nodes` holds the lock set's node at every
        // level from `level` to `guardLevel` (pushLevel fills it on the way down).
        unsafe NodeRef(entries: nodes[unchecked: Int(level) &- 1], context)
    }

    /// `currentNode`, for a caller that knows the cursor's level (so that the path slot is a
    /// constant, not an index into a copy of `nodes`).
    @inlinable @inline(__always)
    func currentNode(at knownLevel: PagingLevel) -> NodeRef {
        // SAFETY: `knownLevel` is the cursor's level (the caller's word), so as `currentNode`.
        unsafe NodeRef(entries: nodes[unchecked: Int(knownLevel) &- 1], context)
    }

    /// The entry of the current slot.
    @inlinable @inline(__always)
    func currentEntry() -> PageTableEntry { currentNode.read(currentIndex) }

    /// The entry of the current slot, for a caller that knows the cursor's level.
    @inlinable @inline(__always)
    func currentEntry(at knownLevel: PagingLevel) -> PageTableEntry {
        // SAFETY: `knownLevel` is the cursor's level (the caller's word), so as `currentNode`.
        unsafe NodeRef.read(nodes[unchecked: Int(knownLevel) &- 1], PagingConsts.pteIndex(va, knownLevel))
    }

    /// The range of the current slot at `knownLevel` (`curVaRange` at a level the caller knows).
    @inlinable @inline(__always)
    func slotRange(at knownLevel: PagingLevel) -> Range<Vaddr> {
        let start = va.rawValue & ~PagingConsts.offsetMask(knownLevel)
        let end = start &+ PagingConsts.pageSpan(knownLevel)
        // SAFETY: `start < end`, or `end` wrapped to 0 and `.max` stands for 2^64 (as in
        // `curVaRange` says): the bounds are ordered.
        return unsafe Range(uncheckedBounds: (Vaddr(start), Vaddr(end == 0 ? .max : end)))
    }

    /// The lock set's nodes on the way down to the cursor's level, as OSTD's `path` (an
    /// `Option` per level): `path[L - 1]` is the node at level `L` for `level ... guardLevel`,
    /// `nil` elsewhere.
    var path: InlineArray<4, NodeRef?> {
        // SAFETY: the slots from `level` to `guardLevel` hold the lock set's live nodes.
        InlineArray { i in i >= Int(level) - 1 && i < Int(guardLevel) ? unsafe NodeRef(entries: nodes[i], context) : nil }
    }

    /// Goes down into `child`, the node of the current slot (locked by this cursor).
    @inlinable @inline(__always)
    mutating func pushLevel(_ child: NodeRef) {
        level &-= 1
        // SAFETY: the cursor was above level 1 (it went into a child), so `level - 1` is 0 ... 2.
        unsafe nodes[unchecked: Int(level) &- 1] = child.entries
    }

    /// Goes up one level (the node stays locked: it is part of the cursor's subtree).
    @inlinable @inline(__always)
    mutating func popLevel() {
        // The cursor was below `guardLevel`, whose node `nodes` holds (see `currentNode`).
        level &+= 1
    }

    /// Moves to the start of the next slot at the current level, going up while that is the
    /// first slot of its node (OSTD `move_forward`). Past the top of the address space the cursor
    /// stops at the end of its range.
    @inlinable @inline(__always)
    mutating func moveForward() { advance(to: curSlotEnd) }

    /// The end of the current slot (0 when it is 2^64).
    @inlinable @inline(__always)
    var curSlotEnd: UInt64 {
        (va.rawValue & ~PagingConsts.offsetMask(level)) &+ PagingConsts.pageSpan(level)
    }

    /// Moves to `next` (an address after `va` and at most the end of the current slot; 0 stands
    /// for 2^64), going up while it is the start of a node's range (OSTD `move_forward`'s loop).
    @inlinable @inline(__always)
    mutating func advance(to next: UInt64) { advance(to: next, from: level) }

    /// `advance(to:)` for a caller that knows the cursor's level, `knownLevel`: the test of the
    /// common case then uses a constant mask.
    @inlinable @inline(__always)
    mutating func advance(to next: UInt64, from knownLevel: PagingLevel) {
        // Most moves stay inside the node (`next` does not start its parent entry's range, so it
        // is not 2^64 either).
        if next & PagingConsts.offsetMask(knownLevel &+ 1) != 0 {
            va = Vaddr(next)
            return
        }
        va = next == 0 ? barrierVa.upperBound : Vaddr(next)
        // Up while `next` starts the range of the node's parent entry: `next` has `t` trailing
        // zero bits, and the node at level `L` starts a parent entry when `t >= 12 + 9 L`, so the
        // cursor stops at `L = (t - 12) / 9 + 1` (2^64, `t = 64`, goes up to the guard level).
        // Never down: after `takeCurrent` removed empty nodes the cursor may already be above
        // the level of the slot `next` ends.
        let zeros = UInt(truncatingIfNeeded: next.trailingZeroBitCount)
        let stop = PagingLevel(truncatingIfNeeded: (zeros &- UInt(pageShift)) / UInt(PagingConsts.indexBits) &+ 1)
        level = max(level, min(stop, guardLevel))
    }

    /// The scan behind `findNext`, `takeNext` and `protectNext` (OSTD `find_next_impl`): stops at
    /// the first slot in `va ..< va + len` that holds a leaf — or, with `findUnmapSubtree`, a
    /// child node whose whole range is inside — and returns `true`. With `splitHuge`, a huge leaf
    /// the range covers only in part is split and the scan goes on inside it. Empty child nodes
    /// are skipped. On `false` the cursor is at `va + len`. Throws `outOfMemory` when a split
    /// finds no frame for its node; the cursor is then at the huge leaf, and the mappings are
    /// unchanged (splits made higher up map the same memory in smaller pieces).
    @inlinable @inline(__always)
    mutating func findNextImpl(_ len: Int, findUnmapSubtree: Bool, splitHuge: Bool) throws(PageTableError) -> Bool {
        precondition(len % pageSize == 0, "len \(len) is not a multiple of the page size")
        precondition(len >= 0 && va <= barrierVa.upperBound && len <= barrierVa.upperBound - va,
                     "len exceeds remaining cursor range")
        let end = va.rawValue + UInt64(len)
        while va.rawValue < end {
            let pte = currentEntry()
            if !pte.isPresent {
                moveForward()
                continue
            }
            let size = PagingConsts.pageSpan(level)
            let slotStart = va.rawValue & ~(size - 1)
            let covered = va.rawValue == slotStart && end &- slotStart >= size
            if pte.isLeaf {
                if !splitHuge || level == 1 || covered { return true }
                guard let child = splitHugeLeaf(pte) else { throw .outOfMemory }
                pushLevel(child)
                continue
            }
            if findUnmapSubtree && covered && (C.topLevelCanUnmap || level < PagingConsts.nrLevels) {
                return true
            }
            // SAFETY: the child covering `va` overlaps the range, so it is in the cursor's lock set.
            let child = unsafe NodeRef(pte.paddr(level: level), context)
            if child.nrChildren == 0 {
                moveForward()
                continue
            }
            pushLevel(child)
        }
        // The last slot may end past `end`; the cursor stops at `end` (its node covers it).
        if va.rawValue > end { va = Vaddr(end) }
        return false
    }

    /// Replaces the huge leaf of the current slot with a new node of 512 leaves one level down
    /// that map the same memory with the same property, and returns the node (locked). The
    /// leaf's references move to the 512 new leaves unchanged (OSTD `split_if_mapped_huge`).
    /// Returns `nil`, changing nothing, when no frame is free for the node.
    @usableFromInline
    mutating func splitHugeLeaf(_ pte: PageTableEntry) -> NodeRef? {
        guard let child = spareNodes.popLast() ?? context.allocNode(level: level - 1) else { return nil }
        // SAFETY: `child` was allocated locked by this cursor (now or as a spare) and joins its
        // lock set; the current node is in the lock set too.
        unsafe child.withHeld { node in
            node.setLevel(level - 1)
            #if DEBUG
            if context.hasMutant(.splitLosesProperty) {
                node.fillSplit(of: PageTableEntry(raw: pte.raw & ~PageTableEntry.writable), level: level)
                return
            }
            #endif
            node.fillSplit(of: pte, level: level)
        }
        unsafe currentNode.withHeld { $0.write(currentIndex, .pageTable(child.paddr(context))) }
        return child
    }
}

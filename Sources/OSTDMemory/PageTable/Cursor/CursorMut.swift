// The mutable cursor: map, take (unmap) and protect (OSTD `CursorMut`).
//
// As in OSTD, `map`, `takeNext` and `protectNext` are unsafe (`@unsafe`, OSTD's `unsafe fn`): the
// page table cannot tell whether an item may be mapped at an address, or whether what it removes
// is still reachable through a TLB. `VmSpace.CursorMut` is the safe way in: it maps only user
// items in user space and keeps what it removes until every TLB has been flushed.
//
// Every operation keeps the tree's bookkeeping exact: `nrChildren` of each node counts its present
// entries, each node has exactly one parent entry, and a node whose last entry goes is detached
// at once (below the cursor's subtree root) or when the cursor is dropped (the subtree root and
// its ancestors). Huge leaves are split on demand and never merged back.

/// A cursor that can change the page table (OSTD `CursorMut`).
@_spi(OSTDInternals) public struct CursorMut<C: PageTableConfig>: ~Copyable {
    @usableFromInline var inner: Cursor<C>

    init(_ inner: consuming Cursor<C>) { self.inner = inner }

    // MARK: Reading (as `Cursor`)

    /// The current virtual address.
    @inlinable public var virtAddr: Vaddr { inner.va }
    /// The range the cursor owns.
    @_spi(OSTDInternals) public var barrierVa: Range<Vaddr> { inner.barrierVa }
    /// The level of the slot the cursor is at.
    @_spi(OSTDInternals) public var currentLevel: PagingLevel { inner.level }
    /// The level of the locked subtree's root.
    @_spi(OSTDInternals) public var lockedLevel: PagingLevel { inner.guardLevel }
    /// The current slot's range.
    @_spi(OSTDInternals) public var curVaRange: Range<Vaddr> { inner.curVaRange }

    /// See `Cursor.query()`.
    @inlinable
    @_spi(OSTDInternals) public mutating func query() throws(PageTableError) -> (range: Range<Vaddr>, item: MappedItemRef?) {
        try inner.query()
    }

    /// See `Cursor.findNext(_:)`.
    @inlinable
    @_spi(OSTDInternals) public mutating func findNext(_ len: Int) -> Vaddr? { inner.findNext(len) }

    /// See `Cursor.jump(_:)`.
    @_spi(OSTDInternals) public mutating func jump(_ va: Vaddr) throws(PageTableError) { try inner.jump(va) }

    // MARK: Map

    /// Maps `item` at the current address and moves past it (OSTD `CursorMut::map`). Missing
    /// nodes are allocated; a huge leaf in the way means the slot is mapped (OSTD splits it first,
    /// then panics; we do not split).
    ///
    /// - Precondition (OSTD's panics): the address is inside the range with room for the page
    ///   ("cursor virtual address out-of-bound for mapping"), aligned to the item's page size
    ///   ("cursor virtual address not aligned for mapping"), the level is mappable ("cursor level
    ///   not suitable for mapping"), the slot is empty ("mapping over an already mapped page"),
    ///   and a node can be allocated. `tryMap` reports the same as errors.
    @unsafe
    @inlinable @inline(__always)
    @_spi(OSTDInternals) public mutating func map(_ item: consuming MappedItem) {
        let raw = item.info
        if inner.slotReadyForPage(raw) { return inner.commitMap(item.intoRaw(), at: 1) }
        do throws(PageTableError) {
            try inner.prepareSlot(for: raw)
        } catch {
            mapFailed(error)
        }
        inner.commitMap(item.intoRaw(), at: inner.level)
    }

    /// Maps `item` like `map`, or hands it back with the reason when it cannot be mapped. On
    /// failure the page table is unchanged and no frame is lost.
    @unsafe
    @_spi(OSTDInternals) public mutating func tryMap(_ item: consuming MappedItem) -> MapFailure? {
        let raw = item.info
        if inner.slotReadyForPage(raw) {
            inner.commitMap(item.intoRaw(), at: 1)
            return nil
        }
        do throws(PageTableError) {
            try inner.prepareSlot(for: raw)
        } catch {
            return MapFailure(item: item, error: error)
        }
        inner.commitMap(item.intoRaw(), at: inner.level)
        return nil
    }

    // MARK: Take

    /// Removes the first leaf, or the first whole subtree, that starts in `va ..< va + len`, and
    /// moves past it (OSTD `take_next`). A huge leaf the range covers in part is split first. The
    /// fragment owns what was removed; drop it after the TLB flush.
    ///
    /// - Returns: `nil` when nothing in the range is mapped; the cursor is then at the end of it.
    /// - Precondition: as `findNext` ("len exceeds remaining cursor range"), and a split finds a
    ///   frame for its node (OSTD panics; `tryTakeNext` throws instead).
    @unsafe
    @inlinable @inline(__always)
    @_spi(OSTDInternals) public mutating func takeNext(_ len: Int) -> PageTableFrag<C>? {
        do throws(PageTableError) {
            // SAFETY: `takeNext`'s own contract (above) is `tryTakeNext`'s.
            return try unsafe tryTakeNext(len)
        } catch {
            splitFailed()
        }
    }

    /// `takeNext`, throwing `outOfMemory` when a huge page must be split and no frame is free for
    /// the new node. Nothing is removed then, and the mappings are unchanged.
    @unsafe
    @inlinable @inline(__always)
    @_spi(OSTDInternals) public mutating func tryTakeNext(_ len: Int) throws(PageTableError) -> PageTableFrag<C>? {
        guard try inner.findNextImpl(len, findUnmapSubtree: true, splitHuge: true) else { return nil }
        let slotEnd = inner.curSlotEnd
        let frag = inner.takeCurrent()
        inner.reclaimEmptyPath()
        inner.advance(to: slotEnd)
        return frag
    }

    // MARK: Transactions

    /// Makes sure that removing or protecting everything in `va ..< va + len` cannot run out of
    /// memory: reserves the page-table nodes that splitting the huge leaves at the range's two
    /// ends takes (a `takeNext` or `protectNext` loop over the range splits nothing else). The
    /// cursor keeps the nodes for its splits and frees what is left when it is dropped.
    ///
    /// - Returns: `nil` when the nodes are reserved (or none are needed); otherwise the number of
    ///   nodes needed, and nothing changed.
    /// - Precondition: as `takeNext`.
    package mutating func reserveSplitNodes(_ len: Int) -> Int? {
        precondition(len % pageSize == 0, "len \(len) is not a multiple of the page size")
        precondition(len >= 0 && len <= inner.barrierVa.upperBound - inner.va, "len exceeds remaining cursor range")
        // SAFETY: the table outlives the cursor (`owner`, or the scope that borrowed it).
        let needed = unsafe inner.pageTable.splitNodesNeeded(inner.va..<(inner.va + len))
        var reserved: [NodeRef] = []
        for _ in 0..<needed {
            guard let node = inner.context.allocNode(level: 1) else {
                for node in reserved {
                    // SAFETY: allocated locked just above, never published, owned by no guard.
                    _ = unsafe PageTableGuard(assumingLocked: node)
                    inner.context.freeNode(node)
                }
                return needed
            }
            reserved.append(node)
        }
        inner.spareNodes += reserved
        return nil
    }

    // MARK: Protect

    /// Applies `op` to the property of the first leaf in `va ..< va + len`, splitting a huge leaf
    /// the range covers in part, and moves past it (OSTD `protect_next`). The entry is written
    /// only if the property changed. No TLB flush is done: that is the caller's.
    ///
    /// `AVAIL1` belongs to the page table: whatever `op` does with it is undone.
    ///
    /// Accessed and dirty bits: `op` sees `.accessed` / `.dirty` as the entry held them when it
    /// was read, and what it leaves in them is written, as in OSTD (so an `op` may clear them,
    /// as page aging does). The MMU may set A or D while `op` runs (the cursor's lock does not
    /// stop a CPU's walk): the entry is written with a compare-exchange, and bits that appeared
    /// since the read are ORed into the new entry and the exchange retried, without calling
    /// `op` again (`NodeRef.update`). So no A/D set by an access is lost.
    ///
    /// - Returns: the protected leaf's range, or `nil` when nothing in the range is mapped.
    /// - Precondition: as `takeNext` (`tryProtectNext` throws instead of panicking).
    @unsafe
    @inlinable @inline(__always)
    @_spi(OSTDInternals) public mutating func protectNext(_ len: Int, _ op: (inout PageProperty) -> Void) -> Range<Vaddr>? {
        do throws(PageTableError) {
            // SAFETY: `protectNext`'s own contract (above) is `tryProtectNext`'s.
            return try unsafe tryProtectNext(len, op)
        } catch {
            splitFailed()
        }
    }

    /// `protectNext`, throwing `outOfMemory` when a huge page must be split and no frame is free
    /// for the new node. No property changes then.
    @unsafe
    @inlinable @inline(__always)
    @_spi(OSTDInternals) public mutating func tryProtectNext(
        _ len: Int, _ op: (inout PageProperty) -> Void
    ) throws(PageTableError) -> Range<Vaddr>? {
        // Wrapping: `findNextImpl` checks `len` (a bad one panics there), and only a debug build
        // reads `end` (`protectCurrent`).
        let end = Vaddr(inner.va.rawValue &+ UInt64(truncatingIfNeeded: len))
        // Fast path: a 4 KiB leaf at the cursor, as at every step of a run after the first. One
        // unsigned test is `0 < len <= barrierVa.upperBound - va` (the cursor is never past its
        // range's end); any other `len`, good or bad, takes the general path.
        let bytes = UInt64(truncatingIfNeeded: len)
        if inner.level == 1 && bytes & PagingConsts.offsetMask(1) == 0
            && bytes &- 1 < inner.barrierVa.upperBound.rawValue &- inner.va.rawValue {
            let pte = inner.currentEntry(at: 1)
            // SAFETY: `tryProtectNext`'s own contract is `protectCurrent`'s.
            if pte.isLeaf { return unsafe protectCurrent(pte, level: 1, end: end, op) }
        }
        guard try inner.findNextImpl(len, findUnmapSubtree: false, splitHuge: true) else { return nil }
        // SAFETY: as above.
        return unsafe protectCurrent(inner.currentEntry(), level: inner.level, end: end, op)
    }

    /// Applies `op` to the leaf `pte` of the current slot, at `level` (the cursor's), and moves
    /// past it; `end` is the end of the range being protected.
    ///
    /// - Safety: as `protectNext`.
    @unsafe @inlinable @inline(__always)
    mutating func protectCurrent(_ pte: PageTableEntry, level: PagingLevel, end: Vaddr,
                                 _ op: (inout PageProperty) -> Void) -> Range<Vaddr> {
        var prop = inner.decodedProperty(pte, level: level)
        op(&prop)
        // The address and the page table's AVAIL1 marker stay; everything else comes from `prop`.
        let kept = pte.raw & (PageTableEntry.paMask(level) | PageTableEntry.avail1)
        let updated = kept | inner.encodedBits(prop)
        let slotEnd = (inner.va.rawValue & ~PagingConsts.offsetMask(level)) &+ PagingConsts.pageSpan(level)
        let range = inner.slotRange(at: level)
        #if DEBUG
        if inner.context.hasMutant(.protectNextSkipsLastPage) && range.upperBound == end {
            inner.moveForward()
            return range
        }
        #endif
        if updated != pte.raw {
            let index = PagingConsts.pteIndex(inner.va, level)
            // SAFETY: the current node is in the cursor's lock set.
            unsafe inner.currentNode(at: level).withHeld { $0.update(index, from: pte, to: PageTableEntry(raw: updated)) }
        }
        inner.advance(to: slotEnd, from: level)
        return range
    }
}

@usableFromInline @inline(never)
func splitFailed() -> Never {
    preconditionFailure("Failed to allocate a page table node (splitting a huge page)")
}

/// An item `tryMap` could not map, handed back, and why.
public struct MapFailure: ~Copyable {
    @_spi(OSTDInternals) public var item: MappedItem
    @_spi(OSTDInternals) public var error: PageTableError
}

@usableFromInline @inline(never)
func mapFailed(_ error: PageTableError) -> Never {
    switch error {
    case .invalidVaddr: preconditionFailure("cursor virtual address out-of-bound for mapping")
    case .unalignedVaddr: preconditionFailure("cursor virtual address not aligned for mapping")
    case .unsuitableLevel: preconditionFailure("cursor level not suitable for mapping")
    case .alreadyMapped: preconditionFailure("mapping over an already mapped page")
    case .outOfMemory: preconditionFailure("Failed to allocate a page table node")
    default: preconditionFailure("cannot map: \(error)")
    }
}

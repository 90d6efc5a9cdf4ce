// The fast path of a one-page map (the page-fault path's `VmSpace.mapPage`).
//
// A cursor over one 4 KiB page locks exactly one node: the level-1 node covering the page, found
// by the lock-free descent of `Locking.swift` (its step 1; step 2 has nothing more to lock). When
// that node exists, as it does for every fault but the first in a 2 MiB region, this file does the
// same without building a cursor: it walks down inside a read-side section, locks the node, checks
// that it was not detached meanwhile (stray), and fills the slot under the lock, raising
// `nrChildren`, as `CursorMut.map` does. When a node on the way is missing, the cursor's own
// descent (`Cursor.lockSubtreeRoot`, allocating, step 1 of `Locking.swift`) builds the missing
// nodes and locks the new level-1 node, and the entry is filled the same way: a cursor's set-up
// and drop are left out, not its locks. Anything else (a huge leaf on the way, no memory for a
// node, a stray node) is declined, and the caller takes the general cursor path, which retries
// stray descents and reports every error.

import Synchronization

extension PageTable {
    /// What `tryMapPage` did.
    @usableFromInline
    enum PageMapAttempt: ~Copyable {
        /// The item is mapped; the entry owns its references.
        case mapped
        /// The slot is mapped already: the item is handed back, nothing changed.
        case alreadyMapped(MappedItem)
        /// The fast path does not apply: the item is handed back for the general path.
        case declined(MappedItem)
    }

    /// Maps the 4 KiB `item` at `va`, holding the lock of the level-1 node covering `va` as a
    /// one-page cursor would; that node and any missing above it are allocated as a cursor's
    /// descent allocates them.
    ///
    /// - Safety: as `CursorMut.map`: whoever the table is for may access the item's page.
    @unsafe @usableFromInline
    func tryMapPage(_ item: consuming MappedItem, at va: Vaddr) -> PageMapAttempt {
        let info = item.info
        guard info.level == 1, va.isAligned(to: pageSize), va.rawValue <= UInt64.max - UInt64(pageSize),
              C.isValidRange(va..<(va + pageSize)) else { return .declined(item) }
        let section = context.readSection()
        // SAFETY (the three steps): the root lives as long as the table; each child is read from
        // an entry inside `section`, so it is not freed before the section ends.
        let memoryBase = unsafe context.memoryBase
        var entries = unsafe root.entries
        var pte = PageTableEntry.absent
        // SAFETY: as above, each step's node live inside `section`.
        guard unsafe walkStep(&entries, &pte, va, 4, memoryBase), unsafe walkStep(&entries, &pte, va, 3, memoryBase),
              unsafe walkStep(&entries, &pte, va, 2, memoryBase) else {
            _ = consume section
            // SAFETY: the caller's contract, passed on.
            return unsafe mapPageAllocating(item, at: va)
        }
        // SAFETY: a node reached inside `section` (above), so live while it is locked or the
        // section lasts.
        let node = unsafe NodeRef(entries: entries, context)
        let locked = node.lock(context)
        // Detached after our lock-free read: the general path starts again from the root.
        guard !locked.node.isStray else { return .declined(item) }
        // Locked and in the tree: it cannot be detached (and freed) until we unlock it.
        _ = consume section
        // SAFETY: the caller's contract, passed on.
        return unsafe fill(locked, with: item, at: va)
    }

    /// `tryMapPage` when a node on the way is missing (or a huge leaf is there): the cursor's
    /// allocating descent locks the level-1 node covering `va`, building what is missing. Out of
    /// line: a fault meets it once per rebuilt leaf node.
    ///
    /// - Safety: as `tryMapPage`.
    @unsafe @inline(never)
    func mapPageAllocating(_ item: consuming MappedItem, at va: Vaddr) -> PageMapAttempt {
        let (node, level) = Cursor<C>.lockSubtreeRoot(self, va..<(va + pageSize), allocating: true, blocking: true)!
        // SAFETY: `lockSubtreeRoot` returns its node locked by the caller, and not stray.
        let locked = unsafe PageTableGuard(assumingLocked: node)
        // A huge leaf on the way, or no memory for a node: the general path decides (and its
        // cursor's drop reclaims any node left empty here).
        guard level == 1 else { return .declined(item) }
        // SAFETY: the caller's contract, passed on.
        return unsafe fill(locked, with: item, at: va)
    }

    /// Fills `va`'s slot of the locked level-1 node with `item`, as `CursorMut.map` does, and
    /// unlocks it.
    ///
    /// - Safety: as `tryMapPage`.
    @unsafe @inline(__always)
    func fill(_ locked: consuming PageTableGuard, with item: consuming MappedItem, at va: Vaddr) -> PageMapAttempt {
        let info = item.info
        let index = PagingConsts.pteIndex(va, 1)
        if _slowPath(locked.node.read(index).isPresent) { return .alreadyMapped(item) }
        var prop = info.property
        prop.flags.remove(.avail1)
        var entry = PageTableEntry(raw: info.paddr.rawValue | prop.leafBits | C.markerBits(tracked: info.isTracked))
        #if DEBUG
        if context.hasMutant(.mapWritesWrongPaddr) { entry = PageTableEntry(raw: entry.raw &+ UInt64(pageSize)) }
        #endif
        locked.write(index, entry)
        locked.countChildren(+1)
        _ = item.intoRaw()
        return .mapped
    }
}

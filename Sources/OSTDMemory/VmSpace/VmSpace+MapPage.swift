// Mapping one page: what a page-fault handler does on every first touch, without the general
// cursor's set-up.
//
// `mapPage` is `cursorMut(va ..< va + 4096)` followed by `tryMap`, with the same locks: the
// cursor's lock-free descent to the level-1 node covering the page (allocating missing nodes,
// born locked) and that node's lock, held while the entry is written and the child count raised.
// `PageTable.tryMapPage` does this without building a cursor at all (when a node is missing, with
// the cursor's own allocating descent); what it declines (a huge leaf on the way, no memory for a
// node, a stray node) a borrowed page-table cursor does. What it leaves out is what a one-page map never
// uses: the `VmSpace` cursor's TLB flusher (a map only fills an empty slot, so nothing is
// flushed) and the retains of the space and table, which the borrowed, scoped page-table cursor
// (`PageTable.withCursorMut`) does not take. An audited space takes the general path, so that its
// auditor sees the cursor and the map as usual.

extension VmSpace {
    /// Maps `frame` at the page `va` with `property`: `cursorMut(va ..< va + 4096)` then
    /// `tryMap`, for the page-fault path.
    ///
    /// - Throws: `pageTable(.alreadyMapped)` when the page is mapped already (another CPU's
    ///   handler may have resolved the same fault first), `pageTable(.invalidVaddrRange)` /
    ///   `.unalignedVaddr` for an address outside user space or not 4 KiB aligned,
    ///   `outOfMemory(frames: 1)` when a missing page-table node finds no frame. Nothing is
    ///   mapped then, and `frame` is dropped (its reference returned), never leaked.
    public func mapPage<M: AnyUFrameMeta>(_ frame: consuming Frame<M>, at va: Vaddr, _ property: PageProperty) throws(OSTDError) {
        guard va.rawValue <= UInt64.max - UInt64(pageSize) else { throw .pageTable(.invalidVaddrRange(va, va)) }
        let item = MappedItem(frame: frame, property: property)
        if auditor != nil { return try mapPageWithCursor(item, at: va) }
        // SAFETY: as `VmSpace.CursorMut.map`: a tracked untyped frame, owned by the item, in a
        // user range (the user configuration's range check refuses anything else).
        switch unsafe pageTable.tryMapPage(item, at: va) {
        case .mapped: return
        case .alreadyMapped: throw .pageTable(.alreadyMapped(va))
        case .declined(let declined): try mapPageThroughCursor(declined, at: va)
        }
    }

    /// `mapPage` through a `VmSpace` cursor, for an audited space: its auditor sees the cursor
    /// and the map as usual. Out of line, as the next function, so that the fast path's frame
    /// holds no cursor.
    @inline(never)
    func mapPageWithCursor(_ item: consuming MappedItem, at va: Vaddr) throws(OSTDError) {
        var cursor = try cursorMut(va..<(va + pageSize))
        if let failure = cursor.tryMap(item) { throw OSTDError(failure.error) }
    }

    /// `mapPage` where `PageTable.tryMapPage` declined: through a borrowed page-table cursor.
    @inline(never)
    func mapPageThroughCursor(_ item: consuming MappedItem, at va: Vaddr) throws(OSTDError) {
        var item = Optional(item)
        do {
            try pageTable.withCursorMut(va..<(va + pageSize)) { cursor throws(PageTableError) in
                // SAFETY: as in `mapPage` (a tracked untyped frame in a user range).
                if let failure = unsafe cursor.tryMap(item.take()!) { throw failure.error }
            }
        } catch {
            switch error {
            case .pageTable(let cause), .body(let cause): throw OSTDError(cause)
            }
        }
    }
}

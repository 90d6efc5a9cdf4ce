// The cursors of a `VmSpace` (OSTD `vm_space::{Cursor, CursorMut}`).
//
// They wrap the page-table cursors. A mutable one carries a `TlbFlusher`: `unmap` issues a flush
// per removed leaf or subtree, keeping what it removed until the flush, and dispatches before it
// returns; `protectNext` leaves flushing to the caller (`flusher`), as in OSTD.

/// What a query found at a mapped address (OSTD `VmQueriedItem`).
public enum VmQueriedItem: Equatable, Sendable {
    /// Frames of RAM owned by the mapping (OSTD `MappedRam`).
    case mappedRam(paddr: Paddr, level: PagingLevel, property: PageProperty)
    /// Physical memory the mapping does not own (OSTD `MappedIoMem`).
    case mappedUntracked(paddr: Paddr, level: PagingLevel, property: PageProperty)

    init(_ leaf: MappedItemRef) {
        self = leaf.isTracked
            ? .mappedRam(paddr: leaf.paddr, level: leaf.level, property: leaf.property)
            : .mappedUntracked(paddr: leaf.paddr, level: leaf.level, property: leaf.property)
    }

    /// The first physical address of the leaf.
    public var paddr: Paddr {
        switch self {
        case .mappedRam(let paddr, _, _), .mappedUntracked(let paddr, _, _): return paddr
        }
    }

    /// The leaf's level (1: 4 KiB, 2: 2 MiB, 3: 1 GiB).
    public var level: PagingLevel {
        switch self {
        case .mappedRam(_, let level, _), .mappedUntracked(_, let level, _): return level
        }
    }

    /// The mapping's property (OSTD `prop()`).
    public var property: PageProperty {
        switch self {
        case .mappedRam(_, _, let property), .mappedUntracked(_, _, let property): return property
        }
    }
}

extension VmSpace {
    /// A read-only cursor over part of a space (OSTD `vm_space::Cursor`).
    public struct Cursor: ~Copyable {
        var ptCursor: OSTDMemory.Cursor<UserPtConfig>
        /// The space's auditor, when the space is audited.
        let audit: SpaceAudit?

        /// Tells the auditor before `ptCursor` releases the locks.
        deinit {
            guard audit != nil else { return }
            audit!.auditor.didDropCursor(auditState, in: audit!.space)
        }

        /// The current virtual address.
        public var virtAddr: Vaddr { ptCursor.virtAddr }

        /// The slot at the current address: its range and what maps it, if anything.
        ///
        /// - Throws: `pageTable(invalidVaddr)` when the cursor is at the end of its range.
        public mutating func query() throws(OSTDError) -> (range: Range<Vaddr>, item: VmQueriedItem?) {
            guard audit != nil else { return try Cursor.query(&ptCursor) }
            return try audited(.query, { c throws(OSTDError) in try Cursor.query(&c.ptCursor) }) {
                .queried(range: $0.range, item: $0.item)
            }
        }

        /// Moves to the first mapped address in `virtAddr ..< virtAddr + len` (OSTD `find_next`).
        public mutating func findNext(_ len: Int) -> Vaddr? {
            guard audit != nil else { return ptCursor.findNext(len) }
            return audited(.findNext(len: len), { c in c.ptCursor.findNext(len) }) { .found($0) }
        }

        /// Moves to `va` inside the cursor's range (OSTD `jump`).
        public mutating func jump(_ va: Vaddr) throws(OSTDError) {
            guard audit != nil else { return try Cursor.jump(&ptCursor, to: va) }
            try audited(.jump(to: va), { c throws(OSTDError) in try Cursor.jump(&c.ptCursor, to: va) }) { _ in .done }
        }

        /// `query` on a page-table cursor, as a space reports it (shared with `CursorMut`).
        static func query(_ cursor: inout OSTDMemory.Cursor<UserPtConfig>) throws(OSTDError) -> (range: Range<Vaddr>, item: VmQueriedItem?) {
            let (range, leaf) = try pageTableCall { () throws(PageTableError) in try cursor.query() }
            return (range, leaf.map(VmQueriedItem.init))
        }

        /// `jump` on a page-table cursor, as a space reports it (shared with `CursorMut`).
        static func jump(_ cursor: inout OSTDMemory.Cursor<UserPtConfig>, to va: Vaddr) throws(OSTDError) {
            try pageTableCall { () throws(PageTableError) in try cursor.jump(va) }
        }
    }

    /// A cursor that maps, unmaps and protects part of a space (OSTD `vm_space::CursorMut`).
    public struct CursorMut: ~Copyable {
        var ptCursor: OSTDMemory.CursorMut<UserPtConfig>
        /// The TLB flushes this cursor has issued and not yet dispatched (OSTD `flusher()`).
        public var flusher: TlbFlusher
        /// The space's auditor, when the space is audited.
        let audit: SpaceAudit?

        /// Tells the auditor before `ptCursor` releases the locks.
        deinit {
            guard audit != nil else { return }
            audit!.auditor.didDropCursor(auditState, in: audit!.space)
        }

        /// The current virtual address.
        public var virtAddr: Vaddr { ptCursor.virtAddr }

        /// See `Cursor.query()`.
        public mutating func query() throws(OSTDError) -> (range: Range<Vaddr>, item: VmQueriedItem?) {
            guard audit != nil else { return try Cursor.query(&ptCursor.inner) }
            return try audited(.query, { c throws(OSTDError) in try Cursor.query(&c.ptCursor.inner) }) {
                .queried(range: $0.range, item: $0.item)
            }
        }

        /// See `Cursor.findNext(_:)`.
        public mutating func findNext(_ len: Int) -> Vaddr? {
            guard audit != nil else { return ptCursor.findNext(len) }
            return audited(.findNext(len: len), { c in c.ptCursor.findNext(len) }) { .found($0) }
        }

        /// See `Cursor.jump(_:)`.
        public mutating func jump(_ va: Vaddr) throws(OSTDError) {
            guard audit != nil else { return try Cursor.jump(&ptCursor.inner, to: va) }
            try audited(.jump(to: va), { c throws(OSTDError) in try Cursor.jump(&c.ptCursor.inner, to: va) }) { _ in .done }
        }

        /// Maps `frame` at the current address with `property` and moves past it (OSTD
        /// `CursorMut::map`). No flush is needed: nothing was mapped there.
        ///
        /// - Precondition: the page is not mapped ("mapping over an already mapped page"), and the
        ///   address is in range and aligned (OSTD's panics).
        public mutating func map<M: AnyUFrameMeta>(_ frame: consuming Frame<M>, _ property: PageProperty) {
            // What makes `map(_:)` sound here: a tracked untyped frame in user space, the item
            // owns its reference, and the cursor's range is a user range (the page table's
            // configuration checks it).
            map(MappedItem(frame: frame, property: property))
        }

        /// Maps any item: a huge page (a segment of 512 or 512² frames) or untracked memory.
        ///
        /// - Precondition: as `map(_:_:)`.
        public mutating func map(_ item: consuming MappedItem) {
            guard audit != nil else {
                // SAFETY: as `map(_:_:)`; an untracked item maps physical memory its creator
                // vouched for (`MappedItem(untracked:)`).
                return unsafe ptCursor.map(item)
            }
            let operation = VmSpaceOperation(mapping: item.info)
            var item = Optional(item)
            audited(operation, { c in unsafe c.ptCursor.map(item.take()!) }) { _ in .done }   // SAFETY: as above.
        }

        /// Maps `item`, or hands it back with the reason: nothing changes then.
        public mutating func tryMap(_ item: consuming MappedItem) -> MapFailure? {
            guard audit != nil else {
                // SAFETY: as `map(_:)`.
                return unsafe ptCursor.tryMap(item)
            }
            let operation = VmSpaceOperation(mapping: item.info)
            var item = Optional(item)
            return audited(operation, { c in unsafe c.ptCursor.tryMap(item.take()!) }) {   // SAFETY: as `map(_:)`.
                switch $0 {
                case .some(let failure): .failed(OSTDError(failure.error))
                case .none: .done
                }
            }
        }

        /// Unmaps every page in `virtAddr ..< virtAddr + len`, flushes the TLB of every CPU where
        /// the space is active, and only then frees what was unmapped (OSTD `unmap`). Unmapping
        /// nothing is fine.
        ///
        /// - Returns: the number of 4 KiB frames the removed tracked mappings held.
        /// - Precondition: `len` is a multiple of 4 KiB and within the cursor's range (OSTD's
        ///   panics); a huge page split finds a frame for its node.
        @discardableResult
        public mutating func unmap(_ len: Int) -> Int {
            guard audit != nil else { return unmapUnaudited(len) }
            return audited(.unmap(len: len), { c in c.unmapUnaudited(len) }) { _ in .done }
        }

        mutating func unmapUnaudited(_ len: Int) -> Int {
            let end = virtAddr + len
            var frames = 0
            // SAFETY: every fragment is kept by the flusher until every CPU has flushed it.
            while virtAddr < end, let fragment = unsafe ptCursor.takeNext(end - virtAddr) {
                frames += flusher.issueTlbFlush(removing: fragment)
            }
            flusher.dispatchTlbFlush()
            return frames
        }

        /// `unmap`, as a transaction: when splitting the huge pages at the range's ends needs
        /// page-table nodes that cannot be had, it throws and changes nothing.
        ///
        /// - Returns: the number of 4 KiB frames the removed tracked mappings held.
        /// - Throws: `outOfMemory(frames:)` with the number of nodes the splits need.
        /// - Precondition: as `unmap`.
        public mutating func tryUnmap(_ len: Int) throws(OSTDError) -> Int {
            guard audit != nil else { return try tryUnmapUnaudited(len) }
            return try audited(.unmap(len: len), { c throws(OSTDError) in try c.tryUnmapUnaudited(len) }) { _ in .done }
        }

        mutating func tryUnmapUnaudited(_ len: Int) throws(OSTDError) -> Int {
            if let needed = ptCursor.reserveSplitNodes(len) { throw .outOfMemory(frames: needed) }
            return unmapUnaudited(len)
        }

        /// Applies `op` to every mapping in `virtAddr ..< virtAddr + len`, as a transaction, and
        /// flushes the TLBs of the changed pages on every CPU where the space is active (a loop
        /// of `protectNext` with its flushes, which OSTD leaves to the caller). When splitting the
        /// huge pages at the range's ends needs nodes that cannot be had, it throws and changes
        /// nothing.
        ///
        /// - Returns: the number of 4 KiB pages whose mappings `op` was applied to.
        /// - Throws: `outOfMemory(frames:)` with the number of nodes the splits need.
        /// - Precondition: as `protectNext`.
        public mutating func tryProtect(_ len: Int, property op: (inout PageProperty) -> Void) throws(OSTDError) -> Int {
            guard audit != nil else { return try tryProtectUnaudited(len, op) }
            return try withoutActuallyEscaping(op) { (op) throws(OSTDError) -> Int in
                try audited(.protect(len: len, op: op), { c throws(OSTDError) in try c.tryProtectUnaudited(len, op) }) { _ in .done }
            }
        }

        mutating func tryProtectUnaudited(_ len: Int, _ op: (inout PageProperty) -> Void) throws(OSTDError) -> Int {
            if let needed = ptCursor.reserveSplitNodes(len) { throw .outOfMemory(frames: needed) }
            let end = virtAddr + len
            var pages = 0
            // SAFETY: every protected range is flushed before this returns.
            while virtAddr < end, let done = unsafe ptCursor.protectNext(end - virtAddr, op) {
                pages += (done.upperBound - done.lowerBound) / pageSize
                flusher.issueTlbFlush(.range(done))
            }
            flusher.dispatchTlbFlush()
            return pages
        }

        /// Removes the first leaf or subtree in `virtAddr ..< virtAddr + len` *without* a TLB
        /// flush, and hands it over (the step `unmap` repeats). Until the caller issues a flush
        /// keeping it (`flusher.issueTlbFlushWith(_:keeping:)`) and dispatches, CPUs may still
        /// reach its frames through their TLBs, which is why the fragment must be kept until then.
        public mutating func takeNext(_ len: Int) -> PageTableFrag<UserPtConfig>? {
            // SAFETY: the fragment owns what was removed, so nothing is freed while a TLB may
            // reach it; the caller flushes before dropping it (see above).
            guard audit != nil else { return unsafe ptCursor.takeNext(len) }
            var info: PageTableFragInfo? = nil
            return audited(.takeNext(len: len), { c in
                switch unsafe c.ptCursor.takeNext(len) {   // SAFETY: as above.
                case .some(let frag): frag.recordingInfo(into: &info)
                case .none: nil
                }
            }) { _ in .taken(info) }
        }

        /// Changes the flags and cache policy of the first leaf in `virtAddr ..< virtAddr + len`
        /// (OSTD `protect_next`). No TLB flush: issue one through `flusher`.
        ///
        /// - Returns: the protected leaf's range, or `nil` when nothing in the range is mapped.
        public mutating func protectNext(
            _ len: Int, _ op: (inout PageFlags, inout CachePolicy) -> Void
        ) -> Range<Vaddr>? {
            protectNext(len) { property in
                // Two fields of one stored word (`PageProperty`): passed inout as copies.
                var flags = property.flags
                var cache = property.cache
                op(&flags, &cache)
                property.flags = flags
                property.cache = cache
            }
        }

        /// `protectNext` with the whole property, privileged flags included.
        public mutating func protectNext(_ len: Int, property op: (inout PageProperty) -> Void) -> Range<Vaddr>? {
            // SAFETY: the property changes only rights; a stale TLB entry keeps the old rights to
            // the same, still-owned frame until the caller's flush.
            guard audit != nil else { return unsafe ptCursor.protectNext(len, op) }
            return withoutActuallyEscaping(op) { op in
                audited(.protectNext(len: len, op: op), { c in unsafe c.ptCursor.protectNext(len, op) }) { .protected($0) }   // SAFETY: as above.
            }
        }
    }
}

extension TlbFlusher {
    /// A flusher for `space`: its flushes reach the CPUs where the space is active.
    init(space: VmSpace) { self.init(targets: space.cpus, context: space.context) }
}

// The lock of a page-table node, held (OSTD `PageTableGuard`): the only way to change a node.
//
// `NodeRef.lock` and `tryLock` return a guard; it alone writes entries, keeps `nrChildren`,
// marks the node stray and fills a split, and dropping it releases the lock. A cursor locks a
// whole subtree but keeps guards for none of it: it forgets each guard (`forget`, OSTD's
// `ManuallyDrop`) and, when it edits or releases a node of its subtree, makes the guard again
// from its own lock set (`init(assumingLocked:)`, OSTD's `make_guard_unchecked`), stating the
// invariant that makes that sound: every node of its subtree that overlaps its range is locked by
// it (Cursor.swift).

import Synchronization

/// A held page-table node lock (OSTD `PageTableGuard`).
@frozen @usableFromInline
struct PageTableGuard: ~Copyable {
    @usableFromInline let node: NodeRef

    /// A guard for a lock the caller holds and no other guard owns.
    ///
    /// - Safety: the calling thread holds `node`'s lock, and no live guard owns it.
    @unsafe @inlinable @inline(__always)
    init(assumingLocked node: NodeRef) { self.node = node }

    /// Releases the lock (OSTD `Drop for PageTableGuard`).
    @inlinable @inline(__always)
    deinit {
        // SAFETY: a locked node is live (a node is freed only after it is unlocked, detached and
        // a grace period has passed); the lock word is an atomic.
        unsafe node.lockWord.pointee.store(0, ordering: .releasing)
    }

    /// Gives the guard up without releasing the lock; the node stays locked, owned by the caller's
    /// lock set, and is returned.
    @inlinable @inline(__always)
    consuming func forget() -> NodeRef {
        let node = self.node
        discard self
        return node
    }

    // MARK: Entries

    /// Writes entry `index` (Release). The old entry's ownership is the caller's business.
    @inlinable @inline(__always)
    func write(_ index: Int, _ pte: PageTableEntry) {
        // SAFETY: `index < 512` (a page-table index) of the locked, hence live, node; entries are
        // accessed only atomically.
        unsafe (node.entries + index).pointee.store(pte.raw, ordering: .releasing)
    }

    /// Replaces entry `index`, read as `old`, by `new` without losing the A and D bits the MMU
    /// set in it since (Release): a compare-exchange that, when it finds A or D newly set, ORs
    /// them into `new` and tries again. Under the lock, an entry changes only by the MMU setting
    /// A/D (`SoftwarePageWalker`).
    @inlinable @inline(__always)
    func update(_ index: Int, from old: PageTableEntry, to new: PageTableEntry) {
        var expected = old.raw
        var desired = new.raw
        while true {
            // SAFETY: `index < 512` and `entries` are this live node's entries; they are accessed only atomically.
            let (exchanged, current) = unsafe (node.entries + index).pointee.compareExchange(
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

    /// The number of present entries (OSTD `nr_children`), kept by the lock holder.
    @inlinable @inline(__always)
    var nrChildren: Int { node.nrChildren }

    /// Sets `nrChildren`.
    @inlinable @inline(__always)
    func setNrChildren(_ count: Int) {
        // SAFETY: offset 4 of the locked, hence live, node's `PageTablePageMeta`; only the lock
        // holder writes it.
        unsafe node.meta.storeBytes(of: UInt16(truncatingIfNeeded: count), toByteOffset: 4, as: UInt16.self)
    }

    /// Adds `delta` to `nrChildren`: one entry made present (+1) or absent (-1). A method, not
    /// `nrChildren += 1`: the compound assignment goes through a `_modify` accessor, which
    /// ThreadSanitizer's Swift instrumentation reports as a write to the node's entries.
    @inlinable @inline(__always)
    func countChildren(_ delta: Int) { setNrChildren(nrChildren + delta) }

    /// Marks the node detached from its parent (OSTD `stray_mut`): a cursor that reached it
    /// without locks and then locked it finds the mark and starts again from the root.
    @inlinable @inline(__always)
    func markStray() {
        // SAFETY: offset 7 of the locked, hence live, node's `PageTablePageMeta`; only the lock
        // holder writes it, and the next locker reads it after the lock's Release/Acquire.
        unsafe node.meta.storeBytes(of: UInt8(1), toByteOffset: 7, as: UInt8.self)
    }

    /// Records that the node's frame holds only zeros, for a node being detached because it has
    /// no entries: each of its 512 entries is absent, the zero word (`nrChildren` counts every
    /// other), and no one writes it again before it is freed (the MMU sets A and D only in
    /// present entries, by a compare-exchange that now fails). So the allocation that next takes
    /// the frame need not fill it (`MetaSlot.zeroFrameIfWritten`). Debug builds check the words.
    @inlinable
    func recordAllAbsent(_ context: MachineRef) {
        #if DEBUG
        for index in 0..<PagingConsts.nrEntries {
            precondition(node.read(index).raw == 0, "an empty page-table node has a non-zero word at \(index)")
        }
        #endif
        context.slot(of: node.paddr(context)).markZeroed()
    }

    /// Sets the level of a node that is in no tree yet (a spare taken for a split).
    @inlinable @inline(__always)
    func setLevel(_ level: PagingLevel) {
        // SAFETY: offset 6 of the locked, hence live, node's `PageTablePageMeta`; the node is in
        // no tree yet, so no one else reads it.
        unsafe node.meta.storeBytes(of: level, toByteOffset: 6, as: UInt8.self)
    }

    /// Fills this new, empty node with the 512 leaves, one level down, that together map what
    /// the huge leaf `pte` at `level` did, with the same property and marker bits (the split of
    /// OSTD's `split_if_mapped_huge`).
    @usableFromInline
    func fillSplit(of pte: PageTableEntry, level: PagingLevel) {
        let base = pte.paddr(level: level).rawValue
        let step = PagingConsts.pageSpan(level &- 1)
        let bits = pte.raw & ~PageTableEntry.childMask   // the property bits and the leaf bit
        for i in 0..<PagingConsts.nrEntries {
            write(i, PageTableEntry(raw: (base + UInt64(i) * step) | bits))
        }
        setNrChildren(PagingConsts.nrEntries)
    }
}

extension NodeRef {
    /// Runs `body` with the guard of a node this thread's lock set holds (a cursor's subtree, a
    /// node allocated locked and not yet published); the lock stays held afterwards.
    ///
    /// - Safety: as `PageTableGuard.init(assumingLocked:)`: the caller's lock set holds the node.
    @unsafe @inlinable @inline(__always)
    func withHeld<R>(_ body: (borrowing PageTableGuard) -> R) -> R {
        // SAFETY: the caller's contract: its lock set holds the node, and the guard made here is
        // forgotten again below, so it never releases a lock it does not own.
        let held = unsafe PageTableGuard(assumingLocked: self)
        let result = body(held)
        _ = held.forget()
        return result
    }
}

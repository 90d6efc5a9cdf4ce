// The ownership protocol's bookkeeping on a space: admission of readers and writers, their
// registrations, and the seeds' `VmSpaceOwner` as a snapshot (see `VmSpaceOwner.swift`). The
// handles themselves (`VmReader`, `VmWriter`) are the I/O layer's; it calls these.
//
// Design: admission without a lock when nothing conflicts. A space has a small table of fast
// slots (`IoRegistry`: a pool of 4 claimed with a compare-exchange, and 2 of its own for each of
// the first 8 CPUs, claimed with a plain store by the one thread on that CPU), a word
// `admission` (a ticket counter and a count of *slow holds*), and behind them the locked
// registry of before (records in slabs, under `ownerLock`) for what does not fit.
//
// - **Fast admission** (`fastAdmit`, unaudited spaces): claim a free slot; write the range, then
//   the state `pending` with the view (Release); take a ticket with ONE read-modify-write of
//   `admission` (acquire-release); if it shows no slow hold, scan the other slots: any that is
//   pending or active with a view that keeps this handle out and an overlapping range sends the
//   admission to the locked path (the slot is freed first). Otherwise the slot becomes `active`,
//   stamped with the ticket, which is also the handle's id. Dropping a handle is one Release
//   store (`free`) in its slot.
// - **Why two admissions never both get in.** Each publishes its slot before its
//   read-modify-write of `admission`, and every such RMW reads the one before it in that word's
//   modification order, which makes it acquire what the earlier admission published. So of two
//   admissions the later one always sees the earlier one's slot (pending or already active) and
//   retreats if they conflict; if they see each other, both retreat, and the locked path, one
//   at a time, admits the first and refuses the second against a handle that really is active.
//   No admission waits for another on the fast path.
// - **The locked path** (`withLockedSection`: every admission that retreats, every admission of
//   an audited space, re-activation, split, write-to-read, `sharedReader` changes, snapshots)
//   takes `ownerLock`, adds a slow hold and takes a ticket with one RMW of `admission`, then
//   waits while any slot is `pending` (each such admission decides without waiting for anyone).
//   From then until it ends no slot can become active: an admission whose RMW came after the
//   hold sees it and frees its slot; one whose RMW came before was pending, so it was waited for.
//   The section then sees every active handle (the locked registry's and the active slots', each
//   slot's range read between two equal reads of its state) and decides exactly as the locked
//   registry always did; a new handle goes to a free slot if there is one, else to the locked
//   registry. The registry keeps a slow hold of its own while it has active records, so fast
//   admissions stay off until it is empty again.
// - **Order.** The seeds' lists are in activation order; here each record's state carries the
//   ticket of its last activation (its stamp), and snapshots and the conflict a refusal names
//   (the earliest activated writer, else reader) follow it.
//
// What it costs: a fast admission is one locked instruction (the RMW), a drop none. A locked
// section is three (the lock's exchange, and its two RMWs of `admission`), after the RMW of the
// fast attempt that gave up, if any; while the locked registry holds active records, admissions
// see its hold with a plain load and go to the locked path at once.

import Synchronization

extension VmSpace {
    /// Checks the seeds' preconditions on a user range: `len > 0` and `vaddr + len <=
    /// MAX_USERSPACE_VADDR` without overflow (`reader_requires` / `writer_requires`).
    static func userRange(_ vaddr: Vaddr, _ len: Int) throws(OSTDError) -> Range<Vaddr> {
        let (end, overflow) = vaddr.rawValue.addingReportingOverflow(UInt64(truncatingIfNeeded: len))
        guard len > 0, !overflow, end <= maxUserspaceVaddr.rawValue else {
            throw .invalidUserRange(vaddr: vaddr, len: len)
        }
        return vaddr..<Vaddr(end)
    }

    /// A snapshot of the ownership bookkeeping (the seeds' `VmSpaceOwner`); its lists are in
    /// activation order.
    public var ownerSnapshot: VmSpaceOwner {
        let active = context.platform.isActive(root: rootPaddr, on: context.platform.executingCpu())
        // SAFETY: the registry lives as long as the space; the section is what `snapshot` needs.
        return withLockedSection { _ in unsafe registry.pointee.snapshot(active: active, slotsInUse: slotsInUse) }
    }

    /// Whether readers may overlap one another (the seeds' `shared_reader`).
    ///
    /// - Precondition: turning it off while active readers overlap is refused ("overlapping
    ///   readers are active"): `inv` would no longer hold.
    public var sharedReader: Bool {
        get {
            // SAFETY: the registry lives as long as the space; an atomic load.
            unsafe registry.pointee.sharedReader
        }
        set {
            withLockedSection { _ in
                // SAFETY: the registry lives as long as the space; in the section, as
                // `forEachActive` requires.
                if !newValue {
                    var readers: [Range<Vaddr>] = []
                    unsafe registry.pointee.forEachActive(slotsInUse: slotsInUse) { _, state, range in
                        if state & IoRecordState.viewMask == UInt64(VmIoMemView.readView.rawValue) { readers.append(range) }
                    }
                    for (i, a) in readers.enumerated() {
                        for b in readers[(i + 1)...] {
                            precondition(!halfOpenOverlap(a, b),
                                         "overlapping readers are active; sharedReader cannot be turned off")
                        }
                    }
                }
                // SAFETY: the registry lives as long as the space; `sharedReader` is written in the section.
                unsafe registry.pointee.sharedReader = newValue
            }
        }
    }

    // MARK: Registration

    @usableFromInline typealias Record = UnsafeMutablePointer<IoRecord>

    /// The fast slots admissions look at on this machine.
    @inline(__always)
    var slotsInUse: Int { IoRegistry.slotsInUse(cpuCount: context.cpuCount) }

    /// Registers a new handle over `range` holding `view`, if the admission rules allow it, for a
    /// caller on `cpu` (`nil`: on no CPU) with preemption disabled.
    ///
    /// Inline, the common case only: an unaudited space, a free slot of the caller's CPU, no
    /// conflict. Everything else is out of line (`admitElsewhere`).
    @inline(__always)
    func admit(_ range: Range<Vaddr>, view: VmIoMemView, cpu: Int?) throws(OSTDError) -> Record {
        // SAFETY: the registry and its slots live as long as the space. The slots `cpu` owns are
        // claimed only by the one thread on `cpu` (preemption disabled, which the caller
        // guarantees); a free one is written by no one else (its last handle's drop was the last
        // write, and the Acquire load orders that before ours), so it is this admission's.
        if auditor == nil, let first = IoRegistry.ownedSlots(of: cpu) {
            let slots = unsafe registry.pointee.slots
            var index = first
            // SAFETY: `first` and `first + 1` are `cpu`'s own slots, inside `slots` (`ownedSlots`); atomic loads.
            if unsafe slots[first].state.load(ordering: .acquiring) != IoRecordState.free {
                index = first &+ 1
            }
            // SAFETY: `slots + index` is a free slot of `cpu`'s own, so this admission's (see above).
            if unsafe slots[index].state.load(ordering: .acquiring) == IoRecordState.free {
                if fastAdmit(range, view: view, in: index) { return unsafe slots + index }
                return try unsafe lockedAdmit(range, view: view, cpu: cpu)
            }
        }
        // SAFETY: the caller's preemption guarantee for `cpu` holds on this path too.
        return try unsafe admitElsewhere(range, view: view, cpu: cpu)
    }

    /// `admit` in the other cases: a pool slot (fast admission again), else the locked path.
    @inline(never)
    func admitElsewhere(_ range: Range<Vaddr>, view: VmIoMemView, cpu: Int?) throws(OSTDError) -> Record {
        // SAFETY: a pool slot from `claimPoolSlot` is this admission's alone.
        if auditor == nil, let index = claimPoolSlot() {
            if fastAdmit(range, view: view, in: index) { return unsafe registry.pointee.slots + index }
        }
        return try unsafe lockedAdmit(range, view: view, cpu: cpu)
    }

    /// The fast admission (see the file comment) in slot `index`, claimed by the caller:
    /// whether the handle is admitted there. If not, the locked path must decide (a possible
    /// conflict or a slow hold), and the slot is free again: nothing changed but the ticket
    /// counter.
    @inline(__always)
    func fastAdmit(_ range: Range<Vaddr>, view: VmIoMemView, in index: Int) -> Bool {
        // SAFETY: slot `index` is one the caller claimed, this admission's alone (see `admit`,
        // `claimPoolSlot`); the registry and its slots live as long as the space, and the other
        // slots are only read, through atomics.
        let registry = unsafe registry
        let slots = unsafe registry.pointee.slots
        // SAFETY: `index` is a slot of the registry (the caller claimed it, see above).
        let mine = unsafe slots + index
        // While a slow hold is visible, the locked path decides: no need to publish and take a
        // ticket only to give up.
        // SAFETY: `mine` is this admission's slot (see above); the admission word is an atomic.
        if unsafe registry.pointee.admission.load(ordering: .relaxed) & IoRegistry.slowMask != 0 {
            unsafe mine.pointee.state.store(IoRecordState.free, ordering: .releasing)
            return false
        }
        let lower = range.lowerBound.rawValue
        let upper = range.upperBound.rawValue
        // SAFETY: `mine` is this admission's slot: no one else writes its fields until it is freed.
        unsafe mine.pointee.start.store(lower, ordering: .relaxed)
        unsafe mine.pointee.end.store(upper, ordering: .relaxed)
        unsafe mine.pointee.state.store(IoRecordState.pending | UInt64(view.rawValue), ordering: .releasing)
        // The one locked instruction: publishes the slot to every later admission, and shows this
        // one every earlier admission's slot and any slow hold (see the file comment).
        let old = unsafe registry.pointee.admission.wrappingAdd(IoRegistry.ticketOne, ordering: .acquiringAndReleasing).oldValue
        if old & IoRegistry.slowMask == 0 {
            // The views that keep this handle out: a writer's always, a reader's unless readers
            // are shared and this is a reader.
            // SAFETY: the registry lives as long as the space; `sharedReader` is an atomic.
            let keptOutBy = unsafe view == .writeView || !registry.pointee.sharedReader ? UInt64(3) : UInt64(2)
            let count = slotsInUse
            // A pending or active handle that would keep this one out and overlaps it? (A range
            // may be read mid-change if its handle is being dropped and its slot reused; then it
            // no longer needs seeing, and the reuser sees this slot: see the file comment.)
            // SAFETY: `count <= slotCount`; the slots are read through atomics (see above).
            if unsafe !IoRegistry.anyOverlap(slots, 0, index, keptOutBy: keptOutBy, lower, upper)
                && !IoRegistry.anyOverlap(slots, index &+ 1, count, keptOutBy: keptOutBy, lower, upper) {
                let ticket = old >> 8
                unsafe mine.pointee.id.store(ticket, ordering: .relaxed)
                unsafe mine.pointee.state.store(IoRecordState.active(stamp: ticket, view: view), ordering: .releasing)
                return true
            }
        }
        // SAFETY: this admission's slot, given back with one store (see above).
        unsafe mine.pointee.state.store(IoRecordState.free, ordering: .releasing)
        return false
    }

    /// The index of a pool slot claimed with a compare-exchange (state `claimed`), or `nil` if
    /// all are taken.
    func claimPoolSlot() -> Int? {
        // SAFETY: the pool slots are the first `poolSlots` of the registry's slots, live as long
        // as the space; the compare-exchange from free makes the slot this caller's alone.
        let slots = unsafe registry.pointee.slots
        for i in 0..<IoRegistry.poolSlots where unsafe slots[i].state.load(ordering: .relaxed) == IoRecordState.free {
            if unsafe slots[i].state.compareExchange(expected: IoRecordState.free, desired: IoRecordState.claimed,
                                                     ordering: .acquiring).exchanged {
                return i
            }
        }
        return nil
    }

    /// The locked admission: decided in a locked section, shown to the auditor.
    @inline(never)
    func lockedAdmit(_ range: Range<Vaddr>, view: VmIoMemView, cpu: Int?) throws(OSTDError) -> Record {
        let slotsInUse = self.slotsInUse
        // SAFETY: the registry lives as long as the space, and is used in the section, which is
        // what `firstConflict` and `place` require.
        let record = try unsafe withLockedSection { (ticket) throws(OSTDError) -> Record in
            var conflict = unsafe registry.pointee.firstConflict(range, view: view, slotsInUse: slotsInUse)
            #if DEBUG
            if view == .readView && context.hasMutant(.readerAdmissionIgnoresWriters) {
                conflict = unsafe registry.pointee.firstConflict(range, view: view, slotsInUse: slotsInUse,
                                                                 ignoringWriters: true)
            }
            #endif
            if let conflict { throw .accessConflict(requested: range, conflicting: conflict) }
            // SAFETY: in the section, with preemption disabled for `cpu` (the caller's), as `place` requires.
            return unsafe place(range, view: view, id: ticket, cpu: cpu)
        }
        auditOwnership(.admitted(range: range, view: view))
        // SAFETY: hands the new registration to the handle being made (see above).
        return unsafe record
    }

    /// In a locked section: a record for a new handle over `range` holding `view` (`nil`: none
    /// yet), with id and stamp `id`: a free slot of `cpu`'s own, else of the pool, else a record
    /// of the locked registry. A caller on `cpu` has preemption disabled.
    func place(_ range: Range<Vaddr>, view: VmIoMemView?, id: UInt64, cpu: Int?) -> Record {
        // SAFETY: a slot is claimed as in `fastAdmit`; in the section, no fast admission can make
        // it active meanwhile. The locked registry is used under the section's lock.
        let slots = unsafe registry.pointee.slots
        var claimed: Record? = nil
        if let first = IoRegistry.ownedSlots(of: cpu) {
            for i in first..<(first + IoRegistry.slotsPerCpu)
            where unsafe slots[i].state.load(ordering: .acquiring) == IoRecordState.free {
                // SAFETY: slot `i` is one of `cpu`'s own, free, and in the section no fast admission takes it.
                unsafe claimed = slots + i
                break
            }
        }
        // SAFETY: a pool slot from `claimPoolSlot` is this caller's alone; `claimed` points into `slots`.
        if unsafe claimed == nil, let i = claimPoolSlot() { unsafe claimed = slots + i }
        if let slot = unsafe claimed {
            unsafe slot.pointee.start.store(range.lowerBound.rawValue, ordering: .relaxed)
            unsafe slot.pointee.end.store(range.upperBound.rawValue, ordering: .relaxed)
            unsafe slot.pointee.id.store(id, ordering: .relaxed)
            unsafe slot.pointee.state.store(IoRecordState.active(stamp: id, view: view), ordering: .releasing)
            // SAFETY: the slot just filled, handed to the handle being made.
            return unsafe slot
        }
        // SAFETY: no slot was free: the locked registry, used under the section's lock.
        let locked = unsafe registry.pointee.locked
        let record = unsafe locked.pointee.makeRecord(range, id: id)
        if let view { unsafe locked.pointee.activate(record, view: view, stamp: id) }
        return unsafe record
    }

    /// Runs `body` in a locked section (see the file comment): under the owner lock, with fast
    /// admissions held off and every one in flight decided; `body` gets a fresh ticket.
    func withLockedSection<R, E: Error>(_ body: (_ ticket: UInt64) throws(E) -> R) throws(E) -> R {
        ownerLock.lock()
        // SAFETY: the registry and its slots live as long as the space; atomics.
        let old = unsafe registry.pointee.admission.wrappingAdd(IoRegistry.ticketOne + IoRegistry.slowOne,
                                                                ordering: .acquiringAndReleasing).oldValue
        let slots = unsafe registry.pointee.slots
        var backoff = Backoff(relax: context.rcu.relax)
        for i in 0..<slotsInUse {
            // SAFETY: as above.
            while unsafe slots[i].state.load(ordering: .acquiring) & IoRecordState.phaseMask == IoRecordState.pending {
                backoff.wait()
            }
        }
        defer {
            // The section's hold goes; the registry's own hold follows whether it has active
            // records. One RMW (Release), or none when the section's hold becomes the registry's.
            // SAFETY: the locked registry is used under `ownerLock`, held.
            let locked = unsafe registry.pointee.locked
            var release = IoRegistry.slowOne
            let wanted = unsafe locked.pointee.hasActive
            if unsafe wanted != locked.pointee.holdsSlowMode {
                unsafe locked.pointee.holdsSlowMode = wanted
                release = wanted ? 0 : 2 * IoRegistry.slowOne
            }
            // SAFETY: the admission word lives as long as the space; an atomic RMW.
            if release != 0 {
                unsafe registry.pointee.admission.wrappingSubtract(release, ordering: .releasing)
            }
            ownerLock.unlock()
        }
        return try body(old >> 8)
    }

    /// Under `ownerLock`, after the locked registry lost active records: drops its slow hold when
    /// it has none left.
    func releaseSlowHoldIfIdle() {
        // SAFETY: the locked registry is used under `ownerLock`, held by the caller.
        let locked = unsafe registry.pointee.locked
        if unsafe locked.pointee.holdsSlowMode && !locked.pointee.hasActive {
            unsafe locked.pointee.holdsSlowMode = false
            unsafe registry.pointee.admission.wrappingSubtract(IoRegistry.slowOne, ordering: .releasing)
        }
    }

    /// Gives a disposed handle its view back, if the admission rules allow it.
    func reactivate(_ record: Record?, view: VmIoMemView) throws(OSTDError) {
        // SAFETY: `record` is the registration of a live handle of this space, a slot or a record
        // of the locked registry; the section is what `firstConflict` needs, and the record's
        // fields are atomics.
        guard let record = unsafe record else { return }
        _ = try executingCpu()
        let slotsInUse = self.slotsInUse
        let activated = try withLockedSection { (ticket) throws(OSTDError) -> Bool in
            guard unsafe record.memView == nil else { return false }
            // SAFETY: in the section, as `firstConflict` requires; `record` is the live handle's.
            if let conflict = unsafe registry.pointee.firstConflict(record.range, view: view, slotsInUse: slotsInUse,
                                                                    excluding: record) {
                throw .accessConflict(requested: unsafe record.range, conflicting: conflict)
            }
            // SAFETY: `record` is the live handle's registration (see above); in the section.
            if unsafe registry.pointee.isSlot(record) {
                unsafe record.pointee.state.store(IoRecordState.active(stamp: ticket, view: view), ordering: .releasing)
            } else {
                unsafe registry.pointee.locked.pointee.activate(record, view: view, stamp: ticket)
            }
            return true
        }
        if activated { auditOwnership(.reactivated(range: unsafe record.range, view: view)) }
    }

    func dispose(_ record: Record?) {
        // SAFETY: `record` is the registration of a live handle of this space. A slot's state is
        // written by its handle alone while the handle lives (this call is the handle's); the
        // locked registry is used under `ownerLock`.
        guard let record = unsafe record else { return }
        let range = unsafe auditor != nil ? record.range : nil
        if unsafe registry.pointee.isSlot(record) {
            // Giving a view back needs no exclusion: whoever still sees it only refuses more.
            // SAFETY: the handle's own slot: only this handle writes its state while it lives.
            let state = unsafe record.pointee.state.load(ordering: .relaxed)
            unsafe record.pointee.state.store(state & ~IoRecordState.viewMask, ordering: .releasing)
        } else {
            ownerLock.lock()
            // SAFETY: the locked registry, under `ownerLock`, held.
            unsafe registry.pointee.locked.pointee.dispose(record)
            releaseSlowHoldIfIdle()
            ownerLock.unlock()
        }
        if let range { auditOwnership(.disposed(range: range)) }
    }

    /// Ends a handle's registration: a slot is freed with one store, a record of the locked
    /// registry is removed under the lock.
    @inline(__always)
    func remove(_ record: Record) {
        // SAFETY: `record` is the registration of the handle being ended; its slot is its own
        // until this store, which is its handle's last use of it.
        if unsafe auditor == nil && registry.pointee.isSlot(record) {
            unsafe record.pointee.state.store(IoRecordState.free, ordering: .releasing)
            return
        }
        unsafe removeSlowly(record)
    }

    func removeSlowly(_ record: Record) {
        // SAFETY: as `remove`; the locked registry is used under `ownerLock`.
        let range = unsafe auditor != nil ? record.range : nil
        if unsafe registry.pointee.isSlot(record) {
            unsafe record.pointee.state.store(IoRecordState.free, ordering: .releasing)
        } else {
            ownerLock.lock()
            unsafe registry.pointee.locked.pointee.remove(record)
            releaseSlowHoldIfIdle()
            ownerLock.unlock()
        }
        if let range { auditOwnership(.removed(range: range)) }
    }

    /// Registers the first `count` bytes of `record`, split off it, with the same view, and
    /// moves `record`'s start past them, both in one locked section: a snapshot sees either the
    /// whole range in `record` or the two halves, never the front bytes twice (the seeds'
    /// `VmIoOwner::split` is one step).
    func registerSplit(of record: Record, count: Int) -> Record {
        // SAFETY: `record` is the registration of the live handle being split; the front's record
        // is placed as `place` requires (in the section, preemption disabled for `cpu`); the
        // records' fields are atomics.
        let (front, range) = unsafe context.platform.withPreemptionDisabled { cpu in
            unsafe withLockedSection { ticket in
                let start = unsafe Vaddr(record.pointee.start.load(ordering: .relaxed))
                let end = unsafe Vaddr(record.pointee.end.load(ordering: .relaxed))
                // SAFETY: in the section with preemption disabled for `cpu`, as `place` requires; `record` is live.
                let front = unsafe place(start..<(start + count), view: record.memView, id: ticket, cpu: cpu)
                unsafe record.pointee.start.store((start + count).rawValue, ordering: .relaxed)
                return unsafe (front, start..<end)
            }
        }
        auditOwnership(.split(range: range, count: count))
        return unsafe front
    }

    /// Turns an active writer's registration into a reader's (the seeds' `write_to_read`).
    func convertToReader(_ record: Record) {
        // SAFETY: `record` is the registration of the live writer being converted; the locked
        // registry is used in the section; the record's fields are atomics.
        let converted = withLockedSection { ticket in
            guard unsafe record.memView == .writeView else { return false }
            // SAFETY: the live writer's registration, in the section; its state is an atomic.
            if unsafe registry.pointee.isSlot(record) {
                unsafe record.pointee.state.store(IoRecordState.active(stamp: ticket, view: .readView), ordering: .releasing)
            } else {
                unsafe registry.pointee.locked.pointee.dispose(record)
                unsafe registry.pointee.locked.pointee.activate(record, view: .readView, stamp: ticket)
            }
            return true
        }
        // SAFETY: the writer is still live (this is its call); its range fields are atomics.
        if auditor != nil && converted { auditOwnership(.convertedToReader(range: unsafe record.range)) }
    }
}

// Frame references dropped after an RCU grace period (OSTD's `RcuDrop`): the frames of page-table
// nodes that a cursor detached while lock-free walkers may still be inside them.
//
// `dropAfterGracePeriod` stamps a batch with a new grace period (`Rcu.startGracePeriod`) and
// drops it at once if no read-side section is open that started before; otherwise the batch
// waits here, and is dropped by a later `reclaimGracePeriodDrops` (every cursor's drop tries,
// without waiting; `waiting: true` spins until every batch can go). A grace period starts with
// every CPU quiesced (`MachineRef.startGracePeriod`, `Platform.quiesce`), after the detach: a
// hardware walk in flight when the node was detached has finished by then, and read-side sections
// opened under a CPU's MMU lock need it (`Rcu.enterUnderLock`). Nothing here blocks while holding
// a lock a reader could wait for.
//
// In debug builds a machine can poison what it drops (`Machine.poisonsReclaimedNodes`): every
// 8-byte word of the frame becomes `PoisonReads.poison`, a non-present entry that the page-table
// walks count when they read it (`PoisonReads`). A walk that reads poison read a freed node.

import Synchronization

/// Batches of raw frame references waiting for their grace period: a handle to state out of
/// line (taking the lock is then not an access to the whole machine context).
///
/// `@safe`: `batches` and `waiting` are allocated by `init` and freed only by the `@unsafe`
/// `deallocate()`, when the machine's state is destroyed (MachineContext.swift's lifetime
/// statement); `batches` is accessed only under `lock`, `waiting` only atomically.
@safe
struct GracePeriodDrops {
    let lock = OutOfLineSpinLock()
    /// Guarded by `lock`.
    let batches: UnsafeMutablePointer<[(stamp: UInt64, frames: [Paddr])]>
    /// How many frames wait (read without the lock, to skip it when nothing waits).
    let waiting: UnsafeMutablePointer<Atomic<Int>>

    init() {
        // SAFETY: fresh allocations, each initialised once.
        unsafe batches = .allocate(capacity: 1)
        unsafe batches.initialize(to: [])
        unsafe waiting = .allocate(capacity: 1)
        unsafe waiting.initialize(to: Atomic(0))
    }

    /// Frees the state.
    ///
    /// - Safety: called once, by `MachineRef.destroy`; no copy of the handle is used afterwards.
    @unsafe
    func deallocate() {
        // SAFETY: what `init` allocated and initialised; the caller's contract makes this its
        // last use.
        unsafe batches.deinitialize(count: 1)
        unsafe batches.deallocate()
        unsafe waiting.deinitialize(count: 1)
        unsafe waiting.deallocate()
        unsafe lock.deallocate()
    }
}

extension MachineRef {
    /// The machine's read-side sections and grace periods.
    @inlinable var rcu: Rcu {
        // SAFETY: the live context (the lifetime statement); `rcu` is immutable.
        unsafe state.pointee.rcu
    }

    /// Opens a read-side section on the calling thread's CPU (or an unbound slot).
    @inlinable @inline(__always)
    func readSection() -> RcuReadGuard {
        // SAFETY: the live context; the platform is immutable.
        let cpu = unsafe state.pointee.platform.withPreemptionDisabled { cpu in cpu }
        return rcu.read(cpu: cpu)
    }

    /// Whether the calling thread's CPU is inside a read-side section (a thread on no CPU is
    /// taken as outside: its sections are a cursor's short descents).
    var inReadSection: Bool {
        // SAFETY: the live context; the platform is immutable.
        guard let cpu = unsafe state.pointee.platform.withPreemptionDisabled({ cpu in cpu }) else { return false }
        return rcu.isReading(cpu: cpu)
    }

    /// Starts a grace period (`Rcu.startGracePeriod`), then quiesces every CPU (`Platform.quiesce`:
    /// its MMU lock taken and released), and returns the stamp. The quiescing is what read-side
    /// sections opened under a CPU's MMU lock without a fence rely on (`Rcu.enterUnderLock`), and
    /// it lets every page walk that may have read a detached entry finish, so that frames of the
    /// grace period are dropped with no walk in them.
    @usableFromInline
    func startGracePeriod() -> UInt64 {
        let stamp = rcu.startGracePeriod()
        for cpu in 0..<cpuCount { platform.quiesce(cpu) }
        return stamp
    }

    /// Takes over raw references to `frames` (each forgotten by `intoRaw`, its holder already
    /// cleared) and drops them once no lock-free walker can be using the frames.
    func dropAfterGracePeriod(_ frames: [Paddr]) {
        guard !frames.isEmpty else { return }
        let stamp = startGracePeriod()
        if gracePeriodIsOver(stamp) {
            dropNow(frames)
            return
        }
        // SAFETY: the live context's grace-period list (see `GracePeriodDrops`): `batches` under
        // its lock, `waiting` atomically.
        let drops = unsafe state.pointee.gracePeriodDrops
        drops.lock.lock()
        unsafe drops.batches.pointee.append((stamp, frames))
        unsafe drops.waiting.pointee.add(frames.count, ordering: .relaxed)
        drops.lock.unlock()
    }

    /// Takes over raw references to detached, empty page-table nodes (each holding the
    /// reference its parent entry held) and drops them after a grace period; then drops whatever
    /// earlier grace periods allow, without waiting. Called with no node lock held.
    func retire(_ nodes: [Paddr]) {
        dropAfterGracePeriod(nodes)
        if gracePeriodDropsWaiting > 0 { reclaimGracePeriodDrops(waiting: false) }
    }

    /// Drops every waiting batch whose grace period is over; with `waiting`, first waits until
    /// they all are. Returns the number of frames dropped. The caller holds no read-side section
    /// and, when waiting, no page-table lock.
    @discardableResult
    func reclaimGracePeriodDrops(waiting: Bool) -> Int {
        // SAFETY: the live context's grace-period list (see `GracePeriodDrops`): `batches` under
        // its lock, `waiting` atomically.
        let drops = unsafe state.pointee.gracePeriodDrops
        guard unsafe drops.waiting.pointee.load(ordering: .relaxed) > 0 else { return 0 }
        if waiting, let last = lastStamp() { rcu.wait(for: last) }
        drops.lock.lock()
        var ready: [Paddr] = []
        unsafe drops.batches.pointee.removeAll { batch in
            guard gracePeriodIsOver(batch.stamp) else { return false }
            ready += batch.frames
            return true
        }
        unsafe drops.waiting.pointee.subtract(ready.count, ordering: .relaxed)
        drops.lock.unlock()
        guard !ready.isEmpty else { return 0 }
        dropNow(ready)
        return ready.count
    }

    /// The number of frames waiting for their grace period.
    var gracePeriodDropsWaiting: Int {
        // SAFETY: the live context's grace-period list; `waiting` is an atomic.
        unsafe state.pointee.gracePeriodDrops.waiting.pointee.load(ordering: .relaxed)
    }

    private func lastStamp() -> UInt64? {
        // SAFETY: the live context's grace-period list; `batches` is read under its lock.
        let drops = unsafe state.pointee.gracePeriodDrops
        drops.lock.lock()
        defer { drops.lock.unlock() }
        return unsafe drops.batches.pointee.last?.stamp
    }

    private func gracePeriodIsOver(_ stamp: UInt64) -> Bool {
        #if DEBUG
        if hasMutant(.reclaimsWithoutGracePeriod) { return true }
        #endif
        return rcu.isOver(stamp)
    }

    /// Drops the references (every CPU was quiesced when their grace period started, after
    /// they were detached: no walk is in them).
    private func dropNow(_ frames: [Paddr]) {
        for paddr in frames {
            #if DEBUG
            // SAFETY: the live context; the switch is an atomic.
            if unsafe state.pointee.poisonsReclaimedNodes.load(ordering: .relaxed) { poison(paddr) }
            #endif
            // SAFETY: `dropAfterGracePeriod`'s contract: a reference forgotten by `intoRaw` whose
            // holder was cleared, handed over once. The frame's type does not matter to a drop, so it is
            // dropped erased.
            _ = unsafe Frame<DynFrameMeta>.fromRaw(paddr, in: self)
        }
    }

    #if DEBUG
    /// Fills the frame at `paddr` with `PageTableEntry.poison`.
    private func poison(_ paddr: Paddr) {
        // SAFETY: the frame is inside physical memory and, after the grace period, no one else
        // reads or writes it until it is dropped below.
        slot(of: paddr).markWritten()
        let words = unsafe pointer(to: paddr).assumingMemoryBound(to: Atomic<UInt64>.self)
        for i in 0..<(pageSize / 8) { unsafe (words + i).pointee.store(PoisonReads.poison, ordering: .relaxed) }
    }
    #endif
}

extension Machine {
    /// Drops the page-table nodes whose grace period is over; with `waiting`, waits until every
    /// waiting node can go. Returns how many were dropped. Call it holding no cursor, no reader
    /// or writer, and outside read-side sections (a quiescent point for the caller).
    @discardableResult
    @_spi(OSTDInternals) public func reclaimRetired(waiting: Bool = true) -> Int {
        context.reclaimGracePeriodDrops(waiting: waiting)
    }

    /// The number of detached page-table nodes waiting for their grace period.
    @_spi(OSTDInternals) public var retiredCount: Int { context.gracePeriodDropsWaiting }

    #if DEBUG
    /// Whether nodes dropped after their grace period are poisoned first (debug builds only;
    /// tests of reclamation, with `PoisonReads`).
    @_spi(OSTDInternals) public var poisonsReclaimedNodes: Bool {
        // SAFETY: this `Machine` keeps its state live; the switch is an atomic.
        get { unsafe context.state.pointee.poisonsReclaimedNodes.load(ordering: .relaxed) }
        set { unsafe context.state.pointee.poisonsReclaimedNodes.store(newValue, ordering: .relaxed) }
    }
    #endif
}

#if DEBUG
/// Counts reads of poison by the page-table walks (debug builds only).
public enum PoisonReads {
    /// What a reclaimed node's words hold when its machine poisons: not present (bit 0 clear), so
    /// a walk that reads it stops there instead of following it.
    public static let poison: UInt64 = 0x7ead_beef_dead_bee0
    /// Reads of `poison` by a page-table walk, on any machine.
    public static let count = Atomic<Int>(0)
}
#endif

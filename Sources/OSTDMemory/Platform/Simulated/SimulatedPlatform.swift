// The platform of a simulated machine: CPUs that host threads bind to, each with CR3 and a TLB.
//
// This is the only implementation of `Platform` today. It is a few words (the CPU records, the
// hooks that find the calling thread's CPU, and the physical memory the MMU walks), so the layers
// above copy it freely. Deliberate differences from hardware: a TLB flush of another CPU is done
// by the flushing thread under that CPU's MMU lock (what the IPI handler would do), so it is
// synchronous; and there is no preemption to disable, since a bound thread never leaves its CPU.

#if !OSTD_BARE_METAL
import Synchronization

/// The simulated CPUs of one machine.
///
/// `@safe`: the `cpuCount` CPU records are allocated by `init` and freed only by the `@unsafe`
/// `shutDown()`, which the machine's state calls when it is destroyed (MachineContext.swift's
/// lifetime statement), so every copy of the platform the layers hold points at live records.
/// Every `cpu` passed in is one of the machine's (`< cpuCount`): the machine and the space check
/// the ones they are given, and the others come from the current CPU or from a CPU set.
@safe @frozen @usableFromInline
struct SimulatedPlatform: Platform {
    @usableFromInline let cpus: UnsafeMutablePointer<SimulatedCpu>
    /// What a bound thread's CPU-local word points at: CPU `i`'s identity, written once at boot
    /// and only read afterwards (never the CPU's record, which flushes write).
    @usableFromInline let identities: UnsafeMutablePointer<CpuIdentity>
    @usableFromInline let cpuCount: Int
    @usableFromInline let hooks: CpuLocalHooks?
    /// Host address of physical address 0, where the MMU reads page-table entries.
    @usableFromInline let memoryBase: UnsafeMutableRawPointer

    /// Creates `cpuCount` CPUs with empty TLBs and no active page table.
    @usableFromInline
    init(cpuCount: Int, hooks: CpuLocalHooks?, memoryBase: UnsafeMutableRawPointer) {
        // SAFETY: a fresh allocation of `cpuCount` records, each initialised once, in bounds;
        // `memoryBase` is only stored (for the MMU's walks).
        unsafe cpus = .allocate(capacity: cpuCount)
        for i in 0..<cpuCount { unsafe (cpus + i).initialize(to: SimulatedCpu()) }
        // SAFETY: as above, for the identities; each names this table and its CPU.
        unsafe identities = .allocate(capacity: cpuCount)
        for i in 0..<cpuCount { unsafe (identities + i).initialize(to: CpuIdentity(table: UnsafeRawPointer(identities), id: i)) }
        self.cpuCount = cpuCount
        self.hooks = hooks
        unsafe self.memoryBase = memoryBase
    }

    /// Frees the CPU records; no thread may be bound to one.
    ///
    /// - Safety: as `Platform.shutDown`: once, when the machine's state is destroyed.
    @unsafe @usableFromInline
    func shutDown() {
        // SAFETY: the records `init` initialised; the caller's contract makes this their last use
        // (no thread is bound: a binding holds the machine).
        unsafe cpus.deinitialize(count: cpuCount)
        unsafe cpus.deallocate()
        unsafe identities.deallocate()
    }

    // MARK: Current CPU

    /// The CPU the calling thread is bound to, if it is one of these.
    @inlinable @inline(__always)
    func currentCpu() -> Int? {
        // SAFETY: the word holds nil or a pointer to a live `CpuIdentity` (set by `bind`, which
        // holds the machine); identities are never written after boot.
        guard let hooks, let raw = unsafe hooks.get() else { return nil }
        let identity = unsafe raw.assumingMemoryBound(to: CpuIdentity.self)
        return unsafe identity.pointee.table == UnsafeRawPointer(identities) ? identity.pointee.id : nil
    }

    @inlinable @inline(__always)
    func withPreemptionDisabled<R: ~Copyable, E: Error>(_ body: (Int?) throws(E) -> R) throws(E) -> R {
        try body(currentCpu())
    }

    @inlinable @inline(__always)
    func executingCpu() -> Int { currentCpu() ?? 0 }

    /// Binds the calling thread to `cpu` while `body` runs (nested calls for the same CPU are
    /// free). Simulation only: a kernel thread is where the scheduler put it.
    ///
    /// - Precondition: there are hooks, and no other thread is bound to `cpu`.
    func bind<R: ~Copyable, E: Error>(_ cpu: Int, _ body: () throws(E) -> R) throws(E) -> R {
        guard let hooks else { preconditionFailure("this machine has no CPU-local hooks; create it with cpuLocal:") }
        // SAFETY: `cpu < cpuCount` (checked by `Machine.withCpu`), so `state` is a live record;
        // `bound` is atomic. The thread-local word gets a pointer to that record, or back the
        // value it held, so it only ever holds a live record or nil (what `currentCpu` relies
        // on): the binding lasts while `body` runs, inside a call that holds the machine.
        let state = unsafe cpus + cpu
        let identity = unsafe UnsafeMutableRawPointer(identities + cpu)
        let previous = unsafe hooks.get()
        if unsafe previous == identity { return try body() }
        precondition(unsafe state.pointee.bound.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged,
                     "cpu \(cpu) is already bound to another thread")
        // SAFETY: `identity` is this CPU's immutable identity record, live with the machine (see
        // above); the word is restored to `previous` when `body` returns.
        unsafe hooks.set(identity)
        defer {
            unsafe hooks.set(previous)
            unsafe state.pointee.bound.store(false, ordering: .releasing)
        }
        return try body()
    }

    /// Whether a thread is bound to `cpu`.
    func isBound(_ cpu: Int) -> Bool {
        // SAFETY: `cpu < cpuCount` (see the type); `bound` is atomic.
        unsafe cpus[cpu].bound.load(ordering: .acquiring)
    }

    // MARK: Activation

    @usableFromInline
    func activate(root: Paddr, space: UInt, on cpu: Int, replacing: (UInt) -> Void) {
        // SAFETY: `cpu < cpuCount` (checked by `VmSpace.activate`), a live record; its TLB is
        // changed only under its MMU lock, held here, and the rest are atomics.
        let state = unsafe cpus + cpu
        unsafe state.pointee.withMmuLocked {
            let previous = unsafe state.pointee.activeSpace.load(ordering: .relaxed)
            guard previous != space else { return }
            replacing(previous)
            unsafe state.pointee.activeSpace.store(space, ordering: .relaxed)
            unsafe state.pointee.activeRoot.store(root.rawValue, ordering: .releasing)
            unsafe state.pointee.tlb.pointee.flushAll()
        }
    }

    @usableFromInline
    func deactivate(space: UInt, on cpu: Int) {
        // SAFETY: `cpu` is in the space's CPU set, each added by a checked `activate`: a live
        // record; its TLB is changed only under its MMU lock, held here.
        let state = unsafe cpus + cpu
        unsafe state.pointee.withMmuLocked {
            guard unsafe state.pointee.activeSpace.load(ordering: .relaxed) == space else { return }
            unsafe state.pointee.activeSpace.store(0, ordering: .relaxed)
            unsafe state.pointee.activeRoot.store(0, ordering: .relaxed)
            unsafe state.pointee.tlb.pointee.flushAll()
        }
    }

    @inlinable
    func activeSpace(on cpu: Int) -> UInt {
        // SAFETY: `cpu < cpuCount` (checked by `VmSpace.isActive`); an atomic load.
        unsafe cpus[cpu].activeSpace.load(ordering: .relaxed)
    }

    @inlinable @inline(__always)
    func isActive(root: Paddr, on cpu: Int) -> Bool {
        // SAFETY: `cpu` is the executing CPU (the current one, or 0), `< cpuCount`; an atomic load.
        unsafe cpus[cpu].activeRoot.load(ordering: .relaxed) == root.rawValue
    }

    // MARK: TLB

    @usableFromInline
    func flushTlb(_ ops: [TlbFlushOp], all: Bool, on cpu: Int) {
        // SAFETY: `cpu` exists (the machine checked it); its record lives until `shutDown`, and its controls
        // and TLB change only under its MMU lock, taken here.
        let state = unsafe cpus + cpu
        unsafe state.pointee.mmuLock.lock()
        if all {
            unsafe state.pointee.tlb.pointee.flushAll()
        } else {
            for op in ops { unsafe state.pointee.tlb.pointee.perform(op) }
        }
        unsafe state.pointee.mmuLock.unlock()
    }

    @usableFromInline
    func quiesce(_ cpu: Int) {
        // SAFETY: `cpu < cpuCount` (callers loop over the CPUs), a live record.
        unsafe cpus[cpu].mmuLock.lock()
        unsafe cpus[cpu].mmuLock.unlock()
    }

    /// The hit, miss and flush counts of `cpu`'s TLB.
    func tlbStatistics(on cpu: Int) -> TlbStatistics {
        // SAFETY: `cpu < cpuCount` (checked by the machine); the TLB is read under its MMU lock.
        unsafe cpus[cpu].withMmuLocked { unsafe cpus[cpu].tlb.pointee.statistics }
    }

    /// The valid entries of `cpu`'s TLB.
    func tlbEntries(on cpu: Int) -> [TlbEntryInfo] {
        // SAFETY: `cpu < cpuCount` (checked by the machine); the TLB is read under its MMU lock.
        unsafe cpus[cpu].withMmuLocked { unsafe cpus[cpu].tlb.pointee.validEntries() }
    }

    // MARK: Paging controls

    /// Sets `cpu`'s paging controls and flushes its TLB (its entries were cached under the old
    /// controls).
    func setPagingControls(_ controls: PagingControls, on cpu: Int) {
        // SAFETY: `cpu < cpuCount` (checked by the machine), a live record; its controls and TLB
        // change only under its MMU lock, held here.
        let state = unsafe cpus + cpu
        unsafe state.pointee.mmuLock.lock()
        unsafe state.pointee.pagingControls = controls
        unsafe state.pointee.tlb.pointee.flushAll()
        unsafe state.pointee.mmuLock.unlock()
    }

    /// `cpu`'s paging controls.
    func pagingControls(on cpu: Int) -> PagingControls {
        // SAFETY: `cpu < cpuCount` (checked by the machine); read under its MMU lock.
        unsafe cpus[cpu].withMmuLocked { unsafe cpus[cpu].pagingControls }
    }

    // MARK: User accesses

    @inlinable @inline(__always)
    func withUserAccess<R>(on cpu: Int, root: Paddr, _ body: (inout SimulatedMmu) -> R) -> R? {
        // SAFETY: `cpu` is the executing CPU (`< cpuCount`), a live record. The MMU lock is held
        // while `body` uses the `SimulatedMmu` made here (its TLB and controls), and CR3 holds
        // `root`, so the walks read a live table (`SimulatedMmu`'s invariant).
        let state = unsafe cpus + cpu
        unsafe state.pointee.mmuLock.lock()
        defer { unsafe state.pointee.mmuLock.unlock() }
        guard unsafe state.pointee.activeRoot.load(ordering: .relaxed) == root.rawValue else { return nil }
        var mmu = unsafe SimulatedMmu(tlb: state.pointee.tlb, root: root, memoryBase: memoryBase,
                                      controls: state.pointee.pagingControls)
        return body(&mmu)
    }
}
/// Which machine's CPU, and which: what a bound thread's CPU-local word points at.
///
/// `@safe`: `table` is only compared, never dereferenced.
@safe @frozen @usableFromInline
struct CpuIdentity {
    /// The machine's identity table (its first entry), telling its CPUs from another machine's.
    @usableFromInline let table: UnsafeRawPointer
    @usableFromInline let id: Int
}
#endif

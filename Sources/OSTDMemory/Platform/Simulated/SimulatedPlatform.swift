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
@frozen @usableFromInline
struct SimulatedPlatform: Platform {
    @usableFromInline let cpus: UnsafeMutablePointer<SimulatedCpu>
    @usableFromInline let cpuCount: Int
    @usableFromInline let hooks: CpuLocalHooks?
    /// Host address of physical address 0, where the MMU reads page-table entries.
    @usableFromInline let memoryBase: UnsafeMutableRawPointer

    /// Creates `cpuCount` CPUs with empty TLBs and no active page table.
    @usableFromInline
    init(cpuCount: Int, hooks: CpuLocalHooks?, memoryBase: UnsafeMutableRawPointer) {
        cpus = .allocate(capacity: cpuCount)
        for i in 0..<cpuCount { (cpus + i).initialize(to: SimulatedCpu()) }
        self.cpuCount = cpuCount
        self.hooks = hooks
        self.memoryBase = memoryBase
    }

    /// Frees the CPU records; no thread may be bound to one.
    @usableFromInline
    func shutDown() {
        cpus.deinitialize(count: cpuCount)
        cpus.deallocate()
    }

    // MARK: Current CPU

    /// The CPU the calling thread is bound to, if it is one of these.
    @inlinable @inline(__always)
    func currentCpu() -> Int? {
        guard let hooks, let raw = hooks.get() else { return nil }
        // The word points at the record of the CPU the thread is bound to (`bind`); which CPU,
        // and whether of this machine, follows from the address alone. Not reading the record
        // keeps this clear of the flushes other threads make on it.
        let offset = raw - UnsafeMutableRawPointer(cpus)
        let stride = MemoryLayout<SimulatedCpu>.stride
        guard offset >= 0, offset < cpuCount * stride else { return nil }
        return offset / stride
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
        let state = cpus + cpu
        let previous = hooks.get()
        if previous == UnsafeMutableRawPointer(state) { return try body() }
        precondition(state.pointee.bound.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged,
                     "cpu \(cpu) is already bound to another thread")
        hooks.set(UnsafeMutableRawPointer(state))
        defer {
            hooks.set(previous)
            state.pointee.bound.store(false, ordering: .releasing)
        }
        return try body()
    }

    /// Whether a thread is bound to `cpu`.
    func isBound(_ cpu: Int) -> Bool { cpus[cpu].bound.load(ordering: .acquiring) }

    // MARK: Activation

    @usableFromInline
    func activate(root: Paddr, space: UInt, on cpu: Int, replacing: (UInt) -> Void) {
        let state = cpus + cpu
        state.pointee.withMmuLocked {
            let previous = state.pointee.activeSpace.load(ordering: .relaxed)
            guard previous != space else { return }
            replacing(previous)
            state.pointee.activeSpace.store(space, ordering: .relaxed)
            state.pointee.activeRoot.store(root.rawValue, ordering: .releasing)
            state.pointee.tlb.pointee.flushAll()
        }
    }

    @usableFromInline
    func deactivate(space: UInt, on cpu: Int) {
        let state = cpus + cpu
        state.pointee.withMmuLocked {
            guard state.pointee.activeSpace.load(ordering: .relaxed) == space else { return }
            state.pointee.activeSpace.store(0, ordering: .relaxed)
            state.pointee.activeRoot.store(0, ordering: .relaxed)
            state.pointee.tlb.pointee.flushAll()
        }
    }

    @inlinable
    func activeSpace(on cpu: Int) -> UInt { cpus[cpu].activeSpace.load(ordering: .relaxed) }

    @inlinable @inline(__always)
    func isActive(root: Paddr, on cpu: Int) -> Bool {
        cpus[cpu].activeRoot.load(ordering: .relaxed) == root.rawValue
    }

    // MARK: TLB

    @usableFromInline
    func flushTlb(_ ops: [TlbFlushOp], all: Bool, on cpu: Int) {
        // SAFETY: `cpu` exists (the machine checked it); its record lives until `shutDown`, and its controls
        // and TLB change only under its MMU lock, taken here.
        let state = cpus + cpu
        state.pointee.mmuLock.lock()
        if all {
            state.pointee.tlb.pointee.flushAll()
        } else {
            for op in ops { state.pointee.tlb.pointee.perform(op) }
        }
        state.pointee.mmuLock.unlock()
    }

    @usableFromInline
    func quiesce(_ cpu: Int) {
        cpus[cpu].mmuLock.lock()
        cpus[cpu].mmuLock.unlock()
    }

    /// The hit, miss and flush counts of `cpu`'s TLB.
    func tlbStatistics(on cpu: Int) -> TlbStatistics {
        cpus[cpu].withMmuLocked { cpus[cpu].tlb.pointee.statistics }
    }

    /// The valid entries of `cpu`'s TLB.
    func tlbEntries(on cpu: Int) -> [TlbEntryInfo] {
        cpus[cpu].withMmuLocked { cpus[cpu].tlb.pointee.validEntries() }
    }

    // MARK: Paging controls

    /// Sets `cpu`'s paging controls and flushes its TLB (its entries were cached under the old
    /// controls).
    func setPagingControls(_ controls: PagingControls, on cpu: Int) {
        let state = cpus + cpu
        state.pointee.mmuLock.lock()
        state.pointee.pagingControls = controls
        state.pointee.tlb.pointee.flushAll()
        state.pointee.mmuLock.unlock()
    }

    /// `cpu`'s paging controls.
    func pagingControls(on cpu: Int) -> PagingControls {
        cpus[cpu].withMmuLocked { cpus[cpu].pagingControls }
    }

    // MARK: User accesses

    @inlinable @inline(__always)
    func withUserAccess<R>(on cpu: Int, root: Paddr, _ body: (inout SimulatedMmu) -> R) -> R? {
        let state = cpus + cpu
        state.pointee.mmuLock.lock()
        defer { state.pointee.mmuLock.unlock() }
        guard state.pointee.activeRoot.load(ordering: .relaxed) == root.rawValue else { return nil }
        var mmu = SimulatedMmu(tlb: state.pointee.tlb, root: root, memoryBase: memoryBase,
                               controls: state.pointee.pagingControls)
        return body(&mmu)
    }
}
#endif

// What only a simulated machine has: host threads bound to its CPUs, and its CPUs' TLBs and
// paging controls made visible (statistics, contents for audits, controls for tests). A bare-metal
// build (`OSTD_BARE_METAL`, see MachinePlatform.swift) has none of it.

#if !OSTD_BARE_METAL
extension Machine {
    // MARK: CPUs

    /// Runs `body` with the calling thread bound to CPU `cpu`: allocations and frees it makes use
    /// that CPU's frame cache, without locks. Nested calls for the same CPU are free.
    ///
    /// - Precondition: the machine has CPU-local hooks, `cpu` exists, and no other thread is bound
    ///   to it ("cpu N is already bound to another thread").
    public func withCpu<R: ~Copyable, E: Error>(_ cpu: Int, _ body: () throws(E) -> R) throws(E) -> R {
        // SAFETY: every `state.pointee` here reads the immutable platform of the state this
        // `Machine` keeps live (MachineContext.swift's lifetime statement); `cpu` is checked
        // before it is bound.
        precondition(unsafe context.state.pointee.platform.hooks != nil,
                     "this machine has no CPU-local hooks; create it with cpuLocal:")
        precondition((0..<cpuCount).contains(cpu), "cpu \(cpu) does not exist (the machine has \(cpuCount))")
        return try unsafe context.state.pointee.platform.bind(cpu, body)
    }

    /// The CPU the calling thread is bound to on this machine, if any.
    public var currentCpu: Int? {
        // SAFETY: the immutable platform of the state this `Machine` keeps live.
        unsafe context.state.pointee.platform.currentCpu()
    }

    // MARK: TLBs

    /// The hit, miss and flush counts of `cpu`'s TLB.
    ///
    /// - Precondition: the machine has `cpu`.
    public func tlbStatistics(cpu: Int) -> TlbStatistics {
        precondition((0..<cpuCount).contains(cpu), "cpu \(cpu) does not exist (the machine has \(cpuCount))")
        // SAFETY: the immutable platform of the state this `Machine` keeps live; `cpu` checked above.
        return unsafe context.state.pointee.platform.tlbStatistics(on: cpu)
    }

    /// Sets `cpu`'s paging controls (CR0.WP, EFER.NXE, CR4.SMEP/SMAP, Page1GB, MAXPHYADDR), which
    /// its MMU decides every later access with (`X86Mmu`); its TLB is flushed. Every CPU starts
    /// with `PagingControls.standard`.
    ///
    /// - Precondition: the machine has `cpu`.
    @_spi(OSTDInternals) public func setPagingControls(_ controls: PagingControls, cpu: Int) {
        precondition((0..<cpuCount).contains(cpu), "cpu \(cpu) does not exist (the machine has \(cpuCount))")
        // SAFETY: the immutable platform of the state this `Machine` keeps live; `cpu` checked above.
        unsafe context.state.pointee.platform.setPagingControls(controls, on: cpu)
    }

    /// `cpu`'s paging controls.
    ///
    /// - Precondition: the machine has `cpu`.
    @_spi(OSTDInternals) public func pagingControls(cpu: Int) -> PagingControls {
        precondition((0..<cpuCount).contains(cpu), "cpu \(cpu) does not exist (the machine has \(cpuCount))")
        // SAFETY: the immutable platform of the state this `Machine` keeps live; `cpu` checked above.
        return unsafe context.state.pointee.platform.pagingControls(on: cpu)
    }

    /// The translations `cpu`'s TLB holds now (the simulated platform's; for audits).
    @_spi(OSTDInternals) public func tlbEntries(cpu: Int) -> [TlbEntryInfo] {
        precondition((0..<cpuCount).contains(cpu), "cpu \(cpu) does not exist (the machine has \(cpuCount))")
        // SAFETY: the immutable platform of the state this `Machine` keeps live; `cpu` checked above.
        return unsafe context.state.pointee.platform.tlbEntries(on: cpu)
    }
}

extension FrameAuditContext {
    /// The translations `cpu`'s TLB holds now.
    ///
    /// - Precondition: the machine has `cpu`.
    public func tlbEntries(cpu: Int) -> [TlbEntryInfo] {
        precondition((0..<cpuCount).contains(cpu), "cpu \(cpu) does not exist (the machine has \(cpuCount))")
        // SAFETY: the auditor is given this context during a frame operation, whose frames keep
        // the state live; the platform is immutable, and `cpu` was checked just above.
        return unsafe context.state.pointee.platform.tlbEntries(on: cpu)
    }
}
#endif

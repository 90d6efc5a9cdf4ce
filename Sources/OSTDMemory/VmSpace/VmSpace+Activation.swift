// Activating a space on a CPU (OSTD `VmSpace::activate`), through the platform.
//
// Making a space current on a CPU loads its root into CR3 (which flushes the CPU's TLB) and adds
// the CPU to the space's set; the CPU leaves the set of the space it replaces. Deliberate
// difference: a CPU does not keep its active space alive (OSTD stores an `Arc`); instead a space
// that goes away deactivates itself on every CPU, so no CPU keeps a dangling CR3.

extension VmSpace {
    /// The value a CPU records as its active space: this object's address. Only compared, and
    /// turned back into a reference by `activate` under the rule stated there.
    var identity: UInt {
        // SAFETY: takes the object's address as a number; no reference is counted or dereferenced.
        UInt(bitPattern: unsafe Unmanaged.passUnretained(self).toOpaque())
    }

    /// Makes this space current on `cpu` (OSTD `activate`): the CPU joins `cpus`, its CR3 is
    /// written (which flushes its TLB) and the previously active space loses the CPU.
    ///
    /// - Precondition: the machine has `cpu`.
    public func activate(on cpu: Int) {
        precondition((0..<context.cpuCount).contains(cpu),
                     "cpu \(cpu) does not exist (the machine has \(context.cpuCount))")
        context.platform.activate(root: rootPaddr, space: identity, on: cpu) { previous in
            cpus.add(cpu)
            guard previous != 0 else { return }
            // SAFETY: a space deactivates itself on every CPU before it goes, and the platform
            // runs this closure while no deactivation can run on `cpu`, so the identity the CPU
            // recorded names a live object.
            let other = unsafe Unmanaged<VmSpace>.fromOpaque(UnsafeRawPointer(bitPattern: previous)!).takeUnretainedValue()
            other.cpus.remove(cpu)
        }
    }

    /// Whether this space is the one active on `cpu` (OSTD's CPU-local `ACTIVATED_VM_SPACE`).
    public func isActive(on cpu: Int) -> Bool {
        precondition((0..<context.cpuCount).contains(cpu), "cpu \(cpu) does not exist")
        return context.platform.activeSpace(on: cpu) == identity
    }

    /// The CPU the caller runs on (the current one, or CPU 0), checked to have this space active.
    @inlinable @inline(__always)
    func executingCpu() throws(OSTDError) -> Int {
        let cpu = context.platform.executingCpu()
        guard context.platform.isActive(root: rootPaddr, on: cpu) else { throw .notActive(cpu: cpu) }
        return cpu
    }

    #if !OSTD_BARE_METAL
    /// The TLB statistics of `cpu` (see `Machine.tlbStatistics(cpu:)`).
    public func tlbStatistics(cpu: Int) -> TlbStatistics { machine.tlbStatistics(cpu: cpu) }
    #endif

    /// Clears this space from every CPU it may be active on (the space is going away).
    func deactivateEverywhere() {
        let me = identity
        for cpu in cpus.load() { context.platform.deactivate(space: me, on: cpu) }
    }
}

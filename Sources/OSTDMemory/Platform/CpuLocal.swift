// CPU-local variables (OSTD `cpu_local!`): one value per CPU, used by the CPU the caller runs on.
//
// A layer that keeps per-CPU state declares a `CpuLocal` of it and reaches its own CPU's value
// inside `Platform.withPreemptionDisabled`, which names the CPU and keeps the caller on it, so no
// other thread touches that value meanwhile: no lock, no atomic. Here the values are an array
// indexed by CPU; a bare-metal platform may place them at a `GS`-relative offset instead.

/// One `Value` per CPU.
@usableFromInline
struct CpuLocal<Value>: ~Copyable {
    @usableFromInline let values: UnsafeMutablePointer<Value>
    @usableFromInline let cpuCount: Int

    /// A variable on `cpuCount` CPUs, CPU `i` starting with `initial(i)`.
    init(cpuCount: Int, _ initial: (Int) -> Value) {
        values = .allocate(capacity: cpuCount)
        for cpu in 0..<cpuCount { (values + cpu).initialize(to: initial(cpu)) }
        self.cpuCount = cpuCount
    }

    deinit {
        values.deinitialize(count: cpuCount)
        values.deallocate()
    }

    /// CPU `cpu`'s value. Only that CPU, with preemption disabled, may use it while other CPUs
    /// run; anyone may at a quiescent point (no CPU running).
    @inlinable @inline(__always)
    func on(_ cpu: Int) -> UnsafeMutablePointer<Value> { values + cpu }
}

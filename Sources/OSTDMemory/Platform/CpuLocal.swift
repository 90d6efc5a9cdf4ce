// CPU-local variables (OSTD `cpu_local!`): one value per CPU, used by the CPU the caller runs on.
//
// A layer that keeps per-CPU state declares a `CpuLocal` of it and reaches its own CPU's value
// inside `Platform.withPreemptionDisabled`, which names the CPU and keeps the caller on it, so no
// other thread touches that value meanwhile: no lock, no atomic. Here the values are an array
// indexed by CPU; a bare-metal platform may place them at a `GS`-relative offset instead.

/// One `Value` per CPU.
///
/// `@safe`: the values are allocated and initialised by `init` and freed by `deinit`, once (the
/// variable is noncopyable). What `on(_:)` returns is a raw pointer, so every use of a value is
/// marked where it happens, under the rule stated there.
@safe @usableFromInline
struct CpuLocal<Value>: ~Copyable {
    @usableFromInline let values: UnsafeMutablePointer<Value>
    @usableFromInline let cpuCount: Int

    /// A variable on `cpuCount` CPUs, CPU `i` starting with `initial(i)`.
    init(cpuCount: Int, _ initial: (Int) -> Value) {
        // SAFETY: a fresh allocation of `cpuCount` values, each initialised once, in bounds.
        unsafe values = .allocate(capacity: cpuCount)
        for cpu in 0..<cpuCount { unsafe (values + cpu).initialize(to: initial(cpu)) }
        self.cpuCount = cpuCount
    }

    deinit {
        // SAFETY: the `cpuCount` values `init` initialised; the variable is noncopyable, so this
        // runs once, and no pointer from `on(_:)` is used after its owner is destroyed.
        unsafe values.deinitialize(count: cpuCount)
        unsafe values.deallocate()
    }

    /// CPU `cpu`'s value. Only that CPU, with preemption disabled, may use it while other CPUs
    /// run; anyone may at a quiescent point (no CPU running).
    @inlinable @inline(__always)
    func on(_ cpu: Int) -> UnsafeMutablePointer<Value> {
        // SAFETY: pointer arithmetic only; callers pass `cpu < cpuCount` (the current CPU, or a
        // loop over the CPUs) and dereference the result under the rule above.
        unsafe values + cpu
    }
}

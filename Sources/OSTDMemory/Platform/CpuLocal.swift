// CPU-local variables (OSTD `cpu_local!`): one value per CPU, used by the CPU the caller runs on.
//
// A layer that keeps per-CPU state declares a `CpuLocal` of it and reaches its own CPU's value
// inside `Platform.withPreemptionDisabled`, which names the CPU and keeps the caller on it, so no
// other thread touches that value meanwhile: no lock, no atomic. Here the values are an array
// indexed by CPU, each on cache lines of its own (two CPUs writing their own values in one line
// would make each other's writes cache misses: the scaling benchmarks measured two threads
// allocating frames at 0.55x one thread when their caches shared a line); a bare-metal platform
// may place them at a `GS`-relative offset instead.

/// One `Value` per CPU.
///
/// `@safe`: the values are allocated and initialised by `init` and freed by `deinit`, once (the
/// variable is noncopyable). What `on(_:)` returns is a raw pointer, so every use of a value is
/// marked where it happens, under the rule stated there.
@safe @usableFromInline
struct CpuLocal<Value>: ~Copyable {
    /// The first value; CPU `i`'s is `stride` bytes after CPU `i - 1`'s.
    @usableFromInline let base: UnsafeMutableRawPointer
    /// The distance between two CPUs' values: their size rounded up to whole cache lines.
    @usableFromInline let stride: Int
    @usableFromInline let cpuCount: Int

    /// A cache line's size on x86-64.
    static var cacheLine: Int { 64 }

    /// A variable on `cpuCount` CPUs, CPU `i` starting with `initial(i)`.
    init(cpuCount: Int, _ initial: (Int) -> Value) {
        let line = CpuLocal.cacheLine
        stride = (MemoryLayout<Value>.stride + line - 1) / line * line
        // SAFETY: a fresh allocation of `cpuCount` strides, line-aligned; each value is
        // initialised once, at its own stride, in bounds.
        unsafe base = .allocate(byteCount: stride * cpuCount, alignment: max(line, MemoryLayout<Value>.alignment))
        self.cpuCount = cpuCount
        for cpu in 0..<cpuCount {
            unsafe (base + cpu * stride).bindMemory(to: Value.self, capacity: 1).initialize(to: initial(cpu))
        }
    }

    deinit {
        // SAFETY: the `cpuCount` values `init` initialised; the variable is noncopyable, so this
        // runs once, and no pointer from `on(_:)` is used after its owner is destroyed.
        for cpu in 0..<cpuCount { unsafe on(cpu).deinitialize(count: 1) }
        unsafe base.deallocate()
    }

    /// CPU `cpu`'s value. Only that CPU, with preemption disabled, may use it while other CPUs
    /// run; anyone may at a quiescent point (no CPU running).
    @inlinable @inline(__always)
    func on(_ cpu: Int) -> UnsafeMutablePointer<Value> {
        // SAFETY: pointer arithmetic only, to memory bound to `Value` by `init`; callers pass
        // `cpu < cpuCount` (the current CPU, or a loop over the CPUs) and dereference the result
        // under the rule above.
        unsafe (base + cpu * stride).assumingMemoryBound(to: Value.self)
    }
}

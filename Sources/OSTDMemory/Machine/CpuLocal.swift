// Simulated CPUs and how the core learns which one the caller runs on.
//
// OSTD keeps per-CPU state (the frame cache, later the TLB) in CPU-local storage reached through
// the GS segment, and protects it by disabling preemption. Here a CPU is a record owned by the
// machine, and a host thread *binds* itself to one for the duration of `Machine.withCpu`: while it
// is bound, no other thread may use that CPU, which is what makes the per-CPU frame cache safe
// without atomics, exactly as disabled preemption does in the kernel.
//
// The core cannot see threads, so the host provides two C functions that read and write one
// thread-local word (`CpuLocalHooks`); a bare-metal kernel would read GS instead. A machine
// without hooks has no bound CPUs: every allocation takes the global, locked path.

import Synchronization

/// The two functions through which the core reads and sets the calling thread's current CPU.
public struct CpuLocalHooks: @unchecked Sendable {
    public typealias Get = @convention(c) () -> UnsafeMutableRawPointer?
    public typealias Set = @convention(c) (UnsafeMutableRawPointer?) -> Void

    public let get: Get
    public let set: Set

    public init(get: Get, set: Set) {
        self.get = get
        self.set = set
    }
}

/// One simulated CPU: its identity, whether a thread is bound to it, and its frame cache.
@usableFromInline
struct CpuLocalState: ~Copyable {
    @usableFromInline let id: Int
    @usableFromInline let context: UnsafeMutablePointer<MachineContext>
    /// Set while a thread is bound to this CPU.
    let bound: Atomic<Bool>
    /// Single frames kept for this CPU (OSTD's per-CPU `CacheOfSizes`, 1-frame part).
    @usableFromInline var frameCache: FrameCache

    init(id: Int, context: UnsafeMutablePointer<MachineContext>) {
        self.id = id
        self.context = context
        bound = Atomic(false)
        frameCache = FrameCache()
    }

    deinit { frameCache.deallocate() }
}

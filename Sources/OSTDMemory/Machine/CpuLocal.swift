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

/// One simulated CPU: its identity, whether a thread is bound to it, its frame cache, and its
/// MMU (what CR3 holds and the TLB).
@usableFromInline
struct CpuLocalState: ~Copyable {
    @usableFromInline let id: Int
    @usableFromInline let context: UnsafeMutablePointer<MachineContext>
    /// Set while a thread is bound to this CPU.
    let bound: Atomic<Bool>
    /// Single frames kept for this CPU (OSTD's per-CPU `CacheOfSizes`, 1-frame part).
    @usableFromInline var frameCache: FrameCache

    /// Guards `tlb` and changes of `activeRoot`. Held by this CPU while it translates and
    /// copies through its TLB, and by whoever flushes it; a remote flush therefore waits for an
    /// access in progress, as an IPI waits for the instruction to finish.
    @usableFromInline let mmuLock = OutOfLineSpinLock()
    /// CR3: the root of the active user page table, or 0 when none is active.
    @usableFromInline let activeRoot = Atomic<UInt64>(0)
    /// The identity of the active `VmSpace` (OSTD's CPU-local `ACTIVATED_VM_SPACE`), or 0.
    @usableFromInline let activeSpace = Atomic<UInt>(0)
    /// The TLB, out of line: it is mutated under `mmuLock` while other CPUs read this record.
    @usableFromInline let tlb: UnsafeMutablePointer<Tlb>

    init(id: Int, context: UnsafeMutablePointer<MachineContext>) {
        self.id = id
        self.context = context
        bound = Atomic(false)
        frameCache = FrameCache()
        tlb = .allocate(capacity: 1)
        tlb.initialize(to: Tlb())
    }

    deinit {
        frameCache.deallocate()
        tlb.deinitialize(count: 1)
        tlb.deallocate()
        mmuLock.deallocate()
    }
}

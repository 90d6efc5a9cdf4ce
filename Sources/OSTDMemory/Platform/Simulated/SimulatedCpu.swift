// One simulated CPU: whether a host thread is bound to it, and its MMU (CR3, the TLB and the
// paging controls its control registers hold).
//
// A host thread *binds* itself to a CPU for the duration of `Machine.withCpu`: while it is bound,
// no other thread may use that CPU, which is what a kernel gets by disabling preemption. The MMU
// state is guarded by `mmuLock`, held by the CPU while it translates and copies through its TLB
// and by whoever flushes it, so a remote flush waits for an access in progress, as an IPI waits
// for the instruction to finish.

#if !OSTD_BARE_METAL
import Synchronization

/// A simulated CPU.
///
/// `@safe`: `tlb` is allocated by `init` and freed by `deinit`, once (the record is
/// noncopyable), and used only under `mmuLock`.
@safe @usableFromInline
struct SimulatedCpu: ~Copyable {
    /// Set while a thread is bound to this CPU.
    let bound = Atomic<Bool>(false)
    /// Guards `tlb` and changes of `activeRoot` and `activeSpace`.
    @usableFromInline let mmuLock = OutOfLineSpinLock()
    /// CR3: the root of the active user page table, or 0 when none is active.
    @usableFromInline let activeRoot = Atomic<UInt64>(0)
    /// The identity of the active address space (OSTD's CPU-local `ACTIVATED_VM_SPACE`), or 0.
    @usableFromInline let activeSpace = Atomic<UInt>(0)
    /// The TLB, out of line: it is mutated under `mmuLock` while other CPUs read this record.
    @usableFromInline let tlb: UnsafeMutablePointer<Tlb>
    /// CR0.WP, CR4.SMEP/SMAP, EFER.NXE and what CPUID says of paging: what the MMU's rule
    /// (`X86Mmu`) is decided with. Changed only under `mmuLock`, with the TLB flushed.
    @usableFromInline var pagingControls = PagingControls.standard

    init() {
        // SAFETY: the TLB is a fresh allocation, initialised once.
        unsafe tlb = .allocate(capacity: 1)
        unsafe tlb.initialize(to: Tlb())
    }

    deinit {
        // SAFETY: the record is noncopyable, so this runs once, when `SimulatedPlatform.shutDown`
        // deinitialises the records: no thread is bound to the CPU and nothing uses its TLB or
        // lock any more.
        unsafe tlb.deinitialize(count: 1)
        unsafe tlb.deallocate()
        unsafe mmuLock.deallocate()
    }

    /// Runs `body` with the MMU lock held.
    @inlinable @inline(__always)
    func withMmuLocked<R>(_ body: () -> R) -> R {
        mmuLock.lock()
        defer { mmuLock.unlock() }
        return body()
    }
}
#endif

// What the memory-management core needs from a CPU: the platform protocol.
//
// The layers above the platform (frames, page tables, TLB flushes, address spaces, I/O) never
// touch a CPU directly. They ask the platform which CPU they run on (with preemption disabled, so
// the answer stays true and that CPU's `CpuLocal` values are theirs), load a page-table root into a CPU
// (CR3), flush TLBs, wait for a CPU to finish its page walks, and perform user-mode accesses.
// `SimulatedPlatform` implements it over simulated CPUs; the bare-metal kernel (Kernel/)
// implements the same requirements with `mov cr3`, `invlpg` and interrupts off, without touching
// the layers above. Which one a build uses is `MachinePlatform` (MachinePlatform.swift).
//
// The layers reach the platform as `some Platform` (`MachineRef.platform`), so they can use
// nothing but these requirements; the type is fixed at build time, so every call is direct.

/// The CPU operations of the memory-management core.
public protocol Platform {
    /// How a user-mode access translates virtual addresses on one CPU.
    associatedtype UserMmu: UserAddressTranslator

    /// The platform of a machine with `cpuCount` CPUs whose physical memory starts at
    /// `memoryBase` (the linear mapping), with `hooks` for CPU-local storage when the platform
    /// needs them. `Machine` creates it at boot.
    init(cpuCount: Int, hooks: CpuLocalHooks?, memoryBase: UnsafeMutableRawPointer)

    /// Called once when the machine is gone (after every frame came back).
    ///
    /// - Safety: called once, by the machine's state as it is destroyed; the platform (every
    ///   copy of it) is not used afterwards.
    @unsafe func shutDown()

    /// The number of CPUs; they are numbered `0 ..< cpuCount` (at most 64).
    var cpuCount: Int { get }

    /// Runs `body` with preemption disabled, passing the CPU the caller runs on, or `nil` when the
    /// caller is not on one of this platform's CPUs (a host thread that bound itself to none).
    /// While `body` runs the caller cannot move to another CPU, so that CPU's local state
    /// (its frame cache) is the caller's alone (OSTD `disable_preempt` + `CpuId::current`).
    func withPreemptionDisabled<R: ~Copyable, E: Error>(_ body: (Int?) throws(E) -> R) throws(E) -> R

    /// The CPU whose MMU the caller uses: the current CPU, or the boot CPU 0.
    func executingCpu() -> Int

    /// Loads `root` into `cpu`'s CR3, which flushes its non-global TLB entries, and records
    /// `space` (a non-zero identity chosen by the caller) as the address space active there
    /// (OSTD `VmSpace::activate`). Nothing happens if `space` is active there already. Otherwise
    /// `replacing` is called first, with the identity of the space active before (0 for none),
    /// while no other activation or deactivation and no access can run on `cpu`.
    func activate(root: Paddr, space: UInt, on cpu: Int, replacing: (UInt) -> Void)

    /// Clears `cpu`'s CR3 if `space` is the address space active there (a space going away).
    func deactivate(space: UInt, on cpu: Int)

    /// The identity of the address space active on `cpu`, 0 for none.
    func activeSpace(on cpu: Int) -> UInt

    /// Whether `root` is what `cpu`'s CR3 holds.
    func isActive(root: Paddr, on cpu: Int) -> Bool

    /// Performs `ops` on `cpu`'s TLB, or flushes it whole when `all` is set; returns once the
    /// CPU no longer caches what they invalidate (OSTD's IPI to `cpu` plus its handler).
    func flushTlb(_ ops: [TlbFlushOp], all: Bool, on cpu: Int)

    /// Waits until `cpu` is not in the middle of a page walk or user access, so that a page-table
    /// node it might have been walking can be freed (an RCU grace period for one CPU). Ordered as
    /// a lock taken and released: what an access on `cpu` did before this returns happens before
    /// the caller's next steps, and an access that starts later sees what the caller did before
    /// (a fault's read-side section relies on it, `Rcu.enterUnderLock`).
    func quiesce(_ cpu: Int)

    /// Runs `body` as a user-mode access on `cpu` through the page table at `root`: `body`
    /// translates addresses with the CPU's TLB and page walker and no flush of that CPU can
    /// happen meanwhile. Returns `nil` without running `body` when `root` is not active on `cpu`.
    func withUserAccess<R>(on cpu: Int, root: Paddr, _ body: (inout UserMmu) -> R) -> R?
}

/// Translates virtual addresses for user-mode accesses, as the MMU does (`X86Mmu`'s rule).
public protocol UserAddressTranslator {
    /// Where the byte at `va` is and how many bytes of its page follow, if a user-mode access
    /// (a write when `write` is set) may touch it; `nil` is a page fault, whose error code (as
    /// the CPU pushes it) is stored in `fault`.
    mutating func translate(_ va: Vaddr, write: Bool, fault: inout PageFaultErrorCode) -> UserTranslation?

    /// The bytes of the page at `va` (page-aligned: the page after a run) if a user-mode access
    /// may touch it and it begins at `paddr`, so that a run of physically contiguous pages goes
    /// on; otherwise `nil` (the page faults, or is elsewhere). Exactly
    /// `translate(va, write:)` compared with `paddr`, side effects included; a translator may
    /// answer the common case with less work (a TLB hit on a 4 KiB entry).
    mutating func continuation(_ va: Vaddr, at paddr: Paddr, write: Bool) -> Int?

    /// Where the byte at `va` is and how many bytes from it lie in one physically contiguous run
    /// of accessible pages, looking at the pages the next `limit` bytes touch (`limit > 0`) and
    /// no further: at least to the end of `va`'s page, at most to the end of the page of byte
    /// `va + limit - 1`; `nil` when `va` itself faults. Exactly `translateRunPageByPage`,
    /// side effects included; a translator may answer with less work (a run it remembers).
    mutating func translateRun(_ va: Vaddr, write: Bool, limit: Int, fault: inout PageFaultErrorCode) -> UserTranslation?
}

extension UserAddressTranslator {
    @inlinable @inline(__always)
    public mutating func continuation(_ va: Vaddr, at paddr: Paddr, write: Bool) -> Int? {
        guard let next = translate(va, write: write), next.paddr == paddr else { return nil }
        return next.bytesLeftInPage
    }

    @inlinable @inline(__always)
    public mutating func translateRun(_ va: Vaddr, write: Bool, limit: Int,
                                      fault: inout PageFaultErrorCode) -> UserTranslation? {
        translateRunPageByPage(va, write: write, limit: limit, fault: &fault)
    }

    /// `translateRun` page by page: `translate` for `va`, then `continuation` for each next page
    /// while the run is shorter than `limit` (in `bytesLeftInPage`: the run's length).
    @inlinable @inline(__always)
    public mutating func translateRunPageByPage(_ va: Vaddr, write: Bool, limit: Int,
                                                fault: inout PageFaultErrorCode) -> UserTranslation? {
        guard var run = translate(va, write: write, fault: &fault) else { return nil }
        extendRun(&run, from: va, write: write, limit: limit)
        return run
    }

    /// Lengthens `run`, the run from `va`, page by page (`continuation`) while it is shorter than
    /// `limit` and the next page follows it in physical memory.
    @inlinable @inline(__always)
    public mutating func extendRun(_ run: inout UserTranslation, from va: Vaddr, write: Bool, limit: Int) {
        // Wrapping: the length stays below `limit` plus a page, inside the caller's window.
        while run.bytesLeftInPage < limit {
            guard let next = continuation(Vaddr(va.rawValue &+ UInt64(run.bytesLeftInPage)),
                                          at: Paddr(run.paddr.rawValue &+ UInt64(run.bytesLeftInPage)), write: write)
            else { return }
            run.bytesLeftInPage &+= next
        }
    }

    /// `translate(_:write:fault:)` when the error code does not matter.
    @inlinable @inline(__always)
    public mutating func translate(_ va: Vaddr, write: Bool) -> UserTranslation? {
        var fault = PageFaultErrorCode()
        return translate(va, write: write, fault: &fault)
    }
}

/// A user-mode translation: the physical address of a byte and the bytes left in its page (for
/// a run, `translateRun`: in the run).
@frozen
public struct UserTranslation: Equatable, Sendable {
    public var paddr: Paddr
    public var bytesLeftInPage: Int
    /// Set when the translator answered a write from a run it remembers from an earlier write
    /// of exactly those pages, with no change of its entries since (so none of the frames was
    /// unmapped, let alone freed, in between). The I/O layer marks the frames of every write
    /// written (`MetaSlot.markWritten`), so it need not mark them again.
    public var repeatsWrite: Bool

    @inlinable
    public init(paddr: Paddr, bytesLeftInPage: Int, repeatsWrite: Bool = false) {
        self.paddr = paddr
        self.bytesLeftInPage = bytesLeftInPage
        self.repeatsWrite = repeatsWrite
    }
}

// The core's platform on bare-metal x86-64 with one CPU: CR3 loads, `invlpg` and full flushes,
// interrupts off while the CPU's frame cache is in use, and copies from and to user memory by a
// software walk over the linear map (`SoftwareMmu`); what ring 3 touches is translated by the
// real MMU.
//
// The kernel compiles the core's sources with `-D OSTD_BARE_METAL`, which leaves the simulated
// platform out and makes this type the machine's platform (`MachinePlatform`).

/// The machine's platform in this kernel.
@usableFromInline typealias MachinePlatform = BareMetalPlatform

/// The one CPU's state: what CR3 holds and which space is active.
public struct CpuState {
    var activeRoot: UInt64 = 0
    var activeSpace: UInt = 0
}

/// The kernel's own page table root, loaded when no user space is active.
nonisolated(unsafe) var kernelRoot: UInt64 = 0

/// The bare-metal x86-64 platform (see the file comment).
///
/// `@safe`: `memoryBase` is the linear map of all RAM, and `state` is allocated by `init` and
/// freed only by the `@unsafe` `shutDown()` when the machine is gone; the one CPU uses it
/// exclusively (see `state`).
@safe
public struct BareMetalPlatform: Platform {
    public typealias UserMmu = SoftwareMmu

    let memoryBase: UnsafeMutableRawPointer
    // SAFETY: allocated in `init`, freed in `shutDown`; read and written only on the one CPU, with
    // interrupts off or from the trap handler, so every `state.pointee` access below is exclusive.
    let state: UnsafeMutablePointer<CpuState>

    public init(cpuCount: Int, hooks: CpuLocalHooks?, memoryBase: UnsafeMutableRawPointer) {
        precondition(cpuCount == 1, "the bare-metal kernel runs on one CPU")
        // SAFETY: stores the linear map's base (the machine's memory, described by its region).
        unsafe self.memoryBase = memoryBase
        // SAFETY: the state word is the platform's alone, read and written with interrupts off or
        // from the only CPU's trap handler, and freed by `shutDown` when the machine is gone.
        unsafe state = .allocate(capacity: 1)
        unsafe state.initialize(to: CpuState())
    }

    /// - Safety: as `Platform.shutDown`: once, when the machine's state is destroyed.
    @unsafe
    public func shutDown() {
        // SAFETY: the allocation `init` made; the caller's contract makes this its last use.
        unsafe state.deallocate()
    }

    public var cpuCount: Int { 1 }

    /// Interrupts off: nothing else can run on the CPU while `body` uses its local state. (The
    /// kernel never enables them; this keeps the contract if it does.)
    public func withPreemptionDisabled<R: ~Copyable, E: Error>(_ body: (Int?) throws(E) -> R) throws(E) -> R {
        let enabled = interruptsSaveDisable()
        defer { interruptsRestore(enabled) }
        return try body(0)
    }

    public func executingCpu() -> Int { 0 }

    public func activate(root: Paddr, space: UInt, on cpu: Int, replacing: (UInt) -> Void) {
        // SAFETY: the live state word, used by the one CPU alone (see `state`).
        guard unsafe state.pointee.activeSpace != space else { return }
        replacing(unsafe state.pointee.activeSpace)
        unsafe state.pointee.activeSpace = space
        unsafe state.pointee.activeRoot = root.rawValue
        writeCr3(root.rawValue)
        announceRoot(root.rawValue)
    }

    public func deactivate(space: UInt, on cpu: Int) {
        // SAFETY: the live state word, used by the one CPU alone (see `state`).
        guard unsafe state.pointee.activeSpace == space else { return }
        unsafe state.pointee.activeSpace = 0
        unsafe state.pointee.activeRoot = 0
        writeCr3(kernelRoot)
        announceRoot(kernelRoot)
    }

    public func activeSpace(on cpu: Int) -> UInt {
        // SAFETY: the live state word, used by the one CPU alone (see `state`).
        unsafe state.pointee.activeSpace
    }

    public func isActive(root: Paddr, on cpu: Int) -> Bool {
        // SAFETY: the live state word, used by the one CPU alone (see `state`).
        unsafe state.pointee.activeRoot == root.rawValue
    }

    public func flushTlb(_ ops: [TlbFlushOp], all: Bool, on cpu: Int) {
        if all {
            writeCr3(readCr3())
            return
        }
        for op in ops {
            guard let pages = op.pages else {
                writeCr3(readCr3())
                return
            }
            var va = pages.lowerBound.rawValue
            while va < pages.upperBound.rawValue {
                invlpg(va)
                va += UInt64(pageSize)
            }
        }
    }

    /// One CPU, and no walker runs while the kernel does: a node detached by the kernel cannot be
    /// in use by a walk (the MMU's own walks of it ended with the TLB flush that preceded).
    public func quiesce(_ cpu: Int) {}

    public func withUserAccess<R>(on cpu: Int, root: Paddr, _ body: (inout SoftwareMmu) -> R) -> R? {
        // SAFETY: the live state word, used by the one CPU alone (see `state`).
        guard unsafe state.pointee.activeRoot == root.rawValue else { return nil }
        // SAFETY: `memoryBase` is the linear map of all RAM, where the walker reads page-table nodes;
        // `root` is the active space's table, whose nodes are freed only after a TLB flush, with
        // no walk in flight on the one CPU (`quiesce`).
        var mmu = unsafe SoftwareMmu(root: root, memoryBase: memoryBase, controls: PagingControls(page1GB: false))
        return body(&mmu)
    }
}

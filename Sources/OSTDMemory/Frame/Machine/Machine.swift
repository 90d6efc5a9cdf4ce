// A simulated machine: physical memory, its frame metadata, the frame allocator and the CPUs.
//
// This is where OSTD's boot sequence (`frame::meta::init`, `frame::allocator::init`) happens:
// the metadata region is laid out at physical address 0x1000, frame 0 and the metadata frames are
// reserved, and everything else goes to the buddy set. Boot writes only the buddy set's chunk
// heads: a reserved frame's slot is written when something first looks it up by address. The object is the public face of a
// `MachineContext` that handles reach through a `MachineRef`; `MachineContext.swift` says how long
// that state lives (it can outlive this object).

import Synchronization

// Sendable: its one stored property is the `MachineRef`, whose state is shared under the
// machine's spin lock (the buddy set), per-CPU exclusivity (the frame caches) or atomics (the
// slots' reference counts, the ledger).
/// A simulated machine with its own physical memory and frame allocator.
///
///     let machine = try Machine(memory: region, cpus: 2, cpuLocal: hooks)
///     let frame = try FrameAllocOptions().allocFrame(in: machine)
///     print(frame.paddr, frame.referenceCount)   // 0x402000 1
public final class Machine: @unchecked Sendable {
    @usableFromInline let context: MachineRef

    /// The largest machine: 2^32 - 2 frames (just under 16 TiB), so frame indices fit 32 bits.
    public static var maxMemorySize: Int { (Int(UInt32.max) - 1) << pageShift }
    /// The smallest machine: room for frame 0, its metadata and one free frame.
    public static var minMemorySize: Int { 3 * pageSize }

    /// Boots a machine on `memory`.
    ///
    /// - Parameters:
    ///   - memory: zero-filled memory for physical addresses `0 ..< memory.size`.
    ///   - cpus: the number of simulated CPUs (1 ... 64).
    ///   - cpuLocal: how to find the calling thread's CPU; without it no thread can bind to a CPU
    ///     and every allocation takes the locked global path.
    ///   - audit: keep the seeds' obligation ledger, counting every frame handle.
    ///   - auditor: shown every frame operation (`FrameAuditor`); implies `audit`.
    /// - Throws: `FrameError.invalidArgs` for a misaligned, too small or too large region or a
    ///   bad CPU count.
    public init(memory: PhysicalMemoryRegion, cpus: Int = 1, cpuLocal: CpuLocalHooks? = nil,
                audit: Bool = false, auditor: (any FrameAuditor)? = nil) throws(FrameError) {
        try Machine.validate(memory: memory, cpus: cpus)
        let frameCount = memory.size >> pageShift
        let metaFrames = (frameCount * MetaSlot.size + pageSize - 1) >> pageShift
        guard 1 + metaFrames < frameCount else {
            throw .invalidArgs("memory of \(memory.size) bytes leaves no frame after its metadata")
        }
        // SAFETY: a fresh allocation, initialised once with the context; the reference made from
        // it is this machine's, and the state is destroyed only as MachineContext.swift's lifetime
        // statement says (`orphan` below, or the last frame's return). The pool is filled below
        // without its lock: no other thread can reach the machine before `init` returns.
        let state = UnsafeMutablePointer<MachineContext>.allocate(capacity: 1)
        unsafe state.initialize(to: MachineContext(
            memory: memory, frameCount: frameCount, metaFrames: metaFrames,
            cpuCount: cpus, cpuLocal: cpuLocal, audit: audit, auditor: auditor))
        context = unsafe MachineRef(state)
        // Frame 0 and the metadata frames are reserved, but their slots are written on first use
        // (`MachineRef.reservedSlot`): boot writes O(log n) slots, whatever the memory size.
        // SAFETY: the pool of the state just made, which no other thread can reach yet (above).
        unsafe context.globalPool.pointee.buddy.addFreeMemory(start: 1 + metaFrames, count: frameCount - 1 - metaFrames)
    }

    deinit {
        // No thread can be in a read-side section of this machine any more (it would hold a
        // table, which holds the machine), so every node waiting for its grace period goes now.
        context.reclaimGracePeriodDrops(waiting: true)
        // SAFETY: the machine's one `deinit` is `orphan`'s one caller; afterwards only frame
        // holders use the state.
        unsafe context.orphan()
    }

    private static func validate(memory: PhysicalMemoryRegion, cpus: Int) throws(FrameError) {
        // SAFETY: reads the base's address as a number; nothing is dereferenced.
        guard unsafe Int(bitPattern: memory.base) & (pageSize - 1) == 0 else {
            throw .invalidArgs("physical memory base is not 4 KiB aligned")
        }
        guard memory.size & (pageSize - 1) == 0 else {
            throw .invalidArgs("memory size \(memory.size) is not a multiple of 4 KiB")
        }
        guard memory.size >= minMemorySize, memory.size <= maxMemorySize else {
            throw .invalidArgs("memory size \(memory.size) is outside \(minMemorySize) ... \(maxMemorySize)")
        }
        guard (1...64).contains(cpus) else {
            throw .invalidArgs("\(cpus) CPUs requested; a machine has 1 to 64")
        }
    }

    // MARK: Geometry

    /// The size of physical memory in bytes.
    public var memorySize: Int { context.memorySize }
    /// The number of 4 KiB frames, reserved ones included.
    public var frameCount: Int { context.frameCount }
    /// The number of simulated CPUs.
    public var cpuCount: Int { context.cpuCount }
    /// Whether the obligation ledger is kept.
    public var isAuditing: Bool { context.ledger != nil }
    /// The physical range of the metadata region.
    public var metadataRange: Range<Paddr> {
        // SAFETY: this `Machine` keeps its state live (the lifetime statement); the field is
        // immutable.
        Paddr(UInt64(pageSize)) ..< Paddr(UInt64(unsafe context.state.pointee.firstFreeFrame << pageShift))
    }
    /// The number of frames the allocator manages (all but frame 0 and the metadata region).
    public var allocatableFrames: Int {
        // SAFETY: as `metadataRange`.
        unsafe context.state.pointee.allocatableFrames
    }

    /// A view of the metadata slot of the frame at `paddr`.
    ///
    /// - Precondition: `paddr` is inside physical memory.
    public func metaSlot(of paddr: Paddr) -> MetaSlot {
        precondition(Int(paddr.rawValue) < memorySize, "physical address \(paddr) is outside memory")
        return context.reservedSlot(of: paddr) ?? context.slot(of: paddr)
    }

    // MARK: Allocator state

    /// Frames handed out and not yet returned to the allocator. At a quiescent point, zero means
    /// every frame has come back: nothing leaked.
    public var outstandingFrames: Int { context.outstandingFrames() }

    /// Free frames (in the buddy set and the CPU caches).
    public var freeFrames: Int { allocatableFrames - outstandingFrames }

    /// The number of free chunks of each order in the buddy set (index = order). Frames in CPU
    /// caches are not in chunks; `flushCpuCaches()` first for a fully coalesced picture.
    public var freeChunksByOrder: [Int] {
        // SAFETY: this `Machine` keeps its state live; the pool is read under the lock, held here.
        unsafe context.state.pointee.lock.lock()
        defer { unsafe context.state.pointee.lock.unlock() }
        return (0...BuddySet.maxOrder).map { unsafe context.globalPool.pointee.buddy.chunkCount(order: $0) }
    }

    /// The number of 2 MiB pageblocks that serve allocations below 2 MiB (`Pageblocks.swift`); the
    /// rest are whole or serve huge pages. O(pageblocks), for tests and reports.
    @_spi(OSTDInternals) public var smallPageblockCount: Int {
        // SAFETY: this `Machine` keeps its state live; the kinds are atomics.
        unsafe context.state.pointee.pageblocks.smallCount
    }

    /// What breaks the buddy set's invariant, in words (`BuddySet+Invariants.swift`); empty when it
    /// holds. O(free chunks), for tests.
    func allocatorInvariantViolations() -> [String] {
        // SAFETY: this `Machine` keeps its state live; the pool is read under the lock, held here.
        unsafe context.state.pointee.lock.lock()
        defer { unsafe context.state.pointee.lock.unlock() }
        return unsafe context.globalPool.pointee.buddy.invariantViolations()
    }

    /// Returns every CPU cache's frames to the buddy set, where they coalesce.
    ///
    /// - Precondition: no thread is bound to a CPU of this machine (a quiescent point).
    public func flushCpuCaches() {
        #if !OSTD_BARE_METAL
        for i in 0..<cpuCount {
            // SAFETY: this `Machine` keeps its state live; `i < cpuCount`.
            precondition(unsafe !context.state.pointee.platform.isBound(i),
                         "cpu \(i) is bound to a thread; flush caches at a quiescent point")
        }
        #endif
        // SAFETY: this `Machine` keeps its state live; `drainAllCachesLocked` needs the lock.
        unsafe context.state.pointee.lock.lock()
        context.drainAllCachesLocked()
        unsafe context.state.pointee.lock.unlock()
    }

    // MARK: Linear mapping

    /// The host address of physical address `paddr` (OSTD `paddr_to_vaddr`), for writing
    /// `count` bytes or fewer: the frames they fall in are marked written, so that a zeroed
    /// allocation fills them again (`MetaSlot.markWritten`). Bytes written past `count` may be
    /// handed out again unzeroed.
    ///
    /// - Precondition: `paddr ..< paddr + count` is inside physical memory and `count > 0`.
    public func pointer(to paddr: Paddr, count: Int = 1) -> UnsafeMutableRawPointer {
        precondition(count > 0 && Int(paddr.rawValue) <= memorySize - count,
                     "physical range \(paddr) + \(count) is outside memory")
        context.markWritten(paddr, count: count)
        // SAFETY: the range lies inside physical memory (checked), which the machine's context
        // keeps mapped while this `Machine` lives; the caller writes at most `count` bytes.
        return unsafe context.pointer(to: paddr)
    }

    /// The host address of physical address `paddr`, for reading only (nothing is marked).
    ///
    /// - Precondition: `paddr` is inside physical memory.
    public func readOnlyPointer(to paddr: Paddr) -> UnsafeRawPointer {
        precondition(Int(paddr.rawValue) < memorySize, "physical address \(paddr) is outside memory")
        // SAFETY: `paddr` lies inside physical memory (checked), which the machine's context keeps
        // mapped while this `Machine` lives; the pointer is typed read-only.
        return unsafe UnsafeRawPointer(context.pointer(to: paddr))
    }
}


// The state of one simulated machine, and `MachineRef`, the reference every handle holds to it.
//
// Frame handles are two words, a slot and a `MachineRef`, so that cloning and dropping a frame
// never touches a Swift reference count. The state therefore cannot be a class: it is allocated
// once, in memory no Swift reference owns, and its lifetime is stated once, here:
//
//     The state lives until the `Machine` object is gone *and* every frame the allocator handed
//     out has come back. Whoever holds a frame reference (a handle, a page-table entry, a kept
//     flush) may use its `MachineRef`; nothing else may use one once both have happened.
//
// `Machine.deinit` orphans the state; the return of the last frame then destroys it
// (`MachineRef.deallocRange`). Until then a frame that outlives its `Machine` still drops safely.
//
// Layout of the physical address space:
//
//     0x0000 ..< 0x1000                 frame 0, reserved (a null physical address)
//     0x1000 ..< 0x1000 + meta          the metadata region: 64 bytes per frame, usage `.meta`
//     ... ..< size                      free frames, handed to the buddy set at boot
//
// The reserved frames' slots are written on first lookup (`reservedSlot`), not at boot: a 16 TiB
// machine would otherwise write 4 GiB of slots before its first operation.

import Synchronization

/// `@safe`: the raw pointers are the machine's physical memory (`memoryBase ..< memoryBase +
/// memorySize`, described by the `PhysicalMemoryRegion` it was booted on), its metadata region
/// inside it, and the out-of-line pool; the context is reached only through a `MachineRef`, under
/// the lifetime statement above, and every dereference is marked where it happens.
@safe @usableFromInline
struct MachineContext: ~Copyable {
    /// Host address of physical address 0 (the linear mapping).
    @usableFromInline let memoryBase: UnsafeMutableRawPointer
    @usableFromInline let memorySize: Int
    @usableFromInline let frameCount: Int
    /// Host address of slot 0 (physical address 0x1000).
    @usableFromInline let metaBase: UnsafeMutableRawPointer
    /// Frames `0 ..< firstFreeFrame` are reserved (frame 0 and the metadata region).
    let firstFreeFrame: Int
    let release: PhysicalMemoryRegion.Release?
    /// The CPUs.
    @usableFromInline let platform: MachinePlatform
    /// Each CPU's cache of single free frames (the allocator's CPU-local state).
    @usableFromInline let frameCaches: CpuLocal<FrameCache>
    /// The kind of every 2 MiB pageblock: the buddy set's, which owns and writes them (under
    /// `lock`); read here, without the lock, by the free path of single frames.
    @usableFromInline let pageblocks: Pageblocks
    /// Per-slot obligation counts when auditing is on (the seeds' `frame_obligations`).
    @usableFromInline let ledger: ObligationLedger?
    /// The frame layer's auditor, if any (`FrameAuditor.swift`); set at boot, never changed.
    @usableFromInline let frameAuditor: (any FrameAuditor)?
    /// Read-side sections and grace periods for lock-free page-table walks.
    @usableFromInline let rcu: Rcu
    /// Frame references waiting for a grace period (`GracePeriodDrops.swift`).
    let gracePeriodDrops = GracePeriodDrops()
    #if DEBUG
    /// The `CoreMutants` switched on (tests of the audit; debug builds only).
    @usableFromInline let mutants = Atomic<UInt32>(0)
    /// Whether frames dropped after a grace period are poisoned first (tests of reclamation).
    let poisonsReclaimedNodes = Atomic<Bool>(false)
    #endif

    /// Guards `pool`.
    let lock = OutOfLineSpinLock()
    /// The mutable global state, out of line: mutating it must not count as writing the whole
    /// context, which other CPUs read without the lock (Swift's exclusivity rules; TSan checks).
    let pool: UnsafeMutablePointer<GlobalPool>

    init(memory: PhysicalMemoryRegion, frameCount: Int, metaFrames: Int, cpuCount: Int,
         cpuLocal: CpuLocalHooks?, audit: Bool, auditor: (any FrameAuditor)?) {
        // SAFETY: `memory` describes `memory.size` bytes of zero-filled, 4 KiB aligned memory
        // (its maker's promise, checked for alignment and size by `Machine.validate`); the
        // metadata region starts at physical address 0x1000 inside it, and the pool is a fresh
        // allocation initialised once.
        unsafe memoryBase = memory.base
        memorySize = memory.size
        self.frameCount = frameCount
        unsafe metaBase = memory.base + pageSize
        firstFreeFrame = 1 + metaFrames
        unsafe release = memory.release
        platform = unsafe MachinePlatform(cpuCount: cpuCount, hooks: cpuLocal, memoryBase: memory.base)
        frameCaches = CpuLocal(cpuCount: cpuCount) { _ in FrameCache() }
        rcu = Rcu(cpuCount: cpuCount, relax: cpuLocal?.relax)
        ledger = audit || auditor != nil ? ObligationLedger(frameCount: frameCount) : nil
        frameAuditor = auditor
        // SAFETY: the metadata region starts at physical address 0x1000 of `memory` (above).
        let buddy = unsafe BuddySet(metaBase: memory.base + pageSize, frameCount: frameCount)
        pageblocks = buddy.pageblocks
        // SAFETY: a fresh allocation, initialised once; freed only by `destroy`.
        unsafe pool = .allocate(capacity: 1)
        unsafe pool.initialize(to: GlobalPool(buddy: buddy))
    }

    /// Frames the allocator manages: everything but frame 0 and the metadata region.
    var allocatableFrames: Int { frameCount - firstFreeFrame }
}

/// The global allocator state, guarded by `MachineContext.lock`.
struct GlobalPool: ~Copyable {
    var buddy: BuddySet
    /// Set when the `Machine` object is gone; the last frame returned then releases everything.
    var orphaned = false
}

// Sendable: a pointer to the machine's state, every mutable part of which is guarded (see
// `Machine`); the state lives while any frame or handle can reach it (the file comment).
/// A reference to a machine's state (see the file comment for how long it may be used).
///
/// `@safe`: a reference is made only by the `@unsafe` `init(_:)` (in `Machine.init`), and is
/// used only by whoever holds the `Machine` or a frame reference of it, so `state` points at the
/// live context (the lifetime statement above). Each dereference below relies on that.
@safe @frozen @usableFromInline
struct MachineRef: Equatable, @unchecked Sendable {
    @usableFromInline let state: UnsafeMutablePointer<MachineContext>

    /// A reference to the context at `state`.
    ///
    /// - Safety: `state` is an initialised `MachineContext`, destroyed only as the lifetime
    ///   statement above says.
    @unsafe @inlinable @inline(__always)
    init(_ state: UnsafeMutablePointer<MachineContext>) {
        // SAFETY: only stores the pointer; the caller's contract covers its uses.
        unsafe self.state = state
    }

    /// The same machine (the state's address; nothing is dereferenced).
    @inlinable @inline(__always)
    static func == (a: MachineRef, b: MachineRef) -> Bool {
        // SAFETY: compares two addresses; neither is dereferenced.
        unsafe a.state == b.state
    }

    // MARK: Geometry

    // SAFETY: the context is live while its holder holds the machine or a frame (the lifetime
    // statement); these five fields are immutable after boot.
    @inlinable var memoryBase: UnsafeMutableRawPointer { unsafe state.pointee.memoryBase }
    @inlinable var memorySize: Int { unsafe state.pointee.memorySize }
    @inlinable var frameCount: Int { unsafe state.pointee.frameCount }
    @inlinable var metaBase: UnsafeMutableRawPointer { unsafe state.pointee.metaBase }
    @inlinable var ledger: ObligationLedger? { unsafe state.pointee.ledger }

    /// The slot of frame `index`. Callers pass a frame of this machine (`index < frameCount`):
    /// a handle's, an allocator's, or one checked against the memory size.
    @inlinable @inline(__always)
    func slot(index: Int) -> MetaSlot {
        // SAFETY: `metaBase + index * 64` is frame `index`'s slot in the live metadata region
        // (`index < frameCount`, as the callers guarantee).
        unsafe MetaSlot(metaBase + index << MetaSlot.sizeShift)
    }

    @inlinable @inline(__always)
    func slot(of paddr: Paddr) -> MetaSlot { slot(index: Int(paddr.rawValue >> UInt64(pageShift))) }

    @inlinable @inline(__always)
    func frameIndex(of slot: MetaSlot) -> Int {
        // SAFETY: address arithmetic between two pointers into the metadata region; nothing is
        // dereferenced.
        unsafe (slot.base - metaBase) >> MetaSlot.sizeShift
    }

    @inlinable @inline(__always)
    func paddr(of slot: MetaSlot) -> Paddr { Paddr(UInt64(frameIndex(of: slot)) << UInt64(pageShift)) }

    /// The host address of physical address `paddr` (OSTD `paddr_to_vaddr`).
    @inlinable @inline(__always)
    func pointer(to paddr: Paddr) -> UnsafeMutableRawPointer {
        // SAFETY: address arithmetic in the linear mapping; the caller, who gets a raw pointer,
        // keeps `paddr` inside memory and is marked where it dereferences it.
        unsafe memoryBase + Int(paddr.rawValue)
    }

    // MARK: Reserved frames

    /// The slot of `paddr` when it is a reserved frame (frame 0 or a metadata frame), written now
    /// if this is its first use; `nil` for an allocatable frame. Every lookup of a frame by an
    /// address from outside (`checkedSlot`, `Machine.metaSlot(of:)`) goes through here.
    func reservedSlot(of paddr: Paddr) -> MetaSlot? {
        let index = Int(paddr.rawValue >> UInt64(pageShift))
        // SAFETY: the live context (the lifetime statement); `firstFreeFrame` is immutable.
        guard unsafe index < state.pointee.firstFreeFrame else { return nil }
        let slot = slot(index: index)
        materializeReserved(slot, usage: index == 0 ? .reserved : .meta)
        return slot
    }

    /// Writes a reserved frame's slot as OSTD's boot does (one forgotten reference, usage
    /// `.reserved` or `.meta`) unless that is done. A reserved count never drops below one, so
    /// the slot is unused until written and busy only while a racing thread writes it.
    private func materializeReserved(_ slot: MetaSlot, usage: PageUsage) {
        if slot.claimUnused() == nil {
            slot.typeTagWord = FrameMetaTag(usage: usage, typeID: 3 + UInt32(usage.rawValue), untyped: false).word
            slot.publishShared()
            return
        }
        // SAFETY: the count word of a slot of this live machine, an atomic (`MetaSlot.refCountWord`).
        while unsafe slot.refCountWord.pointee.load(ordering: .acquiring) == ~0 {}
    }

    // MARK: Written frames (`MetaSlot.markWritten`)

    /// Records that frames `indices` may hold non-zero bytes.
    @inlinable
    func markWritten(frames indices: Range<Int>) {
        for index in indices { slot(index: index).markWritten() }
    }

    /// Records that the frames overlapping `count > 0` bytes from `paddr` may hold non-zero bytes
    /// (a write through the MMU or the linear mapping).
    @inlinable @inline(__always)
    func markWritten(_ paddr: Paddr, count: Int) {
        var index = Int(paddr.rawValue >> UInt64(pageShift))
        let last = Int((paddr.rawValue &+ UInt64(count) &- 1) >> UInt64(pageShift))
        repeat {
            slot(index: index).markWritten()
            index += 1
        } while index <= last
    }

    // MARK: CPUs

    /// The machine's CPUs, as the layers above may use them: through `Platform` alone.
    @inlinable @inline(__always)
    var platform: some Platform {
        // SAFETY: the live context (the lifetime statement); the platform value is immutable.
        unsafe state.pointee.platform
    }

    /// The number of CPUs.
    @inlinable var cpuCount: Int {
        // SAFETY: as `platform`.
        unsafe state.pointee.platform.cpuCount
    }

    // MARK: Lifetime

    /// Called by `Machine.deinit`: no thread can be bound to one of its CPUs any more (a binding
    /// holds the machine), so the caches drain safely; the state goes now if every frame is
    /// back, otherwise with the last frame returned.
    ///
    /// - Safety: called once, by `Machine.deinit`; afterwards only frame holders use the state.
    @unsafe
    func orphan() {
        // SAFETY: the live context (the `Machine` is still being destroyed); `pool` is used only
        // under `lock`, held here.
        unsafe state.pointee.lock.lock()
        drainAllCachesLocked()
        unsafe state.pointee.pool.pointee.orphaned = true
        let allBack = unsafe state.pointee.pool.pointee.buddy.freeFrames == state.pointee.allocatableFrames
        unsafe state.pointee.lock.unlock()
        // SAFETY: the machine is gone and every frame is back, so nothing can reach the state any
        // more (the lifetime statement): this is its last use.
        if allBack { unsafe destroy() }
    }

    /// Frees the state and hands the memory back.
    ///
    /// - Safety: the lifetime statement's end: the `Machine` is gone and every frame is back, so
    ///   no one uses this reference, or any other to the same state, afterwards. Called once.
    @unsafe
    func destroy() {
        // SAFETY: the caller's contract: this is the last use of the state and of everything it
        // owns (each freed once, here, in an order in which nothing freed is used again).
        let base = unsafe memoryBase
        let size = memorySize
        let release = unsafe state.pointee.release
        let cpuCount = self.cpuCount
        unsafe state.pointee.ledger?.deallocate()
        unsafe state.pointee.pool.deinitialize(count: 1)
        unsafe state.pointee.pool.deallocate()
        unsafe state.pointee.lock.deallocate()
        for i in 0..<cpuCount { unsafe state.pointee.frameCaches.on(i).pointee.deallocate() }
        unsafe state.pointee.platform.shutDown()
        unsafe state.pointee.rcu.deallocate()
        unsafe state.pointee.gracePeriodDrops.deallocate()
        // SAFETY: the context itself goes last but one (nothing reads it afterwards), then the
        // memory goes back to its provider, which no frame or slot of this machine can reach now.
        unsafe state.deinitialize(count: 1)
        unsafe state.deallocate()
        unsafe release?(base, size)
    }
}

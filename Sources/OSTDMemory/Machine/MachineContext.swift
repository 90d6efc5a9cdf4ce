// The state of one simulated machine, in memory that no Swift reference owns.
//
// Frame handles are two words, a slot pointer and a pointer to this context, so that cloning and
// dropping a frame never touches a Swift reference count. The context therefore cannot be a
// class: it is allocated once and destroyed only when both the `Machine` object is gone and every
// frame has come back to the allocator (see `Machine.deinit` and `releaseIfOrphaned`). Until then
// a frame that outlives its `Machine` object still drops safely.
//
// Layout of the physical address space:
//
//     0x0000 ..< 0x1000                 frame 0, reserved (a null physical address)
//     0x1000 ..< 0x1000 + meta          the metadata region: 64 bytes per frame, usage `.meta`
//     ... ..< size                      free frames, handed to the buddy set at boot

import Synchronization

@usableFromInline
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
    @usableFromInline let cpuLocal: CpuLocalHooks?
    /// The simulated CPUs.
    @usableFromInline let cpus: UnsafeMutablePointer<CpuLocalState>
    let cpuCount: Int
    /// Per-slot obligation counts when auditing is on (the seeds' `frame_obligations`).
    @usableFromInline let ledger: ObligationLedger?

    /// Guards `pool`.
    let lock = OutOfLineSpinLock()
    /// The mutable global state, out of line: mutating it must not count as writing the whole
    /// context, which other CPUs read without the lock (Swift's exclusivity rules; TSan checks).
    let pool: UnsafeMutablePointer<GlobalPool>

    init(memory: PhysicalMemoryRegion, frameCount: Int, metaFrames: Int,
         cpus: UnsafeMutablePointer<CpuLocalState>, cpuCount: Int,
         cpuLocal: CpuLocalHooks?, audit: Bool) {
        memoryBase = memory.base
        memorySize = memory.size
        self.frameCount = frameCount
        metaBase = memory.base + pageSize
        firstFreeFrame = 1 + metaFrames
        release = memory.release
        self.cpuLocal = cpuLocal
        self.cpus = cpus
        self.cpuCount = cpuCount
        ledger = audit ? ObligationLedger(frameCount: frameCount) : nil
        pool = .allocate(capacity: 1)
        pool.initialize(to: GlobalPool(buddy: BuddySet(metaBase: memory.base + pageSize, frameCount: frameCount)))
    }

    /// Frames the allocator manages: everything but frame 0 and the metadata region.
    var allocatableFrames: Int { frameCount - firstFreeFrame }

    // MARK: Addresses

    @inlinable @inline(__always)
    func slot(index: Int) -> MetaSlot { MetaSlot(metaBase + index << MetaSlot.sizeShift) }

    @inlinable @inline(__always)
    func slot(of paddr: Paddr) -> MetaSlot { slot(index: Int(paddr.rawValue >> UInt64(pageShift))) }

    @inlinable @inline(__always)
    func frameIndex(of slot: MetaSlot) -> Int { (slot.base - metaBase) >> MetaSlot.sizeShift }

    @inlinable @inline(__always)
    func paddr(of slot: MetaSlot) -> Paddr { Paddr(UInt64(frameIndex(of: slot)) << UInt64(pageShift)) }

    /// The host address of physical address `paddr` (OSTD `paddr_to_vaddr`).
    @inlinable @inline(__always)
    func pointer(to paddr: Paddr) -> UnsafeMutableRawPointer { memoryBase + Int(paddr.rawValue) }

    /// The CPU the calling thread is bound to, if it is one of this machine's.
    @inlinable @inline(__always)
    func currentCpu(of me: UnsafeMutablePointer<MachineContext>) -> UnsafeMutablePointer<CpuLocalState>? {
        guard let hooks = cpuLocal, let raw = hooks.get() else { return nil }
        let cpu = raw.assumingMemoryBound(to: CpuLocalState.self)
        return cpu.pointee.context == me ? cpu : nil
    }

    /// The CPU whose MMU the calling thread uses: the one it is bound to, or CPU 0 for a thread
    /// bound to none (a one-CPU program, or the boot CPU).
    @inlinable @inline(__always)
    func executingCpu(of me: UnsafeMutablePointer<MachineContext>) -> UnsafeMutablePointer<CpuLocalState> {
        currentCpu(of: me) ?? cpus
    }
}

/// The global allocator state, guarded by `MachineContext.lock`.
struct GlobalPool: ~Copyable {
    var buddy: BuddySet
    /// Set when the `Machine` object is gone; the last frame returned then releases everything.
    var orphaned = false
}

/// Pointer-level operations: they take the context by pointer because they may destroy it.
extension UnsafeMutablePointer where Pointee == MachineContext {
    /// The global pool, reached with a read of the context (a mutation through
    /// `pointee.pool.pointee` would formally modify the whole context).
    @inline(__always)
    var globalPool: UnsafeMutablePointer<GlobalPool> { pointee.pool }

    // MARK: Frame allocation

    /// Allocates one frame, from the current CPU's cache when the caller is bound to a CPU.
    @inlinable @inline(__always)
    func allocFrame() -> Int? {
        if let cpu = pointee.currentCpu(of: self) {
            if let index = cpu.pointee.frameCache.pop() { return index }
            return refillCache(cpu)
        }
        return allocChunk(order: 0)
    }

    /// Returns one frame whose slot has just become `UNUSED`.
    @inlinable @inline(__always)
    func deallocFrame(_ index: Int) {
        guard let cpu = pointee.currentCpu(of: self) else { return deallocRange(index, count: 1) }
        if !cpu.pointee.frameCache.push(index) { flushCacheAndPush(cpu, index) }
    }

    /// Allocates a chunk of `2^order` frames from the global buddy set.
    @usableFromInline
    func allocChunk(order: BuddyOrder) -> Int? {
        pointee.lock.lock()
        defer { pointee.lock.unlock() }
        return globalPool.pointee.buddy.alloc(order: order)
    }

    /// Allocates `count` contiguous frames aligned to the next power of two; the surplus of the
    /// power-of-two chunk goes straight back (OSTD pools' `alloc`).
    @usableFromInline
    func allocContiguous(count: Int) -> Int? {
        let order = greaterOrderOf(frames: count)
        guard order <= BuddySet.maxOrder else { return nil }
        pointee.lock.lock()
        defer { pointee.lock.unlock() }
        guard let index = globalPool.pointee.buddy.alloc(order: order) else { return nil }
        let surplus = framesOfOrder(order) - count
        if surplus > 0 { globalPool.pointee.buddy.free(range: index + count, count: surplus) }
        return index
    }

    /// Returns the frames `start ..< start + count`, all `UNUSED`.
    @usableFromInline
    func deallocRange(_ start: Int, count: Int) {
        pointee.lock.lock()
        globalPool.pointee.buddy.free(range: start, count: count)
        let destroy = globalPool.pointee.orphaned && globalPool.pointee.buddy.freeFrames == pointee.allocatableFrames
        pointee.lock.unlock()
        if destroy { destroyContext() }
    }

    /// Refills an empty CPU cache with one 32-frame chunk (or single frames when memory is too
    /// fragmented for one) and returns one frame of it.
    @usableFromInline
    func refillCache(_ cpu: UnsafeMutablePointer<CpuLocalState>) -> Int? {
        let batch = framesOfOrder(FrameCache.batchOrder)
        pointee.lock.lock()
        defer { pointee.lock.unlock() }
        if let chunk = globalPool.pointee.buddy.alloc(order: FrameCache.batchOrder) {
            for i in stride(from: batch - 1, through: 1, by: -1) { _ = cpu.pointee.frameCache.push(chunk + i) }
            return chunk
        }
        for _ in 1..<batch {
            guard let index = globalPool.pointee.buddy.alloc(order: 0) else { break }
            _ = cpu.pointee.frameCache.push(index)
        }
        return globalPool.pointee.buddy.alloc(order: 0) ?? cpu.pointee.frameCache.pop()
    }

    /// Returns the oldest half of a full CPU cache to the buddy set, then caches `index`.
    @usableFromInline
    func flushCacheAndPush(_ cpu: UnsafeMutablePointer<CpuLocalState>, _ index: Int) {
        pointee.lock.lock()
        cpu.pointee.frameCache.drainOldest(FrameCache.capacity / 2) { globalPool.pointee.buddy.free($0, order: 0) }
        pointee.lock.unlock()
        _ = cpu.pointee.frameCache.push(index)
    }

    /// Returns every frame of every CPU cache to the buddy set. The caller holds the lock, and no
    /// thread may be bound to a CPU.
    func drainAllCachesLocked() {
        for i in 0..<pointee.cpuCount {
            pointee.cpus[i].frameCache.drainOldest(FrameCache.capacity) { globalPool.pointee.buddy.free($0, order: 0) }
        }
    }

    // MARK: Accounting

    /// Frames not in the allocator: handed out and not yet returned. Exact at a quiescent point.
    func outstandingFrames() -> Int {
        pointee.lock.lock()
        defer { pointee.lock.unlock() }
        var free = globalPool.pointee.buddy.freeFrames
        for i in 0..<pointee.cpuCount { free += pointee.cpus[i].frameCache.count }
        return pointee.allocatableFrames - free
    }

    // MARK: Lifetime

    /// Called by `Machine.deinit`: no thread can be bound to one of its CPUs any more (a binding
    /// holds the machine), so the caches drain safely; the context goes now if every frame is
    /// back, otherwise with the last frame returned.
    func orphan() {
        pointee.lock.lock()
        drainAllCachesLocked()
        globalPool.pointee.orphaned = true
        let destroy = globalPool.pointee.buddy.freeFrames == pointee.allocatableFrames
        pointee.lock.unlock()
        if destroy { destroyContext() }
    }

    private func destroyContext() {
        let base = pointee.memoryBase
        let size = pointee.memorySize
        let release = pointee.release
        let cpus = pointee.cpus
        let cpuCount = pointee.cpuCount
        pointee.ledger?.deallocate()
        pointee.pool.deinitialize(count: 1)
        pointee.pool.deallocate()
        pointee.lock.deallocate()
        cpus.deinitialize(count: cpuCount)
        cpus.deallocate()
        deinitialize(count: 1)
        deallocate()
        release?(base, size)
    }
}

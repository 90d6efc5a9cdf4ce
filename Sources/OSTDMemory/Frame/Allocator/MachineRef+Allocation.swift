// The allocator's paths through a machine's state: per-CPU caches in front of the buddy set.
//
// Single frames come from the calling CPU's cache, without a lock, when the caller runs on a CPU
// (the platform's current CPU, with preemption disabled); otherwise, and for segments, from the
// buddy set under the machine's spin lock. A single frame freed goes to the CPU's cache only when
// its pageblock serves small allocations; the pieces of a split huge page go straight back to the
// buddy set, where they coalesce (`Pageblocks.swift`, and the grouping by size in
// `BuddySet.swift`).
//
// States: frames in the buddy set are `UNUSED` (a free chunk's head `UNIQUE`, as in OSTD); frames
// in a cache, and a single frame on its way out, are held by the allocator (`UNIQUE`,
// `CachedFrame.tag`: MetaSlot.swift's file comment). Who writes the count of a frame the
// allocator has:
//
//   - the cache's CPU: the free path (busy → held), the allocation (held → busy, plain stores);
//   - the allocator under its lock: a refill (`UNUSED` → held), a flush (held → `UNUSED`), the
//     buddy set's pushes and removes (`UNUSED` ↔ a free chunk's head, plain stores);
//   - a claim by address (`Frame.fromUnused` and its kin): a CAS `UNUSED → 0`, under the lock
//     (`claimUnusedByAddress`), so that it never races with the plain stores above. It fails on a
//     held frame; on a frame inside a free chunk it succeeds, as in OSTD, and the allocator
//     finds the frame in use when it hands it out (`allocatorReturnedInUse`).
//
// Everything else only reads a free frame's count (`fromInUse`, introspection).

extension MachineRef {
    /// The global pool, reached with a read of the state (a mutation through
    /// `state.pointee.pool.pointee` would formally modify the whole state).
    @inline(__always)
    var globalPool: UnsafeMutablePointer<GlobalPool> {
        // SAFETY: reads the immutable `pool` pointer of the live context (the lifetime statement);
        // its users dereference it under `lock`, marked there.
        unsafe state.pointee.pool
    }

    // MARK: Frame allocation

    /// Allocates one frame, from the current CPU's cache when the caller runs on a CPU. The frame
    /// is held by the allocator (`CachedFrame.tag`) and the caller's alone: it claims it with
    /// `MetaSlot.claimAllocatorHeld`.
    @inlinable @inline(__always)
    func allocFrame() -> Int? {
        platform.withPreemptionDisabled { cpu in
            guard let cpu else { return allocFrameLocked() }
            // SAFETY: `cpu` is the caller's current CPU with preemption disabled, so its cache in
            // the live context is this thread's alone until the closure returns (`CpuLocal`).
            let cache = unsafe state.pointee.frameCaches.on(cpu)
            if let index = unsafe cache.pointee.pop() { return index }
            return unsafe refillCache(cache)
        }
    }

    /// Returns one frame whose last reference the caller has just dropped (its slot busy, the
    /// caller's): a frame of a small pageblock to the current CPU's cache, held by the allocator;
    /// any other (a piece of a split huge page), `UNUSED`, straight to the buddy set, where it
    /// coalesces back into its huge block (`Pageblocks.swift`).
    @inlinable @inline(__always)
    func deallocFrame(_ index: Int) {
        let slot = slot(index: index)
        // SAFETY: the live context; `pageblocks` is immutable and `index` a frame of the machine.
        guard unsafe state.pointee.pageblocks.isSmall(frame: index) else { return deallocFrameToBuddy(index) }
        platform.withPreemptionDisabled { cpu in
            guard let cpu else { return deallocFrameToBuddy(index) }
            // SAFETY: as in `allocFrame`: the current CPU's cache, this thread's alone.
            let cache = unsafe state.pointee.frameCaches.on(cpu)
            slot.storeAllocatorHeld(tag: CachedFrame.tag)
            if unsafe !cache.pointee.push(index) { unsafe flushCacheAndPush(cache, index) }
        }
    }

    /// `deallocFrame` to the buddy set: the slot `UNUSED`, then the frame returned.
    @usableFromInline @inline(never)
    func deallocFrameToBuddy(_ index: Int) {
        slot(index: index).storeUnused()
        deallocRange(index, count: 1)
    }

    /// Allocates one frame from the buddy set, for a thread on no CPU; held by the allocator, as
    /// `allocFrame` returns it.
    @usableFromInline
    func allocFrameLocked() -> Int? {
        // SAFETY: the live context (the lifetime statement); the pool is used only under `lock`,
        // held here.
        unsafe state.pointee.lock.lock()
        defer { unsafe state.pointee.lock.unlock() }
        guard let index = unsafe globalPool.pointee.buddy.alloc(order: 0) else { return nil }
        holdFrameLocked(index)
        return index
    }

    /// Makes a frame the buddy set has just handed out (`UNUSED`) held by the allocator, with
    /// plain stores. The caller holds the lock, which every claim by address takes; a frame not
    /// `UNUSED` was claimed by address while it was free (OSTD would fail the same way).
    @inline(__always)
    func holdFrameLocked(_ index: Int) {
        let slot = slot(index: index)
        if _slowPath(slot.referenceCount != MetaSlot.refCountUnused) { allocatorReturnedInUse(paddr(of: slot)) }
        slot.storeAllocatorHeld(tag: CachedFrame.tag)
    }

    /// Claims the unused frame of `slot` by address (`Frame.fromUnused` and its kin: OSTD's
    /// `get_from_unused`), under the allocator's lock; the state found when it is not unused.
    func claimUnusedByAddress(_ slot: MetaSlot) -> MetaSlotStatus? {
        // SAFETY: the live context; the lock orders this claim with the allocator's plain stores
        // on free frames (the file comment).
        unsafe state.pointee.lock.lock()
        defer { unsafe state.pointee.lock.unlock() }
        return slot.claimUnused()
    }

    /// Allocates `count` contiguous frames aligned to the next power of two; the surplus of the
    /// power-of-two chunk goes straight back (OSTD pools' `alloc`).
    @usableFromInline
    func allocContiguous(count: Int) -> Int? {
        let order = greaterOrderOf(frames: count)
        guard order <= BuddySet.maxOrder else { return nil }
        // SAFETY: the live context; the pool is used only under `lock`, held here.
        unsafe state.pointee.lock.lock()
        defer { unsafe state.pointee.lock.unlock() }
        guard let index = unsafe globalPool.pointee.buddy.alloc(order: order) else { return nil }
        let surplus = framesOfOrder(order) - count
        if surplus > 0 { unsafe globalPool.pointee.buddy.free(range: index + count, count: surplus) }
        return index
    }

    /// Returns the frames `start ..< start + count`, all `UNUSED`; the last frame of an orphaned
    /// machine destroys its state. Never inlined: inlined with the buddy set's free path into a
    /// page table's teardown, it made unmap-4k-seq 46e6 instructions dearer (register pressure in
    /// the loop over the entries).
    @usableFromInline @inline(never)
    func deallocRange(_ start: Int, count: Int) {
        // SAFETY: the live context (the caller held these frames); the pool is used only under
        // `lock`, held here.
        unsafe state.pointee.lock.lock()
        unsafe globalPool.pointee.buddy.free(range: start, count: count)
        let lastFrame = unsafe globalPool.pointee.orphaned && globalPool.pointee.buddy.freeFrames == state.pointee.allocatableFrames
        unsafe state.pointee.lock.unlock()
        // SAFETY: the `Machine` is gone (orphaned) and these were the last frames out, so no one
        // else can reach the state (the lifetime statement), and the caller, whose frames these
        // were, does not use it after this call.
        if lastFrame { unsafe destroy() }
    }

    /// Refills an empty CPU cache with about 32 frames (one chunk, or the small pageblocks'
    /// scattered ones: `BuddySet.allocBatch`) and returns one of them.
    ///
    /// - Safety: `cache` is the calling thread's current CPU's cache, with preemption disabled.
    @unsafe @usableFromInline
    func refillCache(_ cache: UnsafeMutablePointer<FrameCache>) -> Int? {
        // SAFETY: the live context; the pool is used only under `lock`, held here, and `cache` is
        // this thread's alone (the caller's contract). The cache is empty, and a batch is fewer
        // than 48 frames, so every push fits.
        unsafe state.pointee.lock.lock()
        defer { unsafe state.pointee.lock.unlock() }
        let taken = unsafe globalPool.pointee.buddy.allocBatch(order: FrameCache.batchOrder) { chunk, order in
            // Highest first, so that the frames come out in address order.
            for i in stride(from: framesOfOrder(order) - 1, through: 0, by: -1) {
                holdFrameLocked(chunk + i)
                _ = unsafe cache.pointee.push(chunk + i)
            }
        }
        return taken == 0 ? nil : unsafe cache.pointee.pop()
    }

    /// Returns the oldest half of a full CPU cache to the buddy set, then caches `index`.
    ///
    /// - Safety: as `refillCache`.
    @unsafe @usableFromInline
    func flushCacheAndPush(_ cache: UnsafeMutablePointer<FrameCache>, _ index: Int) {
        // SAFETY: the live context; the pool is used only under `lock`, held here, and `cache` is
        // this thread's alone (the caller's contract).
        unsafe state.pointee.lock.lock()
        unsafe cache.pointee.drainOldest(FrameCache.capacity / 2) { returnCachedFrameLocked($0) }
        unsafe state.pointee.lock.unlock()
        _ = unsafe cache.pointee.push(index)
    }

    /// Returns every frame of every CPU cache to the buddy set. The caller holds the lock, and no
    /// thread may be bound to a CPU.
    func drainAllCachesLocked() {
        for i in 0..<cpuCount {
            // SAFETY: the live context; the caller holds `lock` (for the pool), and no thread is
            // bound to a CPU, so no one else uses the CPU caches (`CpuLocal`'s quiescent point).
            unsafe state.pointee.frameCaches.on(i).pointee.drainOldest(FrameCache.capacity) { returnCachedFrameLocked($0) }
        }
    }

    /// Returns a frame of a CPU cache to the buddy set: `UNUSED`, then freed. The caller holds
    /// the lock.
    func returnCachedFrameLocked(_ index: Int) {
        slot(index: index).storeUnused()
        // SAFETY: the live context; the caller holds `lock`, under which the pool is used.
        unsafe globalPool.pointee.buddy.free(index, order: 0)
    }

    // MARK: Accounting

    /// Frames not in the allocator: handed out and not yet returned. Exact at a quiescent point.
    func outstandingFrames() -> Int {
        // SAFETY: the live context; the pool is read under `lock`, held here. The CPU caches'
        // counts are plain words their CPUs change without that lock: the read is race-free (and
        // exact) only at a quiescent point, which is where the doc says to call this; called
        // while CPUs run, it races with them on a live, initialised `Int` (a stale count).
        unsafe state.pointee.lock.lock()
        defer { unsafe state.pointee.lock.unlock() }
        var free = unsafe globalPool.pointee.buddy.freeFrames
        for i in 0..<cpuCount { free += unsafe state.pointee.frameCaches.on(i).pointee.count }
        return unsafe state.pointee.allocatableFrames - free
    }
}

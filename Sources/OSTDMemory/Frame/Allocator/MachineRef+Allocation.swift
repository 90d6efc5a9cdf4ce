// The allocator's paths through a machine's state: per-CPU caches in front of the buddy set.
//
// Single frames come from the calling CPU's cache, without a lock, when the caller runs on a CPU
// (the platform's current CPU, with preemption disabled); otherwise, and for segments, from the
// buddy set under the machine's spin lock. A single frame freed goes to the CPU's cache only when
// its pageblock serves small allocations; the pieces of a split huge page go straight back to the
// buddy set, where they coalesce (`Pageblocks.swift`, and the grouping by size in
// `BuddySet.swift`).
//
// States: a free frame in a CPU's cache is held by the allocator (`UNIQUE`, `HeldFrame.tag`:
// MetaSlot.swift's file comment) when it came back through the single-frame free path; in the
// buddy set it is a chunk's head (`UNIQUE`, OSTD's free-head tag) or `UNUSED`, as in OSTD.
// Refills write no slot. Who writes the count of a free frame:
//
//   - the free path: busy → held (the frame's last holder, on a slot it has just written);
//   - the allocation: held → busy with plain stores, `UNUSED` → busy with OSTD's CAS
//     (`MetaSlot.claimFree`), by the thread the allocator handed the frame to;
//   - the buddy set, under the lock: held or `UNUSED` → a chunk's head → held or `UNUSED`
//     (plain stores);
//   - a claim by address (`Frame.fromUnused` and its kin): a CAS `UNUSED → 0`, under the lock
//     (`claimUnusedByAddress`), so that it never races with the buddy set's plain stores. It
//     fails on a held frame and a chunk's head; on an `UNUSED` one it succeeds, as in OSTD, and
//     the allocator finds the frame in use when it hands it out (`allocatorReturnedInUse`).
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
    /// is free, held or `UNUSED`, and handed to the caller alone, who claims it with
    /// `MetaSlot.claimFree`.
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
    /// caller's), held by the allocator from now on: a frame of a small pageblock to the current
    /// CPU's cache; any other (a piece of a split huge page) straight to the buddy set, where it
    /// coalesces back into its huge block (`Pageblocks.swift`).
    @inlinable @inline(__always)
    func deallocFrame(_ index: Int) {
        slot(index: index).storeAllocatorHeld(tag: HeldFrame.tag)
        // SAFETY: the live context; `pageblocks` is immutable and `index` a frame of the machine.
        guard unsafe state.pointee.pageblocks.isSmall(frame: index) else { return deallocRange(index, count: 1) }
        platform.withPreemptionDisabled { cpu in
            guard let cpu else { return deallocRange(index, count: 1) }
            // SAFETY: as in `allocFrame`: the current CPU's cache, this thread's alone.
            let cache = unsafe state.pointee.frameCaches.on(cpu)
            if unsafe !cache.pointee.push(index) { unsafe flushCacheAndPush(cache, index) }
        }
    }

    /// Runs `body` with the current CPU's frame cache (`nil` on no CPU), preemption disabled: for
    /// a caller that frees several frames in a row (`Segment`'s drop).
    @inlinable @inline(__always)
    func withCurrentFrameCache<R>(_ body: (UnsafeMutablePointer<FrameCache>?) -> R) -> R {
        platform.withPreemptionDisabled { cpu in
            // SAFETY: `cpu` is the caller's current CPU with preemption disabled, so its cache in
            // the live context is this thread's alone until the closure returns (`CpuLocal`).
            unsafe body(cpu.map { unsafe state.pointee.frameCaches.on($0) })
        }
    }

    /// Caches a frame whose last reference the caller has just dropped (`slot` is its slot, busy,
    /// the caller's), held by the allocator as `deallocFrame` leaves it, if `cache` has room and
    /// the frame's pageblock serves small allocations; otherwise `false`, and nothing changed.
    ///
    /// - Safety: `cache` is the current CPU's, from `withCurrentFrameCache`, inside its body.
    @unsafe @inlinable @inline(__always)
    func cacheFreedFrame(_ index: Int, _ slot: MetaSlot, in cache: UnsafeMutablePointer<FrameCache>?) -> Bool {
        // SAFETY: the caller's contract: the cache is this thread's alone; the live context's
        // `pageblocks` is immutable.
        guard let cache = unsafe cache, unsafe cache.pointee.count < FrameCache.capacity,
              unsafe state.pointee.pageblocks.isSmall(frame: index) else { return false }
        slot.storeAllocatorHeld(tag: HeldFrame.tag)
        // SAFETY: the caller's cache, this thread's alone, with room (checked above).
        _ = unsafe cache.pointee.push(index)
        return true
    }

    /// Allocates one frame from the buddy set, for a thread on no CPU.
    @usableFromInline
    func allocFrameLocked() -> Int? {
        // SAFETY: the live context (the lifetime statement); the pool is used only under `lock`,
        // held here.
        unsafe state.pointee.lock.lock()
        defer { unsafe state.pointee.lock.unlock() }
        return unsafe globalPool.pointee.buddy.alloc(order: 0)
    }

    /// Claims the unused frame of `slot` by address (`Frame.fromUnused` and its kin: OSTD's
    /// `get_from_unused`), under the allocator's lock; the state found when it is not unused (a
    /// free frame the allocator holds is unique).
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
            unsafe cache.pointee.pushRun(chunk, count: framesOfOrder(order))
        }
        // SAFETY: `cache` is this thread's alone (the caller's contract), just refilled.
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
        unsafe cache.pointee.drainOldest(FrameCache.capacity / 2) { unsafe globalPool.pointee.buddy.free($0, order: 0) }
        unsafe state.pointee.lock.unlock()
        _ = unsafe cache.pointee.push(index)
    }

    /// Returns every frame of every CPU cache to the buddy set. The caller holds the lock, and no
    /// thread may be bound to a CPU.
    func drainAllCachesLocked() {
        for i in 0..<cpuCount {
            // SAFETY: the live context; the caller holds `lock` (for the pool), and no thread is
            // bound to a CPU, so no one else uses the CPU caches (`CpuLocal`'s quiescent point).
            unsafe state.pointee.frameCaches.on(i).pointee.drainOldest(FrameCache.capacity) { unsafe globalPool.pointee.buddy.free($0, order: 0) }
        }
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

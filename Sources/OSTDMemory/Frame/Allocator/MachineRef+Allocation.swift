// The allocator's paths through a machine's state: per-CPU caches in front of the buddy set.
//
// Single frames come from the calling CPU's cache, without a lock, when the caller runs on a CPU
// (the platform's current CPU, with preemption disabled); otherwise, and for segments, from the
// buddy set under the machine's spin lock. Frames in caches and in the buddy set are `UNUSED`.

extension MachineRef {
    /// The global pool, reached with a read of the state (a mutation through
    /// `state.pointee.pool.pointee` would formally modify the whole state).
    @inline(__always)
    var globalPool: UnsafeMutablePointer<GlobalPool> { state.pointee.pool }

    // MARK: Frame allocation

    /// Allocates one frame, from the current CPU's cache when the caller runs on a CPU.
    @inlinable @inline(__always)
    func allocFrame() -> Int? {
        platform.withPreemptionDisabled { cpu in
            guard let cpu else { return allocChunk(order: 0) }
            let cache = state.pointee.frameCaches.on(cpu)
            if let index = cache.pointee.pop() { return index }
            return refillCache(cache)
        }
    }

    /// Returns one frame whose slot has just become `UNUSED`.
    @inlinable @inline(__always)
    func deallocFrame(_ index: Int) {
        platform.withPreemptionDisabled { cpu in
            guard let cpu else { return deallocRange(index, count: 1) }
            let cache = state.pointee.frameCaches.on(cpu)
            if !cache.pointee.push(index) { flushCacheAndPush(cache, index) }
        }
    }

    /// Allocates a chunk of `2^order` frames from the global buddy set.
    @usableFromInline
    func allocChunk(order: BuddyOrder) -> Int? {
        state.pointee.lock.lock()
        defer { state.pointee.lock.unlock() }
        return globalPool.pointee.buddy.alloc(order: order)
    }

    /// Allocates `count` contiguous frames aligned to the next power of two; the surplus of the
    /// power-of-two chunk goes straight back (OSTD pools' `alloc`).
    @usableFromInline
    func allocContiguous(count: Int) -> Int? {
        let order = greaterOrderOf(frames: count)
        guard order <= BuddySet.maxOrder else { return nil }
        state.pointee.lock.lock()
        defer { state.pointee.lock.unlock() }
        guard let index = globalPool.pointee.buddy.alloc(order: order) else { return nil }
        let surplus = framesOfOrder(order) - count
        if surplus > 0 { globalPool.pointee.buddy.free(range: index + count, count: surplus) }
        return index
    }

    /// Returns the frames `start ..< start + count`, all `UNUSED`; the last frame of an orphaned
    /// machine destroys its state.
    @usableFromInline
    func deallocRange(_ start: Int, count: Int) {
        state.pointee.lock.lock()
        globalPool.pointee.buddy.free(range: start, count: count)
        let lastFrame = globalPool.pointee.orphaned && globalPool.pointee.buddy.freeFrames == state.pointee.allocatableFrames
        state.pointee.lock.unlock()
        if lastFrame { destroy() }
    }

    /// Refills an empty CPU cache with one 32-frame chunk (or single frames when memory is too
    /// fragmented for one) and returns one frame of it.
    @usableFromInline
    func refillCache(_ cache: UnsafeMutablePointer<FrameCache>) -> Int? {
        let batch = framesOfOrder(FrameCache.batchOrder)
        state.pointee.lock.lock()
        defer { state.pointee.lock.unlock() }
        if let chunk = globalPool.pointee.buddy.alloc(order: FrameCache.batchOrder) {
            for i in stride(from: batch - 1, through: 1, by: -1) { _ = cache.pointee.push(chunk + i) }
            return chunk
        }
        for _ in 1..<batch {
            guard let index = globalPool.pointee.buddy.alloc(order: 0) else { break }
            _ = cache.pointee.push(index)
        }
        return globalPool.pointee.buddy.alloc(order: 0) ?? cache.pointee.pop()
    }

    /// Returns the oldest half of a full CPU cache to the buddy set, then caches `index`.
    @usableFromInline
    func flushCacheAndPush(_ cache: UnsafeMutablePointer<FrameCache>, _ index: Int) {
        state.pointee.lock.lock()
        cache.pointee.drainOldest(FrameCache.capacity / 2) { globalPool.pointee.buddy.free($0, order: 0) }
        state.pointee.lock.unlock()
        _ = cache.pointee.push(index)
    }

    /// Returns every frame of every CPU cache to the buddy set. The caller holds the lock, and no
    /// thread may be bound to a CPU.
    func drainAllCachesLocked() {
        for i in 0..<cpuCount {
            state.pointee.frameCaches.on(i).pointee.drainOldest(FrameCache.capacity) { globalPool.pointee.buddy.free($0, order: 0) }
        }
    }

    // MARK: Accounting

    /// Frames not in the allocator: handed out and not yet returned. Exact at a quiescent point.
    func outstandingFrames() -> Int {
        state.pointee.lock.lock()
        defer { state.pointee.lock.unlock() }
        var free = globalPool.pointee.buddy.freeFrames
        for i in 0..<cpuCount { free += state.pointee.frameCaches.on(i).pointee.count }
        return state.pointee.allocatableFrames - free
    }
}

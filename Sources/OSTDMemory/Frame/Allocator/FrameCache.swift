// A per-CPU stack of free single frames, in front of the buddy set (OSTD frame-allocator `cache.rs`).
//
// Allocation pops, free pushes; an empty cache refills with one 32-frame chunk from the buddy set
// (one lock round trip for 32 allocations), a full one returns its 32 oldest frames. Frames in
// the cache are `UNUSED`, just as in the buddy set; they only do not coalesce until returned.
// Last-in first-out: a frame just freed is the next one handed out, while it is still warm.

/// A fixed-capacity stack of frame indices.
@usableFromInline
struct FrameCache {
    @usableFromInline static var capacity: Int { 64 }
    /// How many frames a refill takes or a flush returns.
    @usableFromInline static var batchOrder: BuddyOrder { 5 }

    @usableFromInline let entries: UnsafeMutablePointer<UInt32>
    @usableFromInline var count = 0

    init() {
        entries = .allocate(capacity: FrameCache.capacity)
    }

    /// Frees the entry buffer; the owning CPU calls it when it goes away.
    func deallocate() { entries.deallocate() }

    @inlinable @inline(__always)
    mutating func pop() -> Int? {
        guard count > 0 else { return nil }
        count -= 1
        return Int(entries[count])
    }

    /// Pushes a frame; `false` when the cache is full.
    @inlinable @inline(__always)
    mutating func push(_ index: Int) -> Bool {
        guard count < FrameCache.capacity else { return false }
        entries[count] = UInt32(truncatingIfNeeded: index)
        count += 1
        return true
    }

    /// Removes the `n` oldest frames, handing each to `body`.
    mutating func drainOldest(_ n: Int, _ body: (Int) -> Void) {
        let n = min(n, count)
        for i in 0..<n { body(Int(entries[i])) }
        (entries).update(from: entries + n, count: count - n)
        count -= n
    }
}

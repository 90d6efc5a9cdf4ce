// A per-CPU stack of free single frames, in front of the buddy set (OSTD frame-allocator `cache.rs`).
//
// Allocation pops, free pushes; an empty cache refills with about 32 frames from the buddy set
// (one lock round trip for 32 allocations), a full one returns its 32 oldest frames. Last-in
// first-out: a frame just freed is the next one handed out, while it is still warm.
//
// A frame freed into a cache is held by the allocator: count `UNIQUE`, tag `HeldFrame.tag`
// (usage `unused`), not `UNUSED` as OSTD leaves it (MetaSlot.swift's file comment). `fromUnused`
// cannot claim it, so the allocation takes it with plain stores, not a CAS. The free path stores
// that state on the slot it has just written anyway (busy → held, no `UNUSED` in between); a
// flush hands it to the buddy set, which makes it a chunk's head or `UNUSED`. A refill writes no
// slot: the frames it brings are `UNUSED` (but a chunk's first, left held) and claimed with
// OSTD's CAS.

/// A fixed-capacity stack of frame indices.
///
/// `@safe`: `entries` holds `capacity` words, allocated by `init` and freed only by the `@unsafe`
/// `deallocate()` when the machine's state is destroyed; `0 <= count <= capacity`, and entries
/// `0 ..< count` were written by `push`. Each cache is used by its CPU alone (`CpuLocal`).
@safe @usableFromInline
struct FrameCache {
    @usableFromInline static var capacity: Int { 64 }
    /// How many frames a refill takes or a flush returns.
    @usableFromInline static var batchOrder: BuddyOrder { 5 }

    @usableFromInline let entries: UnsafeMutablePointer<UInt32>
    @usableFromInline var count = 0

    init() {
        // SAFETY: a fresh allocation of `capacity` trivial words; only `0 ..< count` is read.
        unsafe entries = .allocate(capacity: FrameCache.capacity)
    }

    /// Frees the entry buffer; the owning CPU calls it when it goes away.
    ///
    /// - Safety: called once, by `MachineRef.destroy`; the cache is not used afterwards.
    @unsafe
    func deallocate() {
        // SAFETY: the buffer `init` allocated; the caller's contract makes this its last use.
        unsafe entries.deallocate()
    }

    @inlinable @inline(__always)
    mutating func pop() -> Int? {
        guard count > 0 else { return nil }
        count -= 1
        // SAFETY: `count < capacity`, an entry `push` wrote (see the type).
        return Int(unsafe entries[count])
    }

    /// Pushes a frame; `false` when the cache is full.
    @inlinable @inline(__always)
    mutating func push(_ index: Int) -> Bool {
        guard count < FrameCache.capacity else { return false }
        // SAFETY: `count < capacity` (checked just above).
        unsafe entries[count] = UInt32(truncatingIfNeeded: index)
        count += 1
        return true
    }

    /// Pushes the frames `first ..< first + n` (a refill's chunk) in one go, highest first, so that
    /// they come out in address order: one bounds check for the run, no per-frame count update.
    ///
    /// - Precondition: the run fits.
    @inlinable @inline(__always)
    mutating func pushRun(_ first: Int, count n: Int) {
        precondition(n <= FrameCache.capacity - count, "a refill overflows the frame cache")
        // SAFETY: `count + n <= capacity` (checked just above), so every entry written is inside
        // the buffer, and entries `0 ..< count + n` are written afterwards.
        let base = unsafe entries + count
        for i in 0..<n { unsafe base[i] = UInt32(truncatingIfNeeded: first + n - 1 - i) }
        count += n
    }

    /// Removes the `n` oldest frames, handing each to `body`.
    mutating func drainOldest(_ n: Int, _ body: (Int) -> Void) {
        let n = min(n, count)
        // SAFETY: `n <= count <= capacity`: entries `0 ..< count` are written, and the move of
        // `n ..< count` down to 0 stays inside them (`update(from:count:)` allows the overlap).
        for i in 0..<n { body(Int(unsafe entries[i])) }
        unsafe (entries).update(from: entries + n, count: count - n)
        count -= n
    }
}

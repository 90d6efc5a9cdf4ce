// Chunk arithmetic of the buddy allocator (OSTD `osdk/deps/frame-allocator/src/chunk.rs`).
//
// A chunk of order `k` is `2^k` contiguous frames whose first frame index is a multiple of `2^k`.
// Everything here works in frame indices (physical address / 4 KiB), not bytes.

/// The order of a chunk of `2^order` frames.
public typealias BuddyOrder = Int

/// The number of frames in a chunk of `order`.
@inlinable @inline(__always)
public func framesOfOrder(_ order: BuddyOrder) -> Int { 1 << order }

/// The smallest order whose chunk holds at least `frames` frames (`frames >= 1`).
@inlinable
public func greaterOrderOf(frames: Int) -> BuddyOrder {
    precondition(frames >= 1, "a chunk holds at least one frame")
    return frames == 1 ? 0 : Int.bitWidth - (frames - 1).leadingZeroBitCount
}

/// The largest order whose chunk holds at most `frames` frames (`frames >= 1`).
@inlinable
public func lesserOrderOf(frames: Int) -> BuddyOrder {
    precondition(frames >= 1, "a chunk holds at least one frame")
    return Int.bitWidth - 1 - frames.leadingZeroBitCount
}

/// The largest order a chunk starting at frame `index` can have (its alignment); index 0 is
/// aligned to everything, so the answer is capped at `cap`.
@inlinable
public func maxOrderFrom(index: Int, cap: BuddyOrder = BuddySet.maxOrder) -> BuddyOrder {
    index == 0 ? cap : min(index.trailingZeroBitCount, cap)
}

/// Splits the frame range `start ..< start + count` into maximal aligned chunks, in address order
/// (OSTD `split_to_chunks`). Frames `6 ..< 38` give orders 1, 3, 4, 2, 1 at 6, 8, 16, 32, 36.
@frozen
public struct ChunkSplitter: IteratorProtocol, Sequence {
    @usableFromInline var next_: Int
    @usableFromInline let end: Int

    @inlinable
    public init(start: Int, count: Int) {
        next_ = start
        end = start + count
    }

    /// The next chunk as `(first frame index, order)`.
    @inlinable
    public mutating func next() -> (index: Int, order: BuddyOrder)? {
        guard next_ < end else { return nil }
        let order = Swift.min(maxOrderFrom(index: next_), lesserOrderOf(frames: end - next_))
        defer { next_ += framesOfOrder(order) }
        return (next_, order)
    }
}

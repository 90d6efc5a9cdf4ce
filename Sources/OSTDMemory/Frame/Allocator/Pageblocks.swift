// Pageblocks: the 2 MiB blocks of physical memory, grouped by the size of what they serve
// (Linux's pageblock migratetypes, with size in place of mobility; docs/frames.md, "Grouping by
// size").
//
// Every aligned 2 MiB block of frames (order 9, the smallest huge page) has a one-byte kind:
//
//   large (0, the default)   whole, or serving allocations of 2 MiB and more (huge pages,
//                            large segments), and the pieces those split into
//   small (1)                has served an allocation below 2 MiB: single frames, page-table
//                            nodes, small segments
//
// The buddy set sets and clears the kinds under the machine's lock (`BuddySet`): a pageblock
// turns small when a small allocation first takes frames from it, and large again when it is
// wholly free (its frames coalesce into a chunk of order 9 or more). The one reader outside the
// lock is the free path of a single frame (`MachineRef.deallocFrame`): a frame of a small
// pageblock goes to the CPU's cache, any other straight back to the buddy set, where it
// coalesces with the rest of its huge block. That read may be stale — the kind can turn small
// while a frame of the block is held — and either answer is safe: it decides only where the
// frame waits before it is reused.

import Synchronization

/// The kind of a 2 MiB pageblock.
@usableFromInline
enum PageblockKind: UInt8 {
    /// Whole, or serving allocations of 2 MiB and more.
    case large = 0
    /// Has served allocations below 2 MiB.
    case small = 1

    /// The kind's name, for messages.
    var name: String { self == .large ? "large" : "small" }
}

/// One kind byte per pageblock, read without the lock and written under it.
///
/// `@safe`: `kinds` holds `count` atomic bytes, allocated and initialised by `init` and freed
/// only by the `@unsafe` `deallocate()`, called once by the owning buddy set's `deinit`;
/// every pageblock index used is below `count` (`frameIndex >> 9` for a frame of the machine).
/// Copies of the view (the machine context keeps one) are used only while the buddy set lives.
@safe @usableFromInline
struct Pageblocks {
    /// The order of a pageblock: 2^9 frames, 2 MiB.
    @inlinable static var order: BuddyOrder { 9 }

    @usableFromInline let kinds: UnsafeMutablePointer<Atomic<UInt8>>
    /// The number of pageblocks (the last one may be partial).
    let count: Int

    /// The kinds of the pageblocks of `frameCount` frames, all `large`.
    init(frameCount: Int) {
        count = (frameCount + framesOfOrder(Pageblocks.order) - 1) >> Pageblocks.order
        // SAFETY: a fresh allocation of `count` atomics, each initialised here before any use.
        unsafe kinds = .allocate(capacity: max(count, 1))
        for i in 0..<count { unsafe (kinds + i).initialize(to: Atomic(PageblockKind.large.rawValue)) }
    }

    /// Frees the kinds.
    ///
    /// - Safety: called once, by the owning buddy set's `deinit`; no copy is used afterwards.
    @unsafe
    func deallocate() {
        // SAFETY: the atomics `init` allocated and initialised (trivial, nothing to
        // deinitialise); the caller's contract makes this their last use.
        unsafe kinds.deallocate()
    }

    /// Whether the pageblock of frame `index` (a frame of the machine) is small. A Relaxed load:
    /// the free path of a single frame reads it without the lock.
    ///
    /// - Complexity: O(1), one byte load.
    @inlinable @inline(__always)
    func isSmall(frame index: Int) -> Bool {
        // SAFETY: `index >> 9 < count` for a frame of the machine (see the type).
        unsafe kinds[index >> Pageblocks.order].load(ordering: .relaxed) != PageblockKind.large.rawValue
    }

    /// The kind of pageblock `block` (`block < count`).
    func kind(_ block: Int) -> PageblockKind {
        // SAFETY: `block < count` (the callers pass pageblocks of the machine).
        unsafe kinds[block].load(ordering: .relaxed) == PageblockKind.large.rawValue ? .large : .small
    }

    /// Sets the kind of pageblock `block` (`block < count`); under the machine's lock.
    func setKind(_ block: Int, _ kind: PageblockKind) {
        // SAFETY: `block < count` (the callers pass pageblocks of the machine).
        unsafe kinds[block].store(kind.rawValue, ordering: .relaxed)
    }

    /// The number of small pageblocks (O(pageblocks); for tests and reports).
    var smallCount: Int { (0..<count).count { kind($0) == .small } }
}

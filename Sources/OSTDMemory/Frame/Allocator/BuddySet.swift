// The buddy set: free chunks of every order, coalesced on free (OSTD frame-allocator `set.rs`).
//
// Free chunks are kept in intrusive doubly linked lists threaded through the metadata slots of
// their head frames, as OSTD keeps them in `LinkedList<FreeHeadMeta>`: the head of a free chunk is
// a unique frame (count `UNIQUE`) whose slot stores `next`, `prev` and the order, and whose
// `in_list` word is `order + 1`. The other frames of a free chunk stay `UNUSED`. Finding a buddy
// is then O(1): `buddy = index ^ 2^order` is free with the right order iff its `in_list` says so.
//
// Costs: allocation finds the first non-empty order with one bit scan of a mask, then splits
// down, O(log n); freeing merges upwards, O(log n). The set is not thread-safe: the machine keeps
// it behind its spin lock.

/// Free chunks of orders `0 ... maxOrder`, by frame index.
///
/// `@safe`: `metaBase` is the machine's metadata region and every frame index the set handles
/// is below `frameCount` (chunks never extend past it), so its slots are live slots of that
/// region; `heads` (one per order) is allocated by `init` and freed by `deinit`, once (the set is
/// noncopyable). The set lives in the machine's pool and is used under its lock.
@safe @usableFromInline
struct BuddySet: ~Copyable {
    /// The largest order kept: a chunk of 2^31 frames (8 TiB).
    @usableFromInline static var maxOrder: BuddyOrder { 31 }
    /// The list terminator.
    static var none: UInt32 { .max }

    /// Where slot 0 of the metadata array is.
    let metaBase: UnsafeMutableRawPointer
    /// Frames in the machine; chunks never extend past it.
    let frameCount: Int
    /// The first frame of each order's list (`none` when empty).
    private let heads: UnsafeMutablePointer<UInt32>
    /// Bit `k` set iff the list of order `k` is non-empty.
    private var nonEmpty: UInt64 = 0
    /// Frames in all free chunks.
    private(set) var freeFrames = 0

    init(metaBase: UnsafeMutableRawPointer, frameCount: Int) {
        precondition(frameCount < Int(BuddySet.none), "too many frames for 32-bit frame indices")
        // SAFETY: stores the machine's metadata base (see the type); `heads` is a fresh
        // allocation of one word per order, initialised whole.
        unsafe self.metaBase = metaBase
        self.frameCount = frameCount
        unsafe heads = .allocate(capacity: BuddySet.maxOrder + 1)
        unsafe heads.initialize(repeating: BuddySet.none, count: BuddySet.maxOrder + 1)
    }

    deinit {
        // SAFETY: the words `init` allocated (trivial, nothing to deinitialise); runs once.
        unsafe heads.deallocate()
    }

    /// How many free chunks of `order` there are (walks the list; for tests and reports).
    func chunkCount(order: BuddyOrder) -> Int {
        var count = 0
        // SAFETY: `order <= maxOrder` (the callers loop over the orders), inside `heads`.
        var index = unsafe heads[order]
        while index != BuddySet.none {
            count += 1
            index = FreeHead(slot(Int(index))).next
        }
        return count
    }

    // MARK: Allocation

    /// Takes a chunk of `order`, splitting a larger one if needed. The returned frames are all
    /// `UNUSED`. `nil` when no chunk of that order or larger is free.
    mutating func alloc(order: BuddyOrder) -> Int? {
        let candidates = nonEmpty & ~((1 << UInt64(order)) &- 1)
        guard candidates != 0 else { return nil }
        var found = candidates.trailingZeroBitCount
        // SAFETY: `found` is a set bit of `nonEmpty`, an order `<= maxOrder`, inside `heads`.
        let index = Int(unsafe heads[found])
        remove(index, order: found)
        while found > order {
            found -= 1
            push(index + framesOfOrder(found), order: found)
        }
        return index
    }

    /// Returns the chunk `index ..< index + 2^order` (aligned, all frames `UNUSED`) and merges it
    /// with its free buddies.
    mutating func free(_ index: Int, order: BuddyOrder) {
        var index = index
        var order = order
        while order < BuddySet.maxOrder {
            let buddy = index ^ framesOfOrder(order)
            guard buddy + framesOfOrder(order) <= frameCount,
                  slot(buddy).inList == UInt64(order + 1) else { break }
            remove(buddy, order: order)
            index = min(index, buddy)
            order += 1
        }
        push(index, order: order)
    }

    /// Returns an arbitrary frame range, split into maximal aligned chunks (OSTD `dealloc`).
    mutating func free(range start: Int, count: Int) {
        for chunk in ChunkSplitter(start: start, count: count) {
            free(chunk.index, order: chunk.order)
        }
    }

    // MARK: The intrusive lists

    private func slot(_ index: Int) -> MetaSlot {
        // SAFETY: `index < frameCount` (see the type): a live slot of the metadata region.
        unsafe MetaSlot(metaBase + index << MetaSlot.sizeShift)
    }

    /// Makes `index` the head of a free chunk of `order` and links it first in its list.
    private mutating func push(_ index: Int, order: BuddyOrder) {
        let slot = slot(index)
        if slot.claimUnused() != nil {
            let paddr = Paddr(UInt64(index) << UInt64(pageShift))
            preconditionFailure("frame \(paddr): returned to the allocator while in use (double free?)")
        }
        let head = FreeHead(slot)
        // SAFETY: `order <= maxOrder` (a chunk's order), inside `heads`.
        let oldFirst = unsafe heads[order]
        head.next = oldFirst
        head.prev = BuddySet.none
        if oldFirst != BuddySet.none { FreeHead(self.slot(Int(oldFirst))).prev = UInt32(index) }
        unsafe heads[order] = UInt32(index)
        slot.typeTagWord = FreeHead.tag.word
        slot.inList = UInt64(order + 1)
        slot.publishUnique()
        nonEmpty |= 1 << UInt64(order)
        freeFrames += framesOfOrder(order)
    }

    /// Unlinks the free chunk headed by `index` and turns its head back into an unused frame.
    private mutating func remove(_ index: Int, order: BuddyOrder) {
        let slot = slot(index)
        let head = FreeHead(slot)
        let (next, prev) = (head.next, head.prev)
        // SAFETY: `order <= maxOrder` (a chunk's order), inside `heads`.
        if prev != BuddySet.none { FreeHead(self.slot(Int(prev))).next = next } else { unsafe heads[order] = next }
        if next != BuddySet.none { FreeHead(self.slot(Int(next))).prev = prev }
        if unsafe heads[order] == BuddySet.none { nonEmpty &= ~(1 << UInt64(order)) }
        slot.inList = 0
        slot.storeBusy()
        slot.storeUnused()
        freeFrames -= framesOfOrder(order)
    }
}

/// The metadata of a free chunk's head frame (OSTD `FreeHeadMeta` inside a `Link`): list links
/// stored in the slot's typed storage.
struct FreeHead {
    static var tag: FrameMetaTag { FrameMetaTag(usage: .unused, typeID: 2, untyped: false) }

    let slot: MetaSlot
    init(_ slot: MetaSlot) { self.slot = slot }

    // SAFETY: `next` and `prev` are aligned words at offsets 0 and 4 of the 40-byte storage of
    // a live slot (`BuddySet.slot`); a free chunk's head is held unique by the allocator, which
    // touches it only under its lock.
    var next: UInt32 {
        get { unsafe slot.storage.load(fromByteOffset: 0, as: UInt32.self) }
        nonmutating set { unsafe slot.storage.storeBytes(of: newValue, toByteOffset: 0, as: UInt32.self) }
    }

    // SAFETY: as `next`.
    var prev: UInt32 {
        get { unsafe slot.storage.load(fromByteOffset: 4, as: UInt32.self) }
        nonmutating set { unsafe slot.storage.storeBytes(of: newValue, toByteOffset: 4, as: UInt32.self) }
    }
}

// The buddy set: free chunks of every order, coalesced on free (OSTD frame-allocator `set.rs`),
// with its 2 MiB pageblocks grouped by the size of what they serve (`Pageblocks.swift`).
//
// Free chunks are kept in intrusive doubly linked lists threaded through the metadata slots of
// their head frames, as OSTD keeps them in `LinkedList<FreeHeadMeta>`: the head of a free chunk is
// a unique frame (count `UNIQUE`) whose slot stores `next`, `prev` and the order, and whose
// `in_list` word is `order + 1`. The other frames of a free chunk are `UNUSED`, as in OSTD: a frame
// that comes back held by the allocator (`HeldFrame`, MetaSlot.swift's file comment) becomes a
// chunk's head or, merged inside a larger chunk, `UNUSED` (a store on a slot the free path has
// just written), so a coalesced set reads exactly as OSTD's whatever way its frames came back.
// Only the head of a chunk taken for an allocation is left held. Finding a buddy is then O(1):
// `buddy = index ^ 2^order` is free with the right order iff its `in_list` says so.
//
// Grouping by size (not in OSTD, whose buddy set serves the smallest chunk whatever the request;
// modelled on Linux's grouping of pages by mobility, with size in place of mobility). A chunk
// below order 9 lies inside one pageblock and is kept in the list of its order *and of its
// pageblock's kind*; a chunk of order 9 or more is whole pageblocks, all large. Then:
//
//   - Below order 9 (CPU cache refills, single frames, small segments): the smallest chunk of a
//     small pageblock; else the smallest chunk of order >= 9, whose first pageblock turns small
//     (smallest first, so a 1 GiB chunk stays whole while smaller ones exist); else, last, the
//     largest fragment of a large pageblock, which turns small with all its free chunks (Linux's
//     fallback steals whole pageblocks the same way, `steal_suitable_fallback`).
//   - Order 9 and more: the smallest chunk that fits, as OSTD.
//   - A chunk that coalesces to order 9 makes its pageblock large again.
//
// So small allocations fill small pageblocks before they break a whole one, and the pieces of a
// split huge page — which the free path sends straight here, past the CPU caches
// (`MachineRef.deallocFrame`) — are taken for small frames only when nothing else is free: they
// stay free until their huge block is whole again.
//
// The invariant (`BuddySet+Invariants.swift` checks it): a free chunk of order k < 9 is in list
// (k, kind of its pageblock); a free chunk of order k >= 9 is in list (k, large) and all its
// pageblocks are large.
//
// Costs: allocation finds the list with a bit scan or two of the lists' masks, then splits down,
// O(log n); freeing merges upwards, O(log n). Turning a fragment's pageblock small reads its 512
// slots once (only when no small chunk and no chunk of order >= 9 is free). The set is not
// thread-safe: the machine keeps it behind its spin lock.

/// Free chunks of orders `0 ... maxOrder`, by frame index, in lists by order and pageblock kind.
///
/// `@safe`: `metaBase` is the machine's metadata region and every frame index the set handles
/// is below `frameCount` (chunks never extend past it), so its slots are live slots of that
/// region; `heads` (one per order and kind) and `pageblocks` are allocated by `init` and freed by
/// `deinit`, once (the set is noncopyable). The set lives in the machine's pool and is used under
/// its lock.
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
    /// The kind of every pageblock; the machine context keeps a copy for the free path.
    let pageblocks: Pageblocks
    /// The first frame of each list (`none` when empty): list `2 * order + kind`.
    private let heads: UnsafeMutablePointer<UInt32>
    /// Bit `k` set iff the list of order `k` and kind large is non-empty.
    private(set) var nonEmptyLarge: UInt64 = 0
    /// Bit `k` set iff the list of order `k` and kind small is non-empty (`k < 9`).
    private(set) var nonEmptySmall: UInt64 = 0
    /// Frames in all free chunks.
    private(set) var freeFrames = 0

    init(metaBase: UnsafeMutableRawPointer, frameCount: Int) {
        precondition(frameCount < Int(BuddySet.none), "too many frames for 32-bit frame indices")
        // SAFETY: stores the machine's metadata base (see the type); `heads` is a fresh
        // allocation of one word per list, initialised whole.
        unsafe self.metaBase = metaBase
        self.frameCount = frameCount
        pageblocks = Pageblocks(frameCount: frameCount)
        unsafe heads = .allocate(capacity: 2 * (BuddySet.maxOrder + 1))
        unsafe heads.initialize(repeating: BuddySet.none, count: 2 * (BuddySet.maxOrder + 1))
    }

    deinit {
        // SAFETY: the words `init` allocated (trivial, nothing to deinitialise) and the
        // pageblock kinds this set owns; runs once, and no copy of the kinds is used afterwards
        // (the machine context's copy dies with the state being destroyed).
        unsafe heads.deallocate()
        unsafe pageblocks.deallocate()
    }

    /// How many free chunks of `order` there are, of both kinds (walks the lists; for tests and
    /// reports).
    func chunkCount(order: BuddyOrder) -> Int {
        chunks(order: order, .large).count + chunks(order: order, .small).count
    }

    /// The heads of the free chunks in list (`order`, `kind`), first to last (for tests and checks).
    func chunks(order: BuddyOrder, _ kind: PageblockKind) -> [Int] {
        var found: [Int] = []
        var index = first(order, kind)
        while index != BuddySet.none && found.count < frameCount {
            found.append(Int(index))
            index = FreeHead(slot(Int(index))).next
        }
        return found
    }

    // MARK: Boot

    /// Adds the frames `start ..< start + count` at boot. A pageblock they only partly cover
    /// (holding reserved frames, or cut by the end of memory) can never be whole, so it turns small
    /// first: small allocations use it before they break a whole one.
    mutating func addFreeMemory(start: Int, count: Int) {
        guard count > 0 else { return }
        let blockMask = framesOfOrder(Pageblocks.order) - 1
        if start & blockMask != 0 { pageblocks.setKind(start >> Pageblocks.order, .small) }
        if (start + count) & blockMask != 0 { pageblocks.setKind((start + count - 1) >> Pageblocks.order, .small) }
        for chunk in ChunkSplitter(start: start, count: count) { insert(chunk.index, order: chunk.order) }
    }

    // MARK: Allocation

    /// Takes a chunk of `order`, splitting a larger one if needed (the policy in the file
    /// comment). The returned frames are all `UNUSED`. `nil` when no chunk of that order or
    /// larger is free.
    mutating func alloc(order: BuddyOrder) -> Int? {
        if order >= Pageblocks.order {
            let candidates = nonEmptyLarge & ~BuddySet.below(order)
            guard candidates != 0 else { return nil }
            return take(order: candidates.trailingZeroBitCount, .large, splittingTo: order)
        }
        let small = nonEmptySmall & ~BuddySet.below(order)
        if small != 0 { return take(order: small.trailingZeroBitCount, .small, splittingTo: order) }
        let whole = nonEmptyLarge & ~BuddySet.below(Pageblocks.order)
        if whole != 0 {
            let found = whole.trailingZeroBitCount
            let index = Int(first(found, .large))
            remove(index, order: found)
            // Before the split: its pieces below order 9 go to the small lists, the others stay
            // whole pageblocks.
            pageblocks.setKind(index >> Pageblocks.order, .small)
            return split(index, from: found, to: order)
        }
        let fragments = nonEmptyLarge & BuddySet.below(Pageblocks.order) & ~BuddySet.below(order)
        guard fragments != 0 else { return nil }
        let found = UInt64.bitWidth - 1 - fragments.leadingZeroBitCount
        let index = Int(first(found, .large))
        makeSmall(index >> Pageblocks.order)
        remove(index, order: found)
        return split(index, from: found, to: order)
    }

    /// Takes frames for a CPU cache (`order < 9`): `2^order` of them as one chunk when a small
    /// pageblock has a chunk that large; else every chunk small pageblocks have, largest first,
    /// until `2^order` frames are taken (fewer if they have fewer, more by less than `2^(order-1)`);
    /// only when small pageblocks have no free frame, a chunk of `order` as `alloc` finds one, or
    /// single frames when memory is too fragmented for one. Hands each chunk to `body` as (first
    /// frame, order), its frames `UNUSED`, and returns how many frames it took (0: none free).
    mutating func allocBatch(order: BuddyOrder, _ body: (Int, BuddyOrder) -> Void) -> Int {
        let want = framesOfOrder(order)
        if nonEmptySmall != 0 && nonEmptySmall & ~BuddySet.below(order) == 0 {
            var taken = 0
            while taken < want && nonEmptySmall != 0 {
                let found = UInt64.bitWidth - 1 - nonEmptySmall.leadingZeroBitCount
                let index = Int(first(found, .small))
                remove(index, order: found, .small)
                body(index, found)
                taken += framesOfOrder(found)
            }
            return taken
        }
        if let index = alloc(order: order) {
            body(index, order)
            return want
        }
        var taken = 0
        while taken < want, let index = alloc(order: 0) {
            body(index, 0)
            taken += 1
        }
        return taken
    }

    /// Returns the chunk `index ..< index + 2^order` (aligned, all frames `UNUSED`) and merges it
    /// with its free buddies.
    mutating func free(_ index: Int, order: BuddyOrder) {
        if order >= Pageblocks.order { makeLarge(index, order: order) }
        insert(index, order: order)
    }

    /// Returns an arbitrary frame range, split into maximal aligned chunks (OSTD `dealloc`).
    mutating func free(range start: Int, count: Int) {
        if count == 1 { return free(start, order: 0) }   // a single frame: no splitting to do
        for chunk in ChunkSplitter(start: start, count: count) {
            free(chunk.index, order: chunk.order)
        }
    }

    // MARK: Splitting and merging

    /// The orders below `order`, as a mask.
    private static func below(_ order: BuddyOrder) -> UInt64 { bit(order) &- 1 }

    /// `framesOfOrder` for an order the set keeps (`0 ... maxOrder`): a plain shift, no
    /// over-shift check. Likewise `bit`, an order's bit in a mask.
    @inline(__always) private static func frames(_ order: BuddyOrder) -> Int { 1 &<< order }
    @inline(__always) private static func bit(_ order: BuddyOrder) -> UInt64 { 1 &<< UInt64(order) }

    /// Takes the first chunk of list (`found`, `kind`) and splits it down to `order`.
    @inline(__always)
    private mutating func take(order found: BuddyOrder, _ kind: PageblockKind, splittingTo order: BuddyOrder) -> Int {
        let index = Int(first(found, kind))
        remove(index, order: found, kind)
        return split(index, from: found, to: order)
    }

    /// Frees the upper halves of the chunk `index` of order `found` down to `order`; returns
    /// `index`, now a chunk of `order` that the caller holds.
    @inline(__always)
    private mutating func split(_ index: Int, from found: BuddyOrder, to order: BuddyOrder) -> Int {
        var found = found
        while found > order {
            found -= 1
            push(index &+ BuddySet.frames(found), order: found)
        }
        return index
    }

    /// Links the chunk `index` of `order`, merged with its free buddies. Every frame it leaves
    /// inside a larger chunk is `UNUSED` (see the file comment).
    private mutating func insert(_ freed: Int, order: BuddyOrder) {
        var index = freed
        var order = order
        while order < BuddySet.maxOrder {
            let buddy = index ^ BuddySet.frames(order)
            guard buddy &+ BuddySet.frames(order) <= frameCount,
                  slot(buddy).inList == UInt64(order + 1) else { break }
            remove(buddy, order: order, merging: true)
            index = min(index, buddy)
            order += 1
            // Wholly free: the pageblock's frames may serve a huge page again.
            if order == Pageblocks.order { pageblocks.setKind(index >> Pageblocks.order, .large) }
        }
        push(index, order: order)
        // Merged below a buddy: the freed chunk's first frame is inside the chunk now, and may
        // have come back held (a single frame's free path).
        if index != freed { slot(freed).storeUnused() }
    }

    // MARK: Pageblock kinds

    /// Turns pageblock `block` small and moves its free chunks to the small lists (Linux's
    /// `move_freepages_block`): reads the slots of its frames, skipping each free chunk whole.
    private mutating func makeSmall(_ block: Int) {
        pageblocks.setKind(block, .small)
        var index = block << Pageblocks.order
        let end = min(index + framesOfOrder(Pageblocks.order), frameCount)
        while index < end {
            let word = slot(index).inList
            guard word != 0 else {
                index += 1
                continue
            }
            let order = Int(word) - 1
            unlink(index, order: order, .large)
            link(index, order: order, .small)
            index += framesOfOrder(order)
        }
    }

    /// Makes the pageblocks of the chunk `index` of `order >= 9`, being freed whole, large. They
    /// almost always are; a small one here held small frames that were all returned in one run
    /// with their neighbours (a page table's teardown returns runs of contiguous frames).
    private func makeLarge(_ index: Int, order: BuddyOrder) {
        let first = index >> Pageblocks.order
        for block in first..<(first + framesOfOrder(order - Pageblocks.order)) where pageblocks.kind(block) == .small {
            pageblocks.setKind(block, .large)
        }
    }

    /// The list a free chunk of `order` at `index` belongs in.
    @inline(__always)
    func kind(ofChunk index: Int, order: BuddyOrder) -> PageblockKind {
        order >= Pageblocks.order ? .large : pageblocks.kind(index >> Pageblocks.order)
    }

    // MARK: The intrusive lists

    @inline(__always)
    func slot(_ index: Int) -> MetaSlot {
        // SAFETY: `index < frameCount` (see the type): a live slot of the metadata region.
        unsafe MetaSlot(metaBase + index << MetaSlot.sizeShift)
    }

    /// The first frame of list (`order`, `kind`), or `none`.
    @inline(__always)
    private func first(_ order: BuddyOrder, _ kind: PageblockKind) -> UInt32 {
        // SAFETY: `order <= maxOrder` (a chunk's order), so the list is inside `heads`.
        unsafe heads[order << 1 | Int(kind.rawValue)]
    }

    /// Makes `index` the head of a free chunk of `order` and links it first in its list.
    @inline(__always)
    private mutating func push(_ index: Int, order: BuddyOrder) {
        let slot = slot(index)
        // Plain loads and stores: every claim by address, the only other writer of a free
        // frame's count, takes the machine's lock, held here (MachineRef+Allocation.swift).
        let count = slot.referenceCount
        guard count == MetaSlot.refCountUnused || (count == MetaSlot.refCountUnique && slot.typeTagWord == HeldFrame.tag.word) else {
            let paddr = Paddr(UInt64(index) << UInt64(pageShift))
            preconditionFailure("frame \(paddr): returned to the allocator while in use (double free?)")
        }
        link(index, order: order, kind(ofChunk: index, order: order))
        slot.typeTagWord = FreeHead.tag.word
        slot.inList = UInt64(order + 1)
        slot.publishUnique()
        freeFrames &+= BuddySet.frames(order)
    }

    /// Unlinks the free chunk headed by `index` (in the list of `kind`, found from its pageblock
    /// when not given) and turns its head back into a free frame: `UNUSED` when it is merging
    /// into a larger chunk, else held, for the allocation that takes the chunk.
    @inline(__always)
    private mutating func remove(_ index: Int, order: BuddyOrder, _ kind: PageblockKind? = nil, merging: Bool = false) {
        unlink(index, order: order, kind ?? self.kind(ofChunk: index, order: order))
        let slot = slot(index)
        slot.inList = 0
        if merging { slot.storeUnused() } else { slot.storeAllocatorHeld(tag: HeldFrame.tag) }
        freeFrames &-= BuddySet.frames(order)
    }

    /// Links the free head `index` first in list (`order`, `kind`).
    @inline(__always)
    private mutating func link(_ index: Int, order: BuddyOrder, _ kind: PageblockKind) {
        let list = order << 1 | Int(kind.rawValue)
        let head = FreeHead(slot(index))
        // SAFETY: `order <= maxOrder` (a chunk's order), so `list` is inside `heads`.
        let oldFirst = unsafe heads[list]
        head.next = oldFirst
        head.prev = BuddySet.none
        if oldFirst != BuddySet.none { FreeHead(self.slot(Int(oldFirst))).prev = UInt32(index) }
        unsafe heads[list] = UInt32(index)
        if kind == .small { nonEmptySmall |= BuddySet.bit(order) } else { nonEmptyLarge |= BuddySet.bit(order) }
    }

    /// Unlinks the free head `index` from list (`order`, `kind`).
    @inline(__always)
    private mutating func unlink(_ index: Int, order: BuddyOrder, _ kind: PageblockKind) {
        let list = order << 1 | Int(kind.rawValue)
        let head = FreeHead(slot(index))
        let (next, prev) = (head.next, head.prev)
        // SAFETY: `order <= maxOrder` (a chunk's order), so `list` is inside `heads`.
        if prev != BuddySet.none { FreeHead(self.slot(Int(prev))).next = next } else { unsafe heads[list] = next }
        if next != BuddySet.none { FreeHead(self.slot(Int(next))).prev = prev }
        guard unsafe heads[list] == BuddySet.none else { return }
        if kind == .small { nonEmptySmall &= ~BuddySet.bit(order) } else { nonEmptyLarge &= ~BuddySet.bit(order) }
    }
}

/// The type tag of a free frame the allocator holds (MetaSlot.swift's file comment): in a CPU's
/// cache, or inside a free chunk.
@usableFromInline
enum HeldFrame {
    @inlinable static var tag: FrameMetaTag { FrameMetaTag(usage: .unused, typeID: 8, untyped: false) }
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

// The 64-byte metadata slot of a frame and its reference-count state machine (OSTD `frame/meta.rs`).
//
// Every 4 KiB frame of the machine has one `MetaSlot`; the slots form an array inside the simulated
// physical memory itself (frames of usage `.meta`), so slot lookup is pure arithmetic:
// `slot(paddr) = metaBase + (paddr / 4096) * 64`.
//
// Layout, as OSTD's `#[repr(C)] struct MetaSlot`:
//
//     offset  0  storage    40 bytes of typed per-frame metadata (`FrameMeta` values)
//     offset 40  ref_count  reference count and state, atomic
//     offset 48  type tag   what OSTD keeps as the vtable pointer: usage, untyped bit, type id
//     offset 56  in_list    id of the free list holding the frame (0: none), 32 bits; allocator-private
//     offset 60  written    non-zero when the frame may hold non-zero bytes (`markWritten`)
//
// Reference-count states are exactly OSTD's: `UInt64.max` unused, `UInt64.max - 1` unique, `0`
// busy (being built or torn down), `1 ... Int64.max` shared. One deliberate storage detail
// differs: the word holds the *bitwise complement* of the count. Untouched, zero-filled memory
// then reads as `UInt64.max`, unused, so a 16 GiB machine starts without writing (or even
// touching) its 256 MiB of metadata. Every access goes through the accessors below, which
// complement on the way in and out; `fetch_add(1)` on the count is `fetch_sub(1)` on the word.
//
// Orderings follow OSTD: claiming an unused slot is an Acquire CAS, publishing a shared frame a
// Release store, clone a Relaxed increment, drop a Release decrement plus an Acquire fence on the
// last reference (the reasoning of `Arc::drop`).
//
// One state is the allocator's own, and not OSTD's: a frame freed into a CPU's cache is *held*
// by the allocator — count `UNIQUE`, the tag of a held free frame (usage `unused`), as OSTD's
// allocator holds the head of a free chunk — where OSTD leaves it `UNUSED` (`storeAllocatorHeld`).
// The single-frame free path stores it on the busy slot it has just written. So
// `Frame.fromUnused` and its kin, whose CAS expects `UNUSED`, refuse a cached frame
// (`GetFrameError.unique`, what OSTD answers for a free chunk's head); `fromInUse` refuses it
// too; and the allocation, the only writer that can reach it, claims it with a plain load where
// OSTD claims with a CAS (`claimFree`): no locked instruction on that fast path.
// Back in the buddy set a frame is a chunk's head or `UNUSED`, as in OSTD (BuddySet.swift), and
// a cache refill writes no slot: the frames it brings are claimed with OSTD's CAS.

import Synchronization

// Sendable: a view of a slot whose words are accessed atomically (count, free-list word) or only
// by the slot's owner (metadata storage, type tag), by the state machine the handles enforce.
/// A view of one frame's metadata slot.
///
/// The public surface is read-only introspection (reference count, usage, type tag); state
/// transitions are made by the frame handles (`Frame`, `UniqueFrame`, `Segment`) and the
/// allocator.
///
/// `@safe`: a view is made only by the `@unsafe` `init(_:)`, from the address of slot
/// `index < frameCount` of a machine's metadata region (`MachineRef.slot(index:)`, the buddy
/// set's `slot`), so `base` is a 64-byte aligned slot inside physical memory; the region lives
/// as long as the machine's state (MachineContext.swift's lifetime statement), and the view is
/// used by whoever holds that machine or one of its frames. The words that other threads touch
/// (count, written flag) are accessed only atomically; the others only by the slot's holder.
@safe @frozen
public struct MetaSlot: @unchecked Sendable {
    /// The slot's address in host memory (inside the simulated physical memory).
    @usableFromInline let base: UnsafeMutableRawPointer

    /// A view of the slot at `base`.
    ///
    /// - Safety: `base` is `metaBase + index * 64` for a frame `index < frameCount` of a machine
    ///   whose state outlives every use of the view.
    @unsafe @inlinable @inline(__always)
    init(_ base: UnsafeMutableRawPointer) {
        // SAFETY: only stores the address; the caller's contract makes it a live slot.
        unsafe self.base = base
    }

    /// The size of one slot: 64 bytes (OSTD `META_SLOT_SIZE`).
    public static var size: Int { 64 }
    /// `log2(size)`.
    @inlinable static var sizeShift: Int { 6 }
    /// The room for typed metadata: 40 bytes (OSTD `FRAME_METADATA_MAX_SIZE`).
    public static var storageSize: Int { 40 }

    /// `u64::MAX`: the frame is free; its metadata is uninitialised (OSTD `REF_COUNT_UNUSED`).
    public static var refCountUnused: UInt64 { .max }
    /// `u64::MAX - 1`: owned by one `UniqueFrame` (OSTD `REF_COUNT_UNIQUE`).
    public static var refCountUnique: UInt64 { .max - 1 }
    /// `i64::MAX`: counts at or above this (and below unique) are illegal (OSTD `REF_COUNT_MAX`).
    public static var refCountMax: UInt64 { UInt64(Int64.max) }

    @inlinable static var refCountOffset: Int { 40 }
    @inlinable static var typeTagOffset: Int { 48 }
    @inlinable static var inListOffset: Int { 56 }

    // MARK: Raw fields

    @inlinable @inline(__always)
    var refCountWord: UnsafeMutablePointer<Atomic<UInt64>> {
        // SAFETY: the slot is 64-byte aligned inside the metadata region, so offset 40 is an
        // 8-byte aligned word used only as an atomic; `Atomic<UInt64>` has `UInt64`'s layout and
        // zero-filled memory is a valid value of it.
        unsafe (base + MetaSlot.refCountOffset).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    /// The typed metadata storage (offset 0, 40 bytes).
    @inlinable @inline(__always)
    var storage: UnsafeMutableRawPointer {
        // SAFETY: returns the slot's base (a live slot, see the type); every user of the raw
        // storage is marked where it reads or writes it.
        unsafe base
    }

    /// Writes typed metadata and its tag (OSTD `write_meta`) into a slot the caller holds
    /// exclusively: busy (being constructed) or unique.
    ///
    /// - Safety: the caller holds the slot exclusively (it claimed it, count `0`, or owns it
    ///   as the unique frame), so no other thread reads the storage or the tag meanwhile.
    @unsafe @inlinable @inline(__always)
    func writeMeta<M: FrameMeta>(_ meta: M) {
        checkFrameMetaLayout(M.self)
        // SAFETY: `M` fits the 40 bytes of storage at offset 0 with an alignment the 64-byte slot
        // satisfies (checked just above); the caller holds the slot exclusively.
        unsafe storage.storeBytes(of: meta, as: M.self)
        typeTagWord = M.typeTag.word
    }

    /// The raw type-tag word (offset 48). Written only while the slot is busy or unique, and
    /// published by the Release store of the reference count.
    @inlinable @inline(__always)
    var typeTagWord: UInt64 {
        // SAFETY: offset 48 is an 8-byte aligned word of the live slot (see the type). It is
        // written only by the slot's exclusive holder (busy or unique: `writeMeta`, the buddy
        // set under its lock, a reserved slot's first writer), and read by a handle after the
        // count's Release store published it, or by that holder. Public introspection of a slot
        // no handle holds (`Machine.metaSlot(of:)`) may read it while it changes: a racy read of
        // a live word, exact only at a quiescent point.
        get { unsafe base.load(fromByteOffset: MetaSlot.typeTagOffset, as: UInt64.self) }
        nonmutating set { unsafe base.storeBytes(of: newValue, toByteOffset: MetaSlot.typeTagOffset, as: UInt64.self) }
    }

    // MARK: The in_list word: free-list id and written flag

    /// The free-list id (the low half of offset 56, 0: none, `order + 1`: the head of a free
    /// chunk); allocator-private, accessed under the allocator's lock.
    @inlinable @inline(__always)
    var inList: UInt64 {
        // SAFETY: offset 56 is a 4-byte aligned word of the live slot (see the type), accessed
        // under the allocator's lock only (introspection reads it at a quiescent point).
        get { UInt64(unsafe base.load(fromByteOffset: MetaSlot.inListOffset, as: UInt32.self)) }
        nonmutating set {
            unsafe base.storeBytes(of: UInt32(truncatingIfNeeded: newValue), toByteOffset: MetaSlot.inListOffset, as: UInt32.self)
        }
    }

    /// The written flag: the high half of the `in_list` word (offset 60), which survives frees;
    /// non-zero when the frame's bytes may be non-zero. Physical memory starts as zeros (the
    /// `PhysicalMemoryRegion` contract) with the flag clear; whatever can write the frame sets it
    /// first (`markWritten`): a kernel writer on the frame, a user-space write through the MMU, a
    /// page-table node's allocation, `Machine.pointer(to:count:)`. A zero-filling allocation
    /// fills only frames with the flag set, and clears it. A word of its own, beside the
    /// free-list id (at most 32), so that claiming and freeing write the type tag without reading
    /// it, and the allocator's plain accesses to the id never meet a holder's atomic store.
    @inlinable static var writtenOffset: Int { 60 }

    @inlinable @inline(__always)
    var writtenFlag: UnsafeMutablePointer<Atomic<UInt32>> {
        // SAFETY: offset 60 of the 64-byte aligned slot is a 4-byte aligned word used only
        // through this atomic view; zero-filled memory is a valid `Atomic<UInt32>`.
        unsafe (base + MetaSlot.writtenOffset).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    /// Whether the frame's bytes may be non-zero.
    @inlinable @inline(__always)
    var mayBeNonZero: Bool {
        // SAFETY: the written flag of this live slot, an atomic (see `writtenFlag`).
        unsafe writtenFlag.pointee.load(ordering: .relaxed) != 0
    }

    /// Records that the frame's bytes may become non-zero. Any holder of a reference may call it,
    /// concurrently with others: an atomic store (Relaxed; the frame's release publishes it to
    /// the allocator), skipped when the flag is already set.
    @inlinable @inline(__always)
    func markWritten() {
        // SAFETY: the written flag of this live slot, an atomic (see `writtenFlag`).
        if !mayBeNonZero { unsafe writtenFlag.pointee.store(1, ordering: .relaxed) }
    }

    /// Records that the frame holds only zeros again, for a holder that knows it: a page-table
    /// node detached because every entry is absent (`PageTableGuard.recordAllAbsent`). The next
    /// zero-filling allocation of the frame then skips the fill. Relaxed, as `markWritten`.
    @inlinable @inline(__always)
    func markZeroed() {
        // SAFETY: the written flag of this live slot, an atomic (see `writtenFlag`).
        unsafe writtenFlag.pointee.store(0, ordering: .relaxed)
    }

    /// Fills the frame with zeros if it may hold non-zero bytes, and records that it is zero. The
    /// caller holds the frame exclusively (just allocated).
    ///
    /// - Safety: `frame` is the host address of this slot's frame, which the caller holds
    ///   exclusively.
    @unsafe @inlinable @inline(__always)
    func zeroFrameIfWritten(_ frame: UnsafeMutableRawPointer) {
        if mayBeNonZero {
            // SAFETY: `frame` is this slot's 4 KiB frame in physical memory, which the caller holds
            // exclusively (just claimed), so no one else reads or writes it meanwhile.
            unsafe frame.initializeMemory(as: UInt8.self, repeating: 0, count: pageSize)
            unsafe writtenFlag.pointee.store(0, ordering: .relaxed)
        }
    }

    // MARK: Introspection

    /// The reference count or state (Relaxed load, as OSTD's `reference_count`).
    @inlinable
    public var referenceCount: UInt64 {
        // SAFETY: the count word of this live slot, an atomic (see `refCountWord`).
        unsafe ~refCountWord.pointee.load(ordering: .relaxed)
    }

    /// The frame's type tag: what kind of metadata the slot holds.
    public var typeTag: FrameMetaTag { FrameMetaTag(word: typeTagWord) }

    /// The frame's usage (`.unused` for a free frame).
    public var usage: PageUsage { typeTag.usage }

    /// Whether the frame is free: unused, or the head of a free chunk in the allocator (which,
    /// as in OSTD, the allocator holds as a unique frame).
    public var isFree: Bool { usage == .unused }

    /// The state the reference count encodes.
    public var status: MetaSlotStatus { MetaSlotStatus(refCount: referenceCount) }

    // MARK: State transitions

    /// Claims an unused slot: CAS `UNUSED → 0` (Acquire), as OSTD's `get_from_unused`.
    /// On failure returns the state found, for the caller's `GetFrameError`.
    @inlinable @inline(__always)
    func claimUnused() -> MetaSlotStatus? {
        // SAFETY: the count word of this live slot, an atomic (see `refCountWord`).
        let (exchanged, original) = unsafe refCountWord.pointee.compareExchange(
            expected: ~MetaSlot.refCountUnused, desired: ~0, ordering: .acquiring)
        return exchanged ? nil : MetaSlotStatus(refCount: ~original)
    }

    /// Makes a busy slot the allocator's: count `UNIQUE` with the type tag `tag` (of usage
    /// `unused`), a Release store (see the file comment). The caller holds the slot exclusively:
    /// it has just dropped the last reference (busy), or it is the allocator, under its lock,
    /// turning a free chunk's head back into a free frame.
    @inlinable @inline(__always)
    func storeAllocatorHeld(tag: FrameMetaTag) {
        typeTagWord = tag.word
        // SAFETY: the count word of this live slot, an atomic (see `refCountWord`).
        unsafe refCountWord.pointee.store(~MetaSlot.refCountUnique, ordering: .releasing)
    }

    /// Claims a free frame the allocator has just handed to the caller, who then writes its
    /// metadata and publishes it: held (`UNIQUE`, see the file comment) with one plain load and
    /// no store — no one else can write a held slot, and every other thread that reads it sees
    /// it unique (not claimable, no reference to take) until the caller publishes it — or
    /// `UNUSED` with OSTD's CAS to busy (Acquire), as a claim by address may race for it. On
    /// failure returns the state found: the allocator handed out a frame it did not have.
    @inlinable @inline(__always)
    func claimFree() -> MetaSlotStatus? {
        // SAFETY: the count word of this live slot, an atomic (see `refCountWord`).
        if unsafe refCountWord.pointee.load(ordering: .relaxed) == ~MetaSlot.refCountUnique { return nil }
        return claimUnused()
    }

    /// Publishes a claimed slot as shared with one reference (Release store of `1`).
    @inlinable @inline(__always)
    func publishShared() {
        // SAFETY: the count word of this live slot, an atomic (see `refCountWord`).
        unsafe refCountWord.pointee.store(~1, ordering: .releasing)
    }

    /// Publishes a claimed slot as uniquely owned (Relaxed store of `UNIQUE`, as OSTD).
    @inlinable @inline(__always)
    func publishUnique() {
        // SAFETY: the count word of this live slot, an atomic (see `refCountWord`).
        unsafe refCountWord.pointee.store(~MetaSlot.refCountUnique, ordering: .relaxed)
    }

    /// Adds a reference to a shared slot (Relaxed), aborting where OSTD aborts.
    ///
    /// - Precondition: the count is shared (`1 ..< Int64.max`); anything else is a bug: a clone of
    ///   a freed frame, or a count about to overflow.
    @inlinable @inline(__always)
    func incRefCount(paddr: @autoclosure () -> Paddr) {
        // SAFETY: the count word of this live slot, an atomic (see `refCountWord`).
        let old = unsafe ~refCountWord.pointee.subtract(1, ordering: .relaxed).oldValue
        if _slowPath(old &- 1 >= MetaSlot.refCountMax &- 1) {
            incRefCountFailed(old: old, paddr: paddr())
        }
    }

    /// Drops one reference of a shared slot (Release). Returns whether it was the last one; the
    /// slot is then busy (`0`) and the caller must tear it down with `storeUnused()`.
    ///
    /// - Precondition: the count was shared; a double free or an impossible count traps with the
    ///   frame's physical address.
    @inlinable @inline(__always)
    func decRefCount(paddr: @autoclosure () -> Paddr) -> Bool {
        // SAFETY: the count word of this live slot, an atomic (see `refCountWord`).
        let old = unsafe ~refCountWord.pointee.add(1, ordering: .releasing).oldValue
        if _fastPath(old &- 1 < MetaSlot.refCountMax) {
            if old != 1 { return false }
            atomicMemoryFence(ordering: .acquiring)
            return true
        }
        decRefCountFailed(old: old, paddr: paddr())
    }

    /// Turns a unique slot busy (store `0`), the first step of dropping a `UniqueFrame`.
    @inlinable @inline(__always)
    func storeBusy() {
        // SAFETY: the count word of this live slot, an atomic (see `refCountWord`).
        unsafe refCountWord.pointee.store(~0, ordering: .relaxed)
    }

    /// The last step of any teardown (OSTD `drop_last_in_place`): clears the type tag and marks
    /// the slot unused with a Release store.
    @inlinable @inline(__always)
    func storeUnused() {
        typeTagWord = 0
        // SAFETY: the count word of this live slot, an atomic (see `refCountWord`).
        unsafe refCountWord.pointee.store(~MetaSlot.refCountUnused, ordering: .releasing)
    }

    /// CAS `from → to` on the count (Acquire/Relaxed); used by unique ↔ shared conversions.
    @inlinable @inline(__always)
    func exchangeRefCount(from: UInt64, to: UInt64) -> Bool {
        // SAFETY: the count word of this live slot, an atomic (see `refCountWord`).
        unsafe refCountWord.pointee.compareExchange(expected: ~from, desired: ~to, ordering: .acquiringAndReleasing).exchanged
    }

    /// Takes one more reference on an in-use slot (OSTD `get_from_in_use`): loops on a Relaxed
    /// load and an Acquire CAS `n → n + 1`; returns the state found when the slot is not shared.
    @inlinable
    func tryIncFromInUse() -> MetaSlotStatus? {
        // SAFETY: the count word of this live slot, an atomic (see `refCountWord`).
        var current = unsafe ~refCountWord.pointee.load(ordering: .relaxed)
        while true {
            let status = MetaSlotStatus(refCount: current)
            guard case .shared = status else { return status }
            if current >= MetaSlot.refCountMax { refCountOverflow(current) }
            // SAFETY: as above.
            let (exchanged, original) = unsafe refCountWord.pointee.weakCompareExchange(
                expected: ~current, desired: ~(current + 1),
                successOrdering: .acquiring, failureOrdering: .relaxed)
            if exchanged { return nil }
            current = ~original
        }
    }
}

/// What a reference count encodes (the spec's `MetaSlotStatus`).
public enum MetaSlotStatus: Equatable, Sendable {
    /// `UInt64.max`: free.
    case unused
    /// `UInt64.max - 1`: one `UniqueFrame` owns it.
    case unique
    /// `0`: being constructed or torn down.
    case busy
    /// `1 ... Int64.max`: that many references.
    case shared(UInt64)
    /// Anything else: forbidden by the slot invariant.
    case overflow(UInt64)

    @inlinable
    public init(refCount: UInt64) {
        switch refCount {
        case MetaSlot.refCountUnused: self = .unused
        case MetaSlot.refCountUnique: self = .unique
        case 0: self = .busy
        case 1...MetaSlot.refCountMax: self = .shared(refCount)
        default: self = .overflow(refCount)
        }
    }
}

// MARK: Failure paths, kept out of line so the hot paths stay small.

@usableFromInline @inline(never)
func incRefCountFailed(old: UInt64, paddr: Paddr) -> Never {
    if old >= MetaSlot.refCountMax && old < MetaSlot.refCountUnique { refCountOverflow(old) }
    preconditionFailure("frame \(paddr): cloned with impossible reference count \(describeRefCount(old))")
}

@usableFromInline @inline(never)
func decRefCountFailed(old: UInt64, paddr: Paddr) -> Never {
    preconditionFailure(
        "frame \(paddr): dropped with impossible reference count \(describeRefCount(old)) (double free?)")
}

@usableFromInline @inline(never)
func refCountOverflow(_ count: UInt64) -> Never {
    preconditionFailure("frame reference count overflow (\(count))")
}

/// A count as a person reads it: the state name for the special values.
func describeRefCount(_ count: UInt64) -> String {
    switch MetaSlotStatus(refCount: count) {
    case .unused: return "UNUSED"
    case .unique: return "UNIQUE"
    case .busy: return "0 (busy)"
    case .shared(let n): return String(n)
    case .overflow(let n): return String(n)
    }
}

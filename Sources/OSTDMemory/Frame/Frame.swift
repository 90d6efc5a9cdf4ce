// `Frame<M>`: a counted reference to one 4 KiB frame (OSTD `frame/mod.rs`).
//
// A handle is two words — the frame's metadata slot and the machine it belongs to — and it is
// `~Copyable`: `clone()` is the only way to get another handle and adds a reference, and `deinit`
// is Rust's `Drop`, giving the reference back. The last drop tears the slot down (`UNUSED`) and
// returns the frame to the allocator. No Swift reference count is touched on any of these paths.
//
// Turning a handle into a raw address and back is one documented pair, used everywhere (frames
// forgotten into page-table entries, kept across a TLB flush, handed to callers):
//
//     intoRaw()            forgets the handle: the reference stays, its ledger entry is redeemed
//     fromRaw(_:in:)       restores it: one ledger entry is minted for the reference taken over
//
// `init(adopting:context:)` is not a third way in: it re-types or moves a reference that is
// already held and already counted (conversions between metadata types, a segment yielding its
// frames), so the ledger does not change.
//
// The generic parameter is the metadata type (`UntypedMeta` for plain data frames, or a type of
// the caller's); `Frame<DynFrameMeta>` (`AnyFrame`) and `Frame<DynUFrameMeta>` (`UFrame`) are the
// type-erased forms of OSTD's `Frame<dyn AnyFrameMeta>` and `UFrame`.

/// A handle to a frame of any metadata type (OSTD `Frame<dyn AnyFrameMeta>`).
public typealias AnyFrame = Frame<DynFrameMeta>
/// A handle to an untyped frame of any untyped metadata type (OSTD `UFrame`).
public typealias UFrame = Frame<DynUFrameMeta>

// Sendable: a noncopyable handle holding one counted reference (an atomic in the slot); shared
// metadata is read-only through it, as OSTD's `Frame<M: AnyFrameMeta + Sync>`.
/// A reference to one frame, with its metadata of type `M`.
@frozen
public struct Frame<M: AnyFrameMeta>: ~Copyable, @unchecked Sendable {
    @usableFromInline let slot: MetaSlot
    @usableFromInline let context: MachineRef

    /// Takes over one reference that the caller already holds and has counted in the ledger
    /// (a handle being re-typed or moved); the ledger does not change.
    @inlinable @inline(__always)
    init(adopting slot: MetaSlot, context: MachineRef) {
        self.slot = slot
        self.context = context
    }

    /// Drops the reference (Rust's `Drop`); the last one frees the frame.
    ///
    /// Always inlined: left to its heuristics, the optimiser stops inlining it into loops that
    /// drop frames once the free path grows by a few instructions (the pageblock test of
    /// `deallocFrame` did it: frame-alloc-free-batch-64 went from 613e6 to 694e6 instructions
    /// under callgrind, 637e6 inlined).
    @inlinable @inline(__always)
    deinit {
        if context.isAccounting {
            Frame.dropAccounted(slot, context)
            return
        }
        Frame.dropReference(slot, context)
    }

    /// The physical address of the frame.
    @inlinable
    public var paddr: Paddr { context.paddr(of: slot) }

    /// The size of the frame: always 4 KiB.
    @inlinable
    public var size: Int { pageSize }

    /// The paging level the frame can be mapped at: always 1, as OSTD has no tracked huge frames.
    @inlinable
    public var mapLevel: PagingLevel { 1 }

    /// The reference count: handles, page-table mappings and segments (Relaxed load).
    @inlinable
    public var referenceCount: UInt64 { slot.referenceCount }

    /// The type tag stored in the slot.
    public var typeTag: FrameMetaTag { slot.typeTag }

    /// Whether the frame holds plain bytes (OSTD `dyn_meta().is_untyped()`).
    public var isUntyped: Bool { slot.typeTag.isUntyped }

    /// Another handle to the same frame (OSTD `Clone`): one more reference.
    ///
    /// - Complexity: O(1), one atomic increment.
    @inlinable
    public func clone() -> Frame<M> {
        if context.isAccounting { return Frame.cloneAccounted(slot, context) }
        return Frame.addReference(slot, context)
    }

    /// Forgets the handle without dropping its reference and returns the frame's address
    /// (OSTD `into_raw`). Restore it with `fromRaw` exactly once, or the frame leaks.
    @inlinable
    public consuming func intoRaw() -> Paddr {
        let paddr = self.paddr
        context.ledger?.redeem(context.frameIndex(of: slot))
        discard self
        return paddr
    }

    /// Restores a handle forgotten by `intoRaw` (OSTD `from_raw`).
    ///
    /// - Safety: `paddr` must come from `intoRaw` of a `Frame<M>` of this machine, and each such
    ///   address may be restored once; restoring it twice is a double free.
    @unsafe @inlinable
    public static func fromRaw(_ paddr: Paddr, in machine: Machine) -> Frame<M> {
        precondition(Int(paddr.rawValue) < machine.context.memorySize, "frame \(paddr) is outside memory")
        // SAFETY: the caller's contract (above) is the internal form's: an address from
        // `intoRaw` on this machine, restored once; it is inside memory (checked).
        return unsafe fromRaw(paddr, in: machine.context)
    }

    /// Restores a handle forgotten by `intoRaw` on the machine `context` (the layers' form of
    /// `fromRaw`, for references kept in page-table entries and flush batches).
    ///
    /// - Safety: as `fromRaw(_:in:)`; `paddr` is inside physical memory.
    @unsafe @inlinable @inline(__always)
    static func fromRaw(_ paddr: Paddr, in context: MachineRef) -> Frame<M> {
        let slot = context.slot(of: paddr)
        context.ledger?.mint(context.frameIndex(of: slot))
        return Frame(adopting: slot, context: context)
    }

    // MARK: Bodies of drop and clone
    //
    // Each is written once and run two ways: inlined on the fast path, and out of line on a
    // machine that accounts for its handles (`isAccounting`), which also redeems or mints the
    // handle's ledger entry and shows the frame auditor the operation (`FrameAuditor.swift`).
    // So the fast path carries no closure, no ledger and no audit code.

    /// Gives back the reference of a handle to `slot` (the body of `drop`, without the ledger).
    @inlinable @inline(__always)
    static func dropReference(_ slot: MetaSlot, _ context: MachineRef) {
        if slot.decRefCount(paddr: context.paddr(of: slot)) {
            // The slot is busy: the allocator makes it unused, or its own (a CPU cache's frame).
            context.deallocFrame(context.frameIndex(of: slot))
        }
    }

    /// `drop` on an accounting machine: the ledger entry redeemed, the auditor shown.
    @usableFromInline @inline(never)
    static func dropAccounted(_ slot: MetaSlot, _ context: MachineRef) {
        context.auditingFrames(.drop(context.paddr(of: slot))) {
            context.ledger?.redeem(context.frameIndex(of: slot))
            dropReference(slot, context)
        }
    }

    /// A new handle to `slot`, with one more reference (the body of `clone`, without the ledger).
    @inlinable @inline(__always)
    static func addReference(_ slot: MetaSlot, _ context: MachineRef) -> Frame<M> {
        #if DEBUG
        if !context.hasMutant(.cloneDoesNotCount) { slot.incRefCount(paddr: context.paddr(of: slot)) }
        #else
        slot.incRefCount(paddr: context.paddr(of: slot))
        #endif
        return Frame(adopting: slot, context: context)
    }

    /// `clone` on an accounting machine: a ledger entry minted, the auditor shown.
    @usableFromInline @inline(never)
    static func cloneAccounted(_ slot: MetaSlot, _ context: MachineRef) -> Frame<M> {
        context.auditingFrames(.clone(context.paddr(of: slot))) {
            let frame = addReference(slot, context)
            context.ledger?.mint(context.frameIndex(of: slot))
            return frame
        }
    }

    /// Splits the handle into its parts without dropping the reference (for conversions).
    @inlinable
    consuming func intoParts() -> (slot: MetaSlot, context: MachineRef) {
        let parts = (slot, context)
        discard self
        return parts
    }
}

extension Frame where M: FrameMeta {
    /// The frame's metadata (OSTD `meta()`). Read-only: the slot is shared.
    @inlinable
    public var meta: M {
        // SAFETY: the handle holds a reference, so the slot is live and its storage holds the
        // `M` that `writeMeta` stored before the count was published (the handle's type is the
        // slot's, as every way of making one ensures); a shared slot's metadata is not written.
        unsafe slot.storage.load(as: M.self)
    }

    /// Claims an unused frame with metadata `meta`, as its only reference (OSTD `from_unused`).
    ///
    /// - Throws: `notAligned` / `outOfBound` for a bad address, or the state the frame is in
    ///   (`inUse`, `unique`, `busy`) when it is not unused. Nothing changes on failure.
    public static func fromUnused(_ paddr: Paddr, meta: M, in machine: Machine) throws(GetFrameError) -> Frame<M> {
        let context = machine.context
        return try context.auditingFallibleFrames(.fromUnused(paddr)) { () throws(GetFrameError) -> Frame<M> in
            // SAFETY: `claimUnused` just claimed the slot for this thread (count `0`).
            unsafe Frame(initializing: try context.claimUnused(paddr), meta: meta, context: context)
        }
    }

    /// Writes the metadata of a slot this thread has just claimed (count `0`) and publishes it
    /// with one reference, minting its ledger entry.
    ///
    /// - Safety: as `init(publishing:meta:context:)`.
    @unsafe @inlinable @inline(__always)
    init(initializing slot: MetaSlot, meta: M, context: MachineRef) {
        // SAFETY: the caller's contract.
        unsafe self.init(publishing: slot, meta: meta, context: context)
        context.ledger?.mint(context.frameIndex(of: slot))
    }

    /// `init(initializing:meta:context:)` without the ledger (the allocation's fast path, on a
    /// machine that keeps none).
    ///
    /// - Safety: this thread has just claimed `slot` (count `0`, `MetaSlot.claimUnused`; or held
    ///   by the allocator for it, `MetaSlot.claimFree`), so it holds it exclusively.
    @unsafe @inlinable @inline(__always)
    init(publishing slot: MetaSlot, meta: M, context: MachineRef) {
        // SAFETY: the slot is this thread's, claimed and not yet published (the caller's contract).
        unsafe slot.writeMeta(meta)
        slot.publishShared()
        self.init(adopting: slot, context: context)
    }
}

extension Frame where M == DynFrameMeta {
    /// Takes one more reference to a frame in use (OSTD `Frame::from_in_use`).
    ///
    /// - Throws: `notAligned` / `outOfBound` for a bad address; `unused`, `unique` or `busy` when
    ///   the frame has no shared reference to add to.
    public static func fromInUse(_ paddr: Paddr, in machine: Machine) throws(GetFrameError) -> AnyFrame {
        let context = machine.context
        return try context.auditingFallibleFrames(.fromInUse(paddr)) { () throws(GetFrameError) -> AnyFrame in
            let slot = try context.checkedSlot(paddr)
            if let status = slot.tryIncFromInUse() { throw GetFrameError(status: status, paddr: paddr) }
            context.ledger?.mint(context.frameIndex(of: slot))
            return AnyFrame(adopting: slot, context: context)
        }
    }

    /// Erases the metadata type (OSTD `From<Frame<M>> for Frame<dyn AnyFrameMeta>`).
    @inlinable
    public init<N: AnyFrameMeta>(_ frame: consuming Frame<N>) {
        let (slot, context) = frame.intoParts()
        self.init(adopting: slot, context: context)
    }
}

extension Frame where M == DynUFrameMeta {
    /// Erases an untyped frame's metadata type (OSTD `From<Frame<M: AnyUFrameMeta>> for UFrame`).
    @inlinable
    public init<N: AnyUFrameMeta>(_ frame: consuming Frame<N>) {
        let (slot, context) = frame.intoParts()
        self.init(adopting: slot, context: context)
    }
}

extension MachineRef {
    /// The slot of `paddr` after OSTD's `get_slot` checks: aligned and inside memory.
    func checkedSlot(_ paddr: Paddr) throws(GetFrameError) -> MetaSlot {
        guard paddr.isAligned(to: pageSize) else { throw .notAligned(paddr) }
        guard Int(paddr.rawValue) < memorySize else { throw .outOfBound(paddr) }
        return reservedSlot(of: paddr) ?? slot(of: paddr)
    }

    /// Claims the unused frame at `paddr` (OSTD `get_from_unused`): the slot is then busy and
    /// the caller's to initialise. Nothing changes on failure; a frame in a CPU's cache is held
    /// by the allocator and refused as `unique` (MetaSlot.swift's file comment).
    func claimUnused(_ paddr: Paddr) throws(GetFrameError) -> MetaSlot {
        let slot = try checkedSlot(paddr)
        if let status = claimUnusedByAddress(slot) { throw GetFrameError(status: status, paddr: paddr) }
        return slot
    }
}

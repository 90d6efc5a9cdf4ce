// `UniqueFrame<M>`: the only reference to a frame, with mutable metadata (OSTD `frame/unique.rs`).
//
// The slot's count is `UNIQUE` for as long as the handle lives, so no `Frame` can be taken from
// it by address (`fromInUse` fails with `unique`) and the metadata may be changed in place. It
// converts to a shared `Frame` (count `1`) and back when that frame's count is exactly 1.

// Sendable: a noncopyable handle to a slot whose count is UNIQUE while it lives, so only its
// holder touches the metadata; moving it to another thread moves that ownership.
/// The unique owner of a frame.
@frozen
public struct UniqueFrame<M: FrameMeta>: ~Copyable, @unchecked Sendable {
    @usableFromInline let slot: MetaSlot
    @usableFromInline let context: MachineRef

    @inlinable
    init(adopting slot: MetaSlot, context: MachineRef) {
        self.slot = slot
        self.context = context
    }

    /// Drops the frame: busy, metadata forgotten, back to the allocator (`UNUSED`, or held by a
    /// CPU's cache).
    @inlinable
    deinit {
        let (slot, context) = (slot, context)
        context.auditingFrames(.uniqueDrop(context.paddr(of: slot))) {
            let index = context.frameIndex(of: slot)
            context.ledger?.redeem(index)
            slot.storeBusy()
            context.deallocFrame(index)
        }
    }

    /// Claims an unused frame as uniquely owned (OSTD `UniqueFrame::from_unused`).
    ///
    /// - Throws: as `Frame.fromUnused`; nothing changes on failure.
    public static func fromUnused(_ paddr: Paddr, meta: M, in machine: Machine) throws(GetFrameError) -> UniqueFrame<M> {
        let context = machine.context
        return try context.auditingFallibleFrames(.uniqueFromUnused(paddr)) { () throws(GetFrameError) -> UniqueFrame<M> in
            let slot = try context.claimUnused(paddr)
            // SAFETY: `claimUnused` just claimed the slot for this thread (count `0`).
            unsafe slot.writeMeta(meta)
            slot.publishUnique()
            context.ledger?.mint(context.frameIndex(of: slot))
            return UniqueFrame(adopting: slot, context: context)
        }
    }

    /// The physical address of the frame.
    @inlinable
    public var paddr: Paddr { context.paddr(of: slot) }

    /// The size of the frame: always 4 KiB.
    @inlinable
    public var size: Int { pageSize }

    /// The reference count: always `MetaSlot.refCountUnique`.
    @inlinable
    public var referenceCount: UInt64 { slot.referenceCount }

    /// The metadata, readable and — this being the only handle — writable
    /// (OSTD `meta()` / `meta_mut()`).
    @inlinable
    public var meta: M {
        // SAFETY: the slot's count is UNIQUE while this handle lives, so it is live and only this
        // handle touches its storage, which holds the `M` written when the handle was made.
        get { unsafe slot.storage.load(as: M.self) }
        set { unsafe slot.storage.storeBytes(of: newValue, as: M.self) }
    }

    /// Replaces the metadata with a value of another type (OSTD `repurpose`).
    public consuming func repurpose<N: FrameMeta>(_ meta: N) -> UniqueFrame<N> {
        let (slot, context) = intoParts()
        // SAFETY: the consumed handle was the slot's unique owner; its ownership passes to the
        // new one.
        unsafe slot.writeMeta(meta)
        return UniqueFrame<N>(adopting: slot, context: context)
    }

    /// Makes the frame unused again *without* returning it to the allocator
    /// (OSTD `reset_as_unused`, for allocator implementations).
    public consuming func resetAsUnused() {
        let (slot, context) = intoParts()
        context.ledger?.redeem(context.frameIndex(of: slot))
        slot.storeBusy()
        slot.storeUnused()
    }

    /// Converts to a shared frame with one reference (OSTD `From<UniqueFrame<M>> for Frame<M>`).
    public consuming func intoShared() -> Frame<M> {
        let (slot, context) = intoParts()
        slot.publishShared()
        return Frame(adopting: slot, context: context)
    }

    /// Converts a shared frame whose count is exactly 1 into a unique one
    /// (OSTD `TryFrom<Frame<M>> for UniqueFrame<M>`); otherwise hands the frame back.
    public static func tryFrom(_ frame: consuming Frame<M>) -> FrameConversion<UniqueFrame<M>, Frame<M>> {
        let (slot, context) = frame.intoParts()
        var converted = false
        return context.auditingFrames(.uniqueTryFrom(context.paddr(of: slot))) {
            guard slot.exchangeRefCount(from: 1, to: MetaSlot.refCountUnique) else {
                return .rejected(Frame(adopting: slot, context: context))
            }
            converted = true
            return .converted(UniqueFrame(adopting: slot, context: context))
        } outcome: { _ in converted ? .done : .rejected }
    }

    /// Forgets the handle and returns the frame's address (OSTD `into_raw`).
    public consuming func intoRaw() -> Paddr {
        let paddr = self.paddr
        let (slot, context) = intoParts()
        context.ledger?.redeem(context.frameIndex(of: slot))
        return paddr
    }

    /// Restores a handle forgotten by `intoRaw` (OSTD `from_raw`).
    ///
    /// - Safety: `paddr` must come from `UniqueFrame<M>.intoRaw` on this machine, restored once.
    @unsafe
    public static func fromRaw(_ paddr: Paddr, in machine: Machine) -> UniqueFrame<M> {
        let slot = machine.context.slot(of: paddr)
        machine.context.ledger?.mint(machine.context.frameIndex(of: slot))
        return UniqueFrame(adopting: slot, context: machine.context)
    }

    @inlinable
    consuming func intoParts() -> (slot: MetaSlot, context: MachineRef) {
        let parts = (slot, context)
        discard self
        return parts
    }
}

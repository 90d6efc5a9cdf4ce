// Frame allocation options and entry points (OSTD `frame/allocator.rs`, `FrameAllocOptions`).
//
// Single frames come from the calling CPU's cache when the thread is bound to a CPU, otherwise
// from the buddy set under its lock; segments always come from the buddy set. A frame the
// allocator hands out is claimed with a plain load when the allocator holds it (a frame freed
// into a CPU's cache) and with OSTD's CAS when it is `UNUSED` (`MetaSlot.claimFree`). A segment of
// `n` frames is carved from a chunk of `2^ceil(log2 n)` frames, so a power-of-two segment is aligned
// to its own size. Frames are zeroed at allocation when asked (the default), never at free, and
// only those whose bytes may be non-zero (`MetaSlot.markWritten`): the rest still hold zeros.

/// How to allocate frames.
///
///     let frame = try FrameAllocOptions().zeroed(false).allocFrame(in: machine)
public struct FrameAllocOptions: Sendable {
    /// Whether new frames are filled with zeros (default `true`, as OSTD).
    public var isZeroed = true

    @inlinable
    public init() {}

    /// These options with zero-filling turned on or off.
    @inlinable
    public func zeroed(_ zeroed: Bool) -> FrameAllocOptions {
        var options = self
        options.isZeroed = zeroed
        return options
    }

    /// Allocates one untyped frame (OSTD `alloc_frame`).
    ///
    /// - Throws: `outOfMemory(frames: 1)` when no frame is free.
    @inlinable
    public func allocFrame(in machine: Machine) throws(FrameError) -> Frame<UntypedMeta> {
        try allocFrameWith(UntypedMeta(), in: machine)
    }

    /// Allocates one frame with metadata `meta` (OSTD `alloc_frame_with`).
    ///
    /// - Throws: `outOfMemory(frames: 1)` when no frame is free.
    @inlinable
    public func allocFrameWith<M: FrameMeta>(_ meta: M, in machine: Machine) throws(FrameError) -> Frame<M> {
        let context = machine.context
        guard let index = context.allocFrame() else { throw .outOfMemory(frames: 1) }
        let slot = context.slot(index: index)
        if context.isAccounting { return Frame.claimAccounted(slot, meta: meta, zeroed: isZeroed, context: context) }
        return Frame.claim(slot, meta: meta, zeroed: isZeroed, context: context)
    }

    /// Allocates `nframes` contiguous untyped frames (OSTD `alloc_segment`).
    ///
    /// - Throws: `invalidArgs` for `nframes == 0`; `outOfMemory(frames: nframes)` when no run of
    ///   that many frames is free.
    /// - Precondition: `nframes * 4096` does not overflow.
    public func allocSegment(_ nframes: Int, in machine: Machine) throws(FrameError) -> Segment<UntypedMeta> {
        try allocSegmentWith(nframes, in: machine) { _ in UntypedMeta() }
    }

    /// Allocates `nframes` contiguous frames with metadata `meta(paddr)` each
    /// (OSTD `alloc_segment_with`).
    ///
    /// - Throws: as `allocSegment`.
    public func allocSegmentWith<M: FrameMeta>(
        _ nframes: Int, in machine: Machine, meta: (Paddr) -> M
    ) throws(FrameError) -> Segment<M> {
        guard nframes != 0 else { throw .invalidArgs("a segment of zero frames") }
        let (_, overflow) = nframes.multipliedReportingOverflow(by: pageSize)
        precondition(!overflow && nframes > 0, "segment size overflows: \(nframes) frames")
        let context = machine.context
        guard let start = context.allocContiguous(count: nframes) else { throw .outOfMemory(frames: nframes) }
        if isZeroed {
            // Before claiming: the frames are ours, the allocator just gave them.
            for index in start..<(start + nframes) {
                let paddr = Paddr(UInt64(index) << UInt64(pageShift))
                // SAFETY: frame `index` is one the allocator just handed out, so the host address
                // is its frame, inside memory, and no one else holds it yet.
                unsafe context.slot(index: index).zeroFrameIfWritten(context.pointer(to: paddr))
            }
        }
        // The auditor checks an allocation as OSTD's `from_unused`, from `UNUSED`.
        if context.isAccounting { for index in start..<(start + nframes) { context.slot(index: index).releaseHoldForAudit() } }
        let segment: Segment<M>
        do {
            segment = try Segment.claim(start..<(start + nframes), context: context, meta: meta)
        } catch {
            allocatorReturnedInUse(error.paddr)
        }
        return segment
    }
}

extension Frame where M: FrameMeta {
    /// Turns the free frame `MachineRef.allocFrame` just handed to this thread into a handle with
    /// metadata `meta` (the body of an allocation, OSTD's `from_unused` on the allocated address;
    /// no ledger). A plain load when the allocator held the frame, OSTD's CAS when it is `UNUSED`
    /// (`MetaSlot.claimFree`).
    @inlinable @inline(__always)
    static func claim(_ slot: MetaSlot, meta: M, zeroed: Bool, context: MachineRef) -> Frame<M> {
        if _slowPath(slot.claimFree() != nil) { allocatorReturnedInUse(context.paddr(of: slot)) }
        return publish(slot, meta: meta, zeroed: zeroed, context: context)
    }

    /// Zero-fills if asked, writes `meta` and publishes the slot this thread has just claimed.
    @inlinable @inline(__always)
    static func publish(_ slot: MetaSlot, meta: M, zeroed: Bool, context: MachineRef) -> Frame<M> {
        // SAFETY: this thread just claimed the slot (`MetaSlot.claimFree`: busy, or held for it),
        // so it holds the frame, whose host address this is, exclusively.
        if zeroed { unsafe slot.zeroFrameIfWritten(context.pointer(to: context.paddr(of: slot))) }
        return unsafe Frame(publishing: slot, meta: meta, context: context)
    }

    /// `claim` on an accounting machine: a ledger entry minted, the auditor shown. The auditor
    /// checks an allocation as OSTD's `from_unused`, from `UNUSED`: a held frame leaves the
    /// allocator's hold for `UNUSED` first, and is claimed with OSTD's CAS.
    @usableFromInline @inline(never)
    static func claimAccounted(_ slot: MetaSlot, meta: M, zeroed: Bool, context: MachineRef) -> Frame<M> {
        slot.releaseHoldForAudit()
        return context.auditingFrames(.fromUnused(context.paddr(of: slot))) {
            if _slowPath(slot.claimUnused() != nil) { allocatorReturnedInUse(context.paddr(of: slot)) }
            let frame = publish(slot, meta: meta, zeroed: zeroed, context: context)
            context.ledger?.mint(context.frameIndex(of: slot))
            return frame
        }
    }
}

@usableFromInline @inline(never)
func allocatorReturnedInUse(_ paddr: Paddr) -> Never {
    preconditionFailure("frame \(paddr): the allocator handed out a frame that is in use")
}

extension MetaSlot {
    /// Turns a free frame the allocator holds, and has just handed to the caller, `UNUSED`, so
    /// that the auditor sees its claim as OSTD's `from_unused` (accounting machines only). The
    /// frame is the caller's alone either way; an `UNUSED` one is left as it is.
    @usableFromInline
    func releaseHoldForAudit() {
        if referenceCount == MetaSlot.refCountUnique { storeUnused() }
    }
}

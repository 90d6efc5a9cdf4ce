// `Segment<M>`: a contiguous run of frames of one metadata type (OSTD `frame/segment.rs`).
//
// A segment holds one reference on *each* of its frames — not one on the run — so a segment can
// be split, sliced and iterated into single `Frame`s without any frame changing hands twice, and
// dropping it drops every frame. Frames that reach zero on drop go back to the allocator in
// contiguous runs, one lock round trip per run.

/// A segment of untyped frames of any untyped metadata type (OSTD `USegment`).
public typealias USegment = Segment<DynUFrameMeta>

// Sendable: a noncopyable handle holding one counted reference on each frame; the counts are
// atomics, and moving it moves the references.
/// A contiguous range of frames, one reference held on each.
@frozen
public struct Segment<M: AnyFrameMeta>: ~Copyable, @unchecked Sendable {
    /// Frame indices `start ..< end`.
    @usableFromInline var start: Int
    @usableFromInline var end: Int
    @usableFromInline let context: MachineRef

    @inlinable
    init(adopting frames: Range<Int>, context: MachineRef) {
        start = frames.lowerBound
        end = frames.upperBound
        self.context = context
    }

    /// Drops the reference on every frame; frames left unreferenced return to the allocator.
    deinit {
        Segment.dropReferences(start..<end, context: context)
    }

    /// Drops one reference on each frame of `frames`, returning the freed ones in runs.
    static func dropReferences(_ frames: Range<Int>, context: MachineRef) {
        context.auditingFrames(.segmentDrop(paddrs(of: frames))) { releaseReferences(frames, context: context) }
    }

    /// `dropReferences` without the audit. A freed frame goes to the current CPU's cache while it
    /// has room, held by the allocator as a single frame's free path leaves it (so its next
    /// allocation takes it without a CAS, `MachineRef.cacheFreedFrame`); the others go back to
    /// the buddy set in contiguous runs, one lock per run.
    private static func releaseReferences(_ frames: Range<Int>, context: MachineRef) {
        // SAFETY: the cache is handed to the closure alone, and used only inside it.
        unsafe context.withCurrentFrameCache { cache in
            var runStart = frames.lowerBound
            var runLength = 0
            for index in frames {
                let slot = context.slot(index: index)
                context.ledger?.redeem(index)
                if slot.decRefCount(paddr: context.paddr(of: slot)) {
                    // SAFETY: `cache` is the current CPU's, this thread's alone (`withCurrentFrameCache`).
                    if unsafe context.cacheFreedFrame(index, slot, in: cache) {
                        if runLength > 0 { context.deallocRange(runStart, count: runLength) }
                        runLength = 0
                        continue
                    }
                    slot.storeUnused()
                    if runLength == 0 { runStart = index }
                    runLength += 1
                    continue
                }
                if runLength > 0 { context.deallocRange(runStart, count: runLength) }
                runLength = 0
            }
            if runLength > 0 { context.deallocRange(runStart, count: runLength) }
        }
    }

    /// Adds one reference on each frame of `frames`, for a new segment over them.
    static func addReferences(_ frames: Range<Int>, context: MachineRef) {
        context.auditingFrames(.segmentClone(paddrs(of: frames))) {
            for index in frames {
                let slot = context.slot(index: index)
                slot.incRefCount(paddr: context.paddr(of: slot))
                context.ledger?.mint(index)
            }
        }
    }

    /// The physical range of frames `frames`.
    static func paddrs(of frames: Range<Int>) -> Range<Paddr> {
        Paddr(UInt64(frames.lowerBound) << UInt64(pageShift))..<Paddr(UInt64(frames.upperBound) << UInt64(pageShift))
    }

    // MARK: Geometry

    /// The physical address of the first frame (OSTD `paddr()`).
    @inlinable
    public var paddr: Paddr { Paddr(UInt64(start) << UInt64(pageShift)) }
    /// The physical address just past the last frame.
    @inlinable
    public var endPaddr: Paddr { Paddr(UInt64(end) << UInt64(pageShift)) }
    /// The physical range covered.
    @inlinable
    public var range: Range<Paddr> { paddr..<endPaddr }
    /// The size in bytes (OSTD `size()`).
    @inlinable
    public var size: Int { (end - start) << pageShift }
    /// The number of frames.
    @inlinable
    public var count: Int { end - start }

    // MARK: References

    /// Another segment over the same frames: one more reference on each (OSTD `Clone`).
    public func clone() -> Segment<M> {
        Segment.addReferences(start..<end, context: context)
        return Segment(adopting: start..<end, context: context)
    }

    /// Splits at byte offset `offset` (OSTD `Split::split`): `self` keeps the frames before
    /// `offset` and the frames from `offset` on are returned, each half keeping its references.
    /// (OSTD returns both halves as a pair; Swift tuples cannot hold noncopyable values.)
    ///
    /// - Precondition: `offset` is page aligned ("segment virtual address not aligned for
    ///   splitting") and strictly inside the segment ("segment virtual address out-of-bound for
    ///   splitting").
    public mutating func split(at offset: Int) -> Segment<M> {
        precondition(offset & (pageSize - 1) == 0, "segment virtual address not aligned for splitting")
        precondition(offset > 0 && offset < size, "segment virtual address out-of-bound for splitting")
        let (whole, context) = (start..<end, context)
        var middle = start + offset >> pageShift
        #if DEBUG
        if context.hasMutant(.segmentSplitMisplacesMiddle) { middle += 1 }
        #endif
        let front = start..<middle, back = middle..<end
        context.auditingFrames(.segmentSplit(Segment.paddrs(of: whole), offset: offset, front: Segment.paddrs(of: front),
                                             back: Segment.paddrs(of: back))) {}
        end = middle
        return Segment(adopting: back, context: context)
    }

    /// A new segment over the byte range `range` of this one, with its own references
    /// (OSTD `slice`).
    ///
    /// - Precondition: both bounds are page aligned ("segment virtual address not aligned for
    ///   slicing") and `range` lies inside the segment ("segment virtual address out-of-bound for
    ///   slicing").
    public func slice(_ range: Range<Int>) -> Segment<M> {
        precondition(range.lowerBound & (pageSize - 1) == 0 && range.upperBound & (pageSize - 1) == 0,
                     "segment virtual address not aligned for slicing")
        precondition(range.lowerBound >= 0 && range.upperBound <= size,
                     "segment virtual address out-of-bound for slicing")
        let frames = (start + range.lowerBound >> pageShift)..<(start + range.upperBound >> pageShift)
        Segment.addReferences(frames, context: context)
        return Segment(adopting: frames, context: context)
    }

    /// Takes the first frame out of the segment, with the reference the segment held on it
    /// (OSTD's `Iterator for Segment`).
    public mutating func next() -> Frame<M>? {
        guard start < end else { return nil }
        defer { start += 1 }
        return Frame(adopting: context.slot(index: start), context: context)
    }

    /// A one-frame segment taking over the frame's reference (OSTD `From<Frame<M>>`).
    public init(_ frame: consuming Frame<M>) {
        let (slot, context) = frame.intoParts()
        let index = context.frameIndex(of: slot)
        self.init(adopting: index..<(index + 1), context: context)
    }

    /// Forgets the segment without dropping its references (OSTD `into_raw`).
    public consuming func intoRaw() -> Range<Paddr> {
        let range = self.range
        let (frames, context) = intoParts()
        for index in frames { context.ledger?.redeem(index) }
        return range
    }

    /// Restores a segment forgotten by `intoRaw` (OSTD `from_raw`).
    ///
    /// - Safety: `range` must come from `Segment<M>.intoRaw` on this machine, restored once.
    @unsafe
    public static func fromRaw(_ range: Range<Paddr>, in machine: Machine) -> Segment<M> {
        // SAFETY: the caller's contract (above) is the internal form's.
        unsafe fromRaw(range, in: machine.context)
    }

    /// `fromRaw` on the machine `context`, for the layers that keep segments as raw ranges.
    ///
    /// - Safety: as `fromRaw(_:in:)`.
    @unsafe
    static func fromRaw(_ range: Range<Paddr>, in context: MachineRef) -> Segment<M> {
        let frames = Int(range.lowerBound.rawValue >> UInt64(pageShift))..<Int(range.upperBound.rawValue >> UInt64(pageShift))
        for index in frames { context.ledger?.mint(index) }
        return Segment(adopting: frames, context: context)
    }

    consuming func intoParts() -> (frames: Range<Int>, context: MachineRef) {
        let parts = (start..<end, context)
        discard self
        return parts
    }
}

extension Segment where M: FrameMeta {
    /// Claims the unused frames of `range`, with metadata `meta(paddr)` for each
    /// (OSTD `Segment::from_unused`). On a failure part way, the frames already claimed are
    /// dropped and nothing else changes.
    ///
    /// - Throws: `notAligned` / `outOfBound` for a bad range, or the state of the first frame
    ///   that is not unused.
    /// - Precondition: the range is not empty.
    public static func fromUnused(
        _ range: Range<Paddr>, in machine: Machine, meta: (Paddr) -> M
    ) throws(GetFrameError) -> Segment<M> {
        guard range.lowerBound.isAligned(to: pageSize) else { throw .notAligned(range.lowerBound) }
        guard range.upperBound.isAligned(to: pageSize) else { throw .notAligned(range.upperBound) }
        guard Int(range.upperBound.rawValue) <= machine.memorySize else { throw .outOfBound(range.upperBound) }
        precondition(range.lowerBound < range.upperBound, "segment range is empty")
        let start = Int(range.lowerBound.rawValue >> UInt64(pageShift))
        let end = Int(range.upperBound.rawValue >> UInt64(pageShift))
        _ = machine.context.reservedSlot(of: range.lowerBound)  // reserved frames come first
        return try claim(start..<end, context: machine.context, byAddress: true, meta: meta)
    }

    /// Claims frames `frames` one by one; the segment under construction owns those claimed so
    /// far, so a failure drops exactly them. `byAddress`: the frames were not just handed out by
    /// the allocator, so each claim takes its lock (`MachineRef.claimUnusedByAddress`).
    static func claim(
        _ frames: Range<Int>, context: MachineRef, byAddress: Bool = false, meta: (Paddr) -> M
    ) throws(GetFrameError) -> Segment<M> {
        try context.auditingFallibleFrames(.segmentFromUnused(paddrs(of: frames))) { () throws(GetFrameError) -> Segment<M> in
            try claimEach(frames, context: context, byAddress: byAddress, meta: meta)
        }
    }

    /// `claim` without the audit.
    private static func claimEach(
        _ frames: Range<Int>, context: MachineRef, byAddress: Bool, meta: (Paddr) -> M
    ) throws(GetFrameError) -> Segment<M> {
        var segment = Segment(adopting: frames.lowerBound..<frames.lowerBound, context: context)
        for index in frames {
            let slot = context.slot(index: index)
            let paddr = context.paddr(of: slot)
            if let status = byAddress ? context.claimUnusedByAddress(slot) : slot.claimFree() {
                throw GetFrameError(status: status, paddr: paddr)
            }
            // SAFETY: `claimUnused` just claimed the slot for this thread (count `0`).
            _ = unsafe Frame(initializing: slot, meta: meta(paddr), context: context).intoParts()
            segment.end = index + 1
        }
        return segment
    }
}

extension Segment where M == DynUFrameMeta {
    /// Erases an untyped segment's metadata type (OSTD `From<Segment<M>> for USegment`).
    public init<N: AnyUFrameMeta>(_ segment: consuming Segment<N>) {
        let (frames, context) = segment.intoParts()
        self.init(adopting: frames, context: context)
    }
}

extension Segment where M == DynFrameMeta {
    /// Erases a segment's metadata type (OSTD `From<Segment<M>> for Segment<dyn AnyFrameMeta>`).
    public init<N: AnyFrameMeta>(_ segment: consuming Segment<N>) {
        let (frames, context) = segment.intoParts()
        self.init(adopting: frames, context: context)
    }
}

extension Segment where M: FrameMeta {
    /// Recovers a typed segment from an erased one (OSTD `TryFrom<Segment<dyn>>`): like OSTD,
    /// only the first frame's tag is checked.
    public static func tryFrom(_ segment: consuming Segment<DynFrameMeta>) -> FrameConversion<Segment<M>, Segment<DynFrameMeta>> {
        guard segment.count > 0,
              segment.context.slot(index: segment.start).typeTag == M.typeTag
        else { return .rejected(segment) }
        let (frames, context) = segment.intoParts()
        return .converted(Segment(adopting: frames, context: context))
    }
}

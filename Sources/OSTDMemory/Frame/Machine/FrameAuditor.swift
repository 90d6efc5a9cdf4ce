// The audit switch of the frame layer: a machine created with a `FrameAuditor` shows it every
// operation on frame handles (checks 19–24 of the specification's run-time list) and every frame
// whose last reference goes (check 32), with the states of the slots involved before and after.
//
// The auditor is the executable specification (`OSTDSpec.SpecAuditor`), a layer the core cannot
// name: the frame layer states here what it shows, as the address-space layer does in
// `VmSpaceAuditor.swift`. What the operation must have done to its slots (`from_unused`: unused
// to one reference; `clone`: one more; `drop`: one fewer, the last one freeing the frame, never
// while mapped; ...) is the auditor's business, and so is what else it knows (which frames are
// mapped, which translations the TLBs hold).
//
// The slot states are read around the operation by the thread doing it. They are exact when no
// other thread changes the same slots meanwhile, which holds in every audited run (the CLI, the
// property tests and the fuzz target are single-threaded); a concurrent run would need the
// auditor to tolerate other threads' changes, and none is audited.
//
// Off (no auditor), the hot operations (drop, clone, allocation) pay nothing: they test whether
// the machine keeps the obligation ledger, as they always did, and an audited machine always
// does, so its operations take the one out-of-line path that keeps the ledger and shows the
// auditor. The other operations pay one test of a nil reference.

/// One operation of the frame layer, as an auditor sees it.
public enum FrameOperation: Equatable, Sendable {
    /// `Frame::from_unused` (also every frame allocation, which is one).
    case fromUnused(Paddr)
    /// `UniqueFrame::from_unused`.
    case uniqueFromUnused(Paddr)
    /// `Frame::from_in_use`.
    case fromInUse(Paddr)
    /// `Frame::clone`.
    case clone(Paddr)
    /// `Frame::drop`.
    case drop(Paddr)
    /// `Segment::from_unused` (also every segment allocation).
    case segmentFromUnused(Range<Paddr>)
    /// A new segment over frames another segment holds (`Segment::clone`, `slice`).
    case segmentClone(Range<Paddr>)
    /// `Segment::split` of `range` at byte `offset`: the halves it produced.
    case segmentSplit(Range<Paddr>, offset: Int, front: Range<Paddr>, back: Range<Paddr>)
    /// `Segment::drop`.
    case segmentDrop(Range<Paddr>)
    /// `UniqueFrame::drop`.
    case uniqueDrop(Paddr)
    /// `UniqueFrame::try_from(Frame)`.
    case uniqueTryFrom(Paddr)
    /// A page-table entry's reference dropped as its subtree is torn down (no handle involved).
    case entryReleased(Paddr)

    /// The frames whose slots the operation may change.
    public var frames: Range<Paddr> {
        switch self {
        case .fromUnused(let paddr), .uniqueFromUnused(let paddr), .fromInUse(let paddr), .clone(let paddr),
             .drop(let paddr), .uniqueDrop(let paddr), .uniqueTryFrom(let paddr), .entryReleased(let paddr):
            paddr..<(paddr + pageSize)
        case .segmentFromUnused(let range), .segmentClone(let range), .segmentSplit(let range, _, _, _),
             .segmentDrop(let range):
            range
        }
    }
}

/// How a frame operation ended.
public enum FrameOperationOutcome: Equatable, Sendable {
    /// It did what it was asked.
    case done
    /// It refused, with this error; it must have changed nothing.
    case refused(GetFrameError)
    /// A conversion handed its input back (`UniqueFrame::try_from` on a shared frame).
    case rejected
}

/// One metadata slot as an auditor sees it: the seeds' `MetaSlotOwner` fields that live in the
/// slot, and the slot's outstanding obligations.
public struct FrameSlotState: Equatable, Sendable {
    /// The reference count or state (`MetaSlot.refCountUnused`, `refCountUnique`, `0`, `1...`).
    public var refCount: UInt64
    /// What kind of metadata the slot holds (its usage among it).
    public var tag: FrameMetaTag
    /// The free-list word (the seeds' `in_list`).
    public var inList: UInt64
    /// The seeds' `frame_obligations.count(index)`: handles and segment memberships.
    public var obligations: Int

    public init(refCount: UInt64, tag: FrameMetaTag, inList: UInt64, obligations: Int) {
        self.refCount = refCount
        self.tag = tag
        self.inList = inList
        self.obligations = obligations
    }
}

/// What an auditor may look at besides the slots: the CPUs' cached translations (read-only).
public struct FrameAuditContext {
    let context: MachineRef

    /// The number of CPUs.
    public var cpuCount: Int { context.cpuCount }

    /// The number of 4 KiB frames (the seeds' `MAX_PADDR / 4096`).
    public var frameCount: Int { context.frameCount }
}

/// Checks a machine's frame operations against the specification (see the file comment).
public protocol FrameAuditor: AnyObject, Sendable {
    /// Called after `operation`, with how it ended and the states of the slots of
    /// `operation.frames` before and after it.
    func didPerform(_ operation: FrameOperation, outcome: FrameOperationOutcome,
                    before: [FrameSlotState], after: [FrameSlotState], machine: FrameAuditContext)
}

extension MachineRef {
    /// The machine's frame auditor, if it has one.
    @inlinable @inline(__always)
    var frameAuditor: (any FrameAuditor)? {
        // SAFETY: the live context (the lifetime statement); the auditor is set at boot, never
        // changed.
        unsafe state.pointee.frameAuditor
    }

    /// Whether the machine accounts for frame handles: it keeps the obligation ledger, as every
    /// machine with a frame auditor does. The hot operations (a frame's drop and clone, an
    /// allocation) test this, the one test they made for the ledger before there was an auditor,
    /// and take an out-of-line path that keeps the ledger and shows the auditor, so their fast
    /// path carries nothing else of either.
    @inlinable @inline(__always)
    var isAccounting: Bool {
        // SAFETY: the live context; the ledger is set at boot, never changed.
        _slowPath(unsafe state.pointee.ledger != nil)
    }

    /// Whether the machine has a frame auditor (operations without a ledger entry test this).
    @inlinable @inline(__always)
    var isFrameAudited: Bool {
        // SAFETY: as `frameAuditor`.
        _slowPath(unsafe state.pointee.frameAuditor != nil)
    }

    /// Runs `body`, which performs `operation`, past the frame auditor if there is one.
    ///
    /// Without an auditor this is one test of a nil reference and `body` inlined. (A closure
    /// still takes room in the caller's frame: the hot operations call this only on their
    /// audited path; see `isFrameAudited`.)
    @inlinable @inline(__always)
    func auditingFrames<R: ~Copyable>(
        _ operation: @autoclosure () -> FrameOperation, _ body: () -> R,
        outcome: (borrowing R) -> FrameOperationOutcome = { _ in .done }
    ) -> R {
        guard let auditor = frameAuditor else { return body() }
        return audit(operation(), by: auditor, body, outcome: outcome, refusal: nil)
    }

    /// `auditingFrames` for an operation that may refuse with a `GetFrameError` (reported as
    /// `.refused`, then rethrown).
    @inlinable @inline(__always)
    func auditingFallibleFrames<R: ~Copyable>(
        _ operation: @autoclosure () -> FrameOperation, _ body: () throws(GetFrameError) -> R
    ) throws(GetFrameError) -> R {
        guard let auditor = frameAuditor else { return try body() }
        return try audit(operation(), by: auditor, body, outcome: { _ in .done }, refusal: { .refused($0) })
    }

    /// `auditingFrames` when there is an auditor: the slots before, the operation, the slots
    /// after, the report. A refusal is reported (as `refusal` says) before it is rethrown.
    /// (`refusal` is `nil` for an operation that cannot refuse.)
    @usableFromInline @inline(never)
    func audit<R: ~Copyable, E: Error>(
        _ operation: FrameOperation, by auditor: any FrameAuditor, _ body: () throws(E) -> R,
        outcome: (borrowing R) -> FrameOperationOutcome, refusal: ((E) -> FrameOperationOutcome)?
    ) throws(E) -> R {
        let before = slotStates(operation.frames)
        do {
            let result = try body()
            auditor.didPerform(operation, outcome: outcome(result), before: before, after: slotStates(operation.frames),
                               machine: FrameAuditContext(context: self))
            return result
        } catch {
            auditor.didPerform(operation, outcome: refusal?(error) ?? .done, before: before, after: slotStates(operation.frames),
                               machine: FrameAuditContext(context: self))
            throw error
        }
    }

    /// The states of the slots of the frames of `range` that exist (an out-of-range address,
    /// which the operation refuses, has none).
    @inline(never)
    func slotStates(_ range: Range<Paddr>) -> [FrameSlotState] {
        let first = Int(range.lowerBound.rawValue >> UInt64(pageShift))
        let end = min(frameCount, Int((range.upperBound.rawValue + UInt64(pageSize) - 1) >> UInt64(pageShift)))
        guard first < end else { return [] }
        return (first..<end).map { index in
            let slot = slot(index: index)
            return FrameSlotState(refCount: slot.referenceCount, tag: slot.typeTag, inList: slot.inList,
                                  obligations: ledger?.count(index) ?? 0)
        }
    }
}

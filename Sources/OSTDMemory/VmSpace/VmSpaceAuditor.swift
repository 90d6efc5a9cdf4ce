// The audit switch of an address space: a space created with an auditor shows it every operation
// of its cursors, before and after, and every change to its readers and writers.
//
// The auditor is the executable specification (`OSTDSpec.SpecAuditor`), a layer the core cannot
// name, so the core states here what it shows and the specification implements the protocol.
// Before an operation the auditor is shown the operation and the cursor's state (and keeps what
// it needs, such as the view of the cursor's range, in a token); after it, the outcome. The
// operation's refinement against its spec function, the cursor's lock invariant and the
// ownership invariants are the auditor's business.
//
// Off, each cursor operation and each registration pays one test of a nil reference.

/// One operation of a space's cursor, as an auditor sees it.
public enum VmSpaceOperation {
    /// `query()`.
    case query
    /// `findNext(len)`.
    case findNext(len: Int)
    /// `jump(to)`.
    case jump(to: Vaddr)
    /// `map` / `tryMap` of a leaf of `level` at `paddr`.
    case map(paddr: Paddr, level: PagingLevel, property: PageProperty, isTracked: Bool)
    /// `unmap(len)` / `tryUnmap(len)`.
    case unmap(len: Int)
    /// `takeNext(len)`.
    case takeNext(len: Int)
    /// `protectNext(len, op)`: `op` on the first leaf in range.
    case protectNext(len: Int, op: (inout PageProperty) -> Void)
    /// `tryProtect(len, op)`: `op` on every leaf in range, flushed.
    case protect(len: Int, op: (inout PageProperty) -> Void)
}

/// What an audited cursor operation returned.
public enum VmSpaceOperationOutcome: Sendable {
    /// It returned nothing to check (a map or an unmap that did its work).
    case done
    /// `query` returned this slot and item.
    case queried(range: Range<Vaddr>, item: VmQueriedItem?)
    /// `findNext` returned this address.
    case found(Vaddr?)
    /// `protectNext` returned this range.
    case protected(Range<Vaddr>?)
    /// `takeNext` removed this (nothing when `nil`).
    case taken(PageTableFragInfo?)
    /// The operation refused with this error; it must have changed nothing.
    case failed(OSTDError)
}

/// What a `takeNext` removed, without the ownership of it.
public enum PageTableFragInfo: Equatable, Sendable {
    /// A leaf at `va`.
    case mapped(va: Vaddr, paddr: Paddr, level: PagingLevel, property: PageProperty, isTracked: Bool)
    /// A whole subtree covering `va ..< va + len`, holding `numFrames` tracked frames.
    case strayPageTable(va: Vaddr, len: Int, numFrames: Int)
}

/// A cursor's position and locks, for the lock invariant (check 15 of the specification).
public struct CursorAuditState: Sendable, Equatable {
    /// The current virtual address.
    public var va: Vaddr
    /// The range the cursor owns (OSTD `barrier_va`).
    public var barrierVa: Range<Vaddr>
    /// The level of the slot the cursor is at.
    public var level: PagingLevel
    /// The level of the locked subtree's root.
    public var guardLevel: PagingLevel
    /// `path[L - 1]`: the physical address of the node the cursor holds at level `L`, if any.
    public var path: [Paddr?]
}

/// A change to a space's readers and writers (the seeds' `VmSpaceOwner` transitions).
public enum VmSpaceOwnershipChange: Sendable, Equatable {
    /// A new reader or writer over `range` was admitted (`create_*` then `activate_*`).
    case admitted(range: Range<Vaddr>, view: VmIoMemView)
    /// A disposed handle over `range` got its view back (`activate_*`).
    case reactivated(range: Range<Vaddr>, view: VmIoMemView)
    /// A handle over `range` gave its view back (`dispose_*`).
    case disposed(range: Range<Vaddr>)
    /// A handle over `range` ended (`remove_*`).
    case removed(range: Range<Vaddr>)
    /// The first `count` bytes of a handle were registered as a handle of their own (`split`).
    case split(range: Range<Vaddr>, count: Int)
    /// A writer over `range` became a reader (`write_to_read`).
    case convertedToReader(range: Range<Vaddr>)
    /// A new reader (`view` `.readView`) or writer over `vaddr ..< vaddr + len` was refused with
    /// `error`; nothing changed.
    case refused(vaddr: Vaddr, len: Int, view: VmIoMemView, error: OSTDError)
}

/// Checks a space's operations against the specification (see the file comment).
public protocol VmSpaceAuditor: AnyObject, Sendable {
    /// Called before `operation` on a cursor of `space` in state `cursor`; returns what
    /// `didPerform` will need (the state before, typically).
    func willPerform(_ operation: VmSpaceOperation, cursor: CursorAuditState, in space: VmSpace) -> Any
    /// Called after `operation` with its outcome, the cursor's new state and `willPerform`'s token.
    func didPerform(_ operation: VmSpaceOperation, outcome: VmSpaceOperationOutcome, cursor: CursorAuditState,
                    in space: VmSpace, token: Any)
    /// Called after a change to `space`'s readers and writers, with the owner lock released.
    func didChangeOwnership(_ change: VmSpaceOwnershipChange, in space: VmSpace)
    /// Called after an attempt to create a cursor over `range`: the new cursor's state, or why it
    /// was refused.
    func didCreateCursor(over range: Range<Vaddr>, mutable: Bool, result: Result<CursorAuditState, OSTDError>,
                         in space: VmSpace)
    /// Called as a cursor of `space` in state `cursor` is dropped, while it still holds its locks
    /// (so a cursor that waited for them is reported created only after this).
    func didDropCursor(_ cursor: CursorAuditState, in space: VmSpace)
    /// Called around an operation of a user reader or writer of `space` (`VmIoAuditing.swift`):
    /// takes what it needs from `before`, calls `perform` exactly once (it runs the operation and
    /// returns the state after and the outcome), then checks.
    func auditIo(_ operation: VmIoOperation, before: VmIoAuditState, in space: VmSpace,
                 perform: () -> (after: VmIoAuditState, outcome: VmIoOutcome))
}

/// What an audited cursor carries: the auditor and the space it audits.
struct SpaceAudit {
    let auditor: any VmSpaceAuditor
    let space: VmSpace
}

/// A space's cursor, which runs its operations past the auditor when the space is audited.
protocol AuditedCursor: ~Copyable {
    var audit: SpaceAudit? { get }
    var auditState: CursorAuditState { get }
}

extension AuditedCursor where Self: ~Copyable {
    /// Runs `body` on the cursor between the auditor's `willPerform` and `didPerform`.
    ///
    /// - Precondition: the cursor is audited.
    mutating func audited<R: ~Copyable>(
        _ operation: VmSpaceOperation, _ body: (inout Self) throws(OSTDError) -> R,
        outcome: (borrowing R) -> VmSpaceOperationOutcome
    ) throws(OSTDError) -> R {
        let audit = audit!
        let token = audit.auditor.willPerform(operation, cursor: auditState, in: audit.space)
        do throws(OSTDError) {
            let result = try body(&self)
            audit.auditor.didPerform(operation, outcome: outcome(result), cursor: auditState, in: audit.space, token: token)
            return result
        } catch {
            audit.auditor.didPerform(operation, outcome: .failed(error), cursor: auditState, in: audit.space, token: token)
            throw error
        }
    }

    /// `audited` for an operation that cannot throw.
    mutating func audited<R: ~Copyable>(
        _ operation: VmSpaceOperation, _ body: (inout Self) -> R, outcome: (borrowing R) -> VmSpaceOperationOutcome
    ) -> R {
        let audit = audit!
        let token = audit.auditor.willPerform(operation, cursor: auditState, in: audit.space)
        let result = body(&self)
        audit.auditor.didPerform(operation, outcome: outcome(result), cursor: auditState, in: audit.space, token: token)
        return result
    }
}

extension VmSpace.Cursor: AuditedCursor {
    var auditState: CursorAuditState { ptCursor.auditState }
}

extension VmSpace.CursorMut: AuditedCursor {
    var auditState: CursorAuditState { ptCursor.inner.auditState }
}

extension VmSpaceOperation {
    /// The operation that maps `item`.
    init(mapping item: MappedItemRef) {
        self = .map(paddr: item.paddr, level: item.level, property: item.property, isTracked: item.isTracked)
    }
}

extension PageTableFrag where C: PageTableConfig {
    /// The fragment itself, having written what it removed (without the ownership of it) to
    /// `info`. (Read through a consuming switch: binding the item of a borrowed fragment is
    /// refused by this compiler.)
    consuming func recordingInfo(into info: inout PageTableFragInfo?) -> PageTableFrag<C> {
        switch consume self {
        case .mapped(let va, let item):
            let leaf = item.info
            info = .mapped(va: va, paddr: leaf.paddr, level: leaf.level, property: leaf.property, isTracked: leaf.isTracked)
            return .mapped(va: va, item: item)
        case .strayPageTable(let node, let va, let len, let numFrames):
            info = .strayPageTable(va: va, len: len, numFrames: numFrames)
            return .strayPageTable(node: node, va: va, len: len, numFrames: numFrames)
        }
    }
}

extension Cursor {
    /// The cursor's position and locks, as an auditor is shown them.
    var auditState: CursorAuditState {
        CursorAuditState(va: va, barrierVa: barrierVa, level: level, guardLevel: guardLevel,
                         path: (0..<4).map { path[$0].map { $0.paddr(context) } })
    }
}

extension VmSpace {
    /// Tells the auditor, if there is one, about a change to the readers and writers.
    @inline(__always)
    func auditOwnership(_ change: @autoclosure () -> VmSpaceOwnershipChange) {
        if let auditor { auditor.didChangeOwnership(change(), in: self) }
    }
}

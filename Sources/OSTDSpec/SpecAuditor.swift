// The auditor that makes a space check itself against the specification while it runs: pass one
// to `VmSpace(machine:auditor:)` and every operation of the space's cursors and every change to
// its readers and writers is checked (the core's `VmSpaceAuditor` protocol).
//
// Per operation, on the cursor's locked subtree only (exact while the cursor holds it, and cheap
// for a small range however large the space): the cursor's invariants before and after (check
// 15), and the operation's refinement of its specification (`CursorRefinement`, checks 8–14: the
// view after is exactly the spec function's result on the view before). Per ownership
// change: `VmSpaceOwner::inv` over the registrations. The whole-state checks (structure,
// metadata, reference accounting, TLB ⊆ PT) need a quiescent space, which no operation sees from
// inside; `checkQuiescent` runs them, and callers run it where the space is quiescent (the
// script runner after every op, the property tests after every step).
//
// Violations are collected, each naming the predicate and the operation; `onViolation`, when set,
// is also called with each (a test can stop at the first).

import Synchronization
@_spi(OSTDInternals) import OSTDMemory

/// Checks every operation of the spaces it is given to against the specification.
public final class SpecAuditor: VmSpaceAuditor {
    /// What was found so far, and how many operations were checked.
    struct State {
        var violations: [AuditViolation] = []
        var operations = 0
    }

    private let state = Mutex(State())
    /// Called with each violation as it is found (after it is recorded).
    private let onViolation: (@Sendable (AuditViolation) -> Void)?

    /// An auditor; `onViolation` is told about each violation as it is found.
    public init(onViolation: (@Sendable (AuditViolation) -> Void)? = nil) { self.onViolation = onViolation }

    /// The violations found so far, oldest first.
    public var violations: [AuditViolation] { state.withLock { $0.violations } }

    /// The number of cursor operations and ownership changes checked so far.
    public var operationsChecked: Int { state.withLock { $0.operations } }

    /// Forgets the violations found so far.
    public func reset() { state.withLock { $0.violations = [] } }

    // MARK: VmSpaceAuditor

    /// The view of the cursor's locked subtree and the cursor, before an operation.
    struct Before {
        var view: CursorView
        var cursor: CursorAuditState
    }

    public func willPerform(_ operation: VmSpaceOperation, cursor: CursorAuditState, in space: VmSpace) -> Any {
        record(CursorInvariants.invariants(cursor, table: space.pageTable), predicate: "cursorInvariants",
               operation: operation, when: "before")
        return Before(view: Self.view(of: cursor, in: space), cursor: cursor)
    }

    public func didPerform(_ operation: VmSpaceOperation, outcome: VmSpaceOperationOutcome, cursor: CursorAuditState,
                           in space: VmSpace, token: Any) {
        guard let before = token as? Before else { preconditionFailure("a token this auditor did not make") }
        record(CursorRefinement.violations(operation, outcome: outcome, cursor: before.cursor, before: before.view,
                                           after: Self.view(of: cursor, in: space)),
               predicate: Self.specName(operation), operation: operation, when: nil)
        record(CursorInvariants.invariants(cursor, table: space.pageTable), predicate: "cursorInvariants",
               operation: operation, when: "after")
        state.withLock { $0.operations += 1 }
    }

    public func didChangeOwnership(_ change: VmSpaceOwnershipChange, in space: VmSpace) {
        let problems = Audit.vmSpaceOwnerInv(space.ownerSnapshot)
        record(problems.map { AuditViolation(predicate: "vmSpaceOwnerInv", detail: $0, operation: "\(change)") })
        state.withLock { $0.operations += 1 }
    }

    /// The view of `cursor`'s locked subtree (vostd's `view_mappings`): exact while the cursor
    /// holds it, whatever other cursors do elsewhere.
    static func view(of cursor: CursorAuditState, in space: VmSpace) -> CursorView {
        let locked = CursorView.lockedRange(barrier: cursor.barrierVa, guardLevel: cursor.guardLevel)
        return CursorView(curVa: cursor.va, view: space.pageTable.view(overlapping: locked), range: locked)
    }

    // MARK: Quiescent points

    /// Runs the whole-state checks (`Audit.quiescent`) on `space`, which must be quiescent: no
    /// cursor, reader or writer alive, every flush dispatched. Returns and records what it found.
    @discardableResult
    public func checkQuiescent(_ space: VmSpace, kernel: PageTable<KernelPtConfig>, after operation: String) -> [AuditViolation] {
        checkQuiescent(space, kernel: KernelTableAudit(kernel), after: operation)
    }

    /// `checkQuiescent` with the kernel table's part taken earlier (it must not have changed since).
    @discardableResult
    public func checkQuiescent(_ space: VmSpace, kernel: KernelTableAudit, after operation: String) -> [AuditViolation] {
        let found = Audit.quiescent(machine: space.machine, space: space, kernel: kernel).map {
            AuditViolation(predicate: $0.predicate, detail: $0.detail, operation: operation)
        }
        record(found)
        return found
    }

    // MARK: Recording

    func record(_ problems: [String], predicate: String, operation: VmSpaceOperation, when: String?) {
        guard !problems.isEmpty else { return }
        let name = Self.describe(operation) + (when.map { " (\($0))" } ?? "")
        record(problems.prefix(5).map { AuditViolation(predicate: predicate, detail: $0, operation: name) })
    }

    func record(_ found: [AuditViolation]) {
        guard !found.isEmpty else { return }
        state.withLock { $0.violations += found }
        if let onViolation { found.forEach(onViolation) }
    }

    /// The specification an operation refines.
    static func specName(_ operation: VmSpaceOperation) -> String {
        switch operation {
        case .query: "querySpec"
        case .findNext: "findNextSpec"
        case .jump: "jumpSpec"
        case .map: "mapSpec"
        case .unmap: "unmapSpec"
        case .takeNext: "takeNextSpec"
        case .protectNext: "protectNextSpec"
        case .protect: "protectSpec"
        }
    }

    /// An operation as a violation names it.
    static func describe(_ operation: VmSpaceOperation) -> String {
        switch operation {
        case .query: "query"
        case .findNext(let len): "findNext(\(len))"
        case .jump(let va): "jump(\(va))"
        case .map(let paddr, let level, let property, let tracked):
            "map(\(paddr), level \(level), \(property)\(tracked ? "" : ", untracked"))"
        case .unmap(let len): "unmap(\(len))"
        case .takeNext(let len): "takeNext(\(len))"
        case .protectNext(let len, _): "protectNext(\(len))"
        case .protect(let len, _): "protect(\(len))"
        }
    }
}

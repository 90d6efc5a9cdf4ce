// The auditor that makes a space check itself against the specification while it runs: pass one
// to `VmSpace(machine:auditor:)` and every cursor creation, every operation of the space's cursors
// and every change to its readers and writers is checked (the core's `VmSpaceAuditor` protocol).
//
// Per operation, on the part of the space the operation may touch (`touchedRange`: locked by the
// cursor, so exact while it runs, and as cheap as the operation however large the space): the
// cursor's invariants before and after (check 15), the operation's refinement of its
// specification (`CursorRefinement`, checks 8–14: the view after is exactly the spec function's
// result on the view before, the result is the spec's, a refusal happens exactly when the
// precondition says). Per cursor creation: check 7 and the new cursor's invariants. Per ownership
// change: `VmSpaceOwner::inv` over the registrations. The whole-state checks (structure,
// metadata, reference accounting, TLB ⊆ PT) need a quiescent space, which no operation sees from
// inside; `checkQuiescent` runs them, and callers run it where the space is quiescent (the
// script runner after every op, the property tests every few steps and at the end).
//
// Violations are collected, each naming the predicate and the operation; the caller reads them
// (`violations`) where it reports.

import Synchronization
@_spi(OSTDInternals) import OSTDMemory

/// Checks every operation of the spaces it is given to against the specification.
public final class SpecAuditor: VmSpaceAuditor {
    /// What was found so far, and how many operations were checked.
    struct State {
        var violations: [AuditViolation] = []
        var operations = 0
        /// The tracked leaves of the audited spaces, for the frame checks.
        var mapped = MappedFrameIndex()
        /// The ranges of the live cursors of each audited space, for `locksExclusive`.
        var liveCursors: [ObjectIdentifier: [Range<Vaddr>]] = [:]
    }

    let state = Mutex(State())

    /// An auditor that has found nothing yet.
    public init() {}

    /// The violations found so far, oldest first.
    public var violations: [AuditViolation] { state.withLock { $0.violations } }

    /// The number of cursor operations, reader and writer operations and ownership changes checked
    /// so far.
    public var operationsChecked: Int { state.withLock { $0.operations } }

    /// Forgets the violations found so far.
    public func reset() { state.withLock { $0.violations = [] } }

    // MARK: VmSpaceAuditor

    /// What an operation is checked on, taken before it: the range it may touch (with the whole
    /// leaves that overlap it), the view there, and the cursor.
    struct Before {
        var range: Range<Vaddr>
        var view: CursorView
        var cursor: CursorAuditState
    }

    public func willPerform(_ operation: VmSpaceOperation, cursor: CursorAuditState, in space: VmSpace) -> Any {
        let touched = Self.touchedRange(operation, cursor: cursor)
        let table = space.pageTable.view(overlapping: touched)
        let range = table.mappings.reduce(touched) { min($0.lowerBound, $1.va.lowerBound)..<max($0.upperBound, $1.va.upperBound) }
        record(CursorInvariants.invariants(cursor, table: space.pageTable, lockedIn: range), predicate: "cursorInvariants",
               operation: operation, when: "before")
        return Before(range: range, view: CursorView(curVa: cursor.va, view: table, range: range), cursor: cursor)
    }

    public func didPerform(_ operation: VmSpaceOperation, outcome: VmSpaceOperationOutcome, cursor: CursorAuditState,
                           in space: VmSpace, token: Any) {
        guard let before = token as? Before else { preconditionFailure("a token this auditor did not make") }
        let after = CursorView(curVa: cursor.va, view: space.pageTable.view(overlapping: before.range), range: before.range)
        if before.view.mappings != after.mappings {
            state.withLock { $0.mapped.update(from: before.view.mappings, to: after.mappings, in: space) }
        }
        record(CursorRefinement.violations(operation, outcome: outcome, cursor: before.cursor, before: before.view, after: after),
               predicate: Self.specName(operation), operation: operation, when: nil)
        record(CursorInvariants.invariants(cursor, table: space.pageTable, lockedIn: before.range), predicate: "cursorInvariants",
               operation: operation, when: "after")
        state.withLock { $0.operations += 1 }
    }

    /// Check 30, the postcondition of `VmSpace::reader` / `writer`: "`Ok ⟹ vaddr + len <=
    /// MAX_USERSPACE_VADDR`" (checked add), and the range is not empty (`len > 0`). (The
    /// precondition's `vaddr != 0` is not required: `SCRIPT.md` lets scripts read page 0.)
    public static func admissionSpec(_ range: Range<Vaddr>) -> [String] {
        range.isEmpty || range.upperBound > maxUserspaceVaddr
            ? ["admitted a handle over \(range.lowerBound)..<\(range.upperBound), outside 1..=\(maxUserspaceVaddr)"] : []
    }

    /// Check 28 for the handle over `range` that was just given `view`: the seeds' `VmIoOwner::inv`
    /// ("a view, if held, has `mappings_are_disjoint()` and translates every address of the
    /// range", the translation clause dropped for fallible handles) and, for a reader,
    /// `read_view_initialized` on the bytes its view translates, over the view the seeds'
    /// lifecycle hands it: the space's leaves and bytes in `range` (`MemView`). Costs what the
    /// handle covers, not what the space holds; a handle over more than `ioOwnerSpecLimit` bytes
    /// is checked on its first `ioOwnerSpecLimit` (the model copies the bytes it covers, and a
    /// reader may cover gigabytes it reads a chunk at a time).
    public static func ioOwnerSpec(_ range: Range<Vaddr>, view: VmIoMemView, in space: VmSpace) -> [String] {
        let owner = space.ownerSnapshot
        let handles = view == .readView ? owner.readers : owner.writers
        guard let handle = handles.first(where: { $0.range == range }) else {
            return ["no active \(view == .readView ? "reader" : "writer") over \(Audit.describe(range)) after its activation"]
        }
        let checked = range.lowerBound..<Swift.min(range.upperBound, range.lowerBound + ioOwnerSpecLimit)
        let memView = MemView(pageTable: space.pageTable.view(overlapping: checked), machine: space.machine, range: checked)
        var model = VmIoOwnerModel(handle, view: memView)
        model.range = checked
        var problems: [String] = []
        if !model.inv() { problems.append("VmIoOwner::inv fails for the handle over \(Audit.describe(range))") }
        if view == .readView && !model.mappedBytesInitialized() {
            problems.append("read_view_initialized: the reader over \(Audit.describe(range)) has uninitialised bytes")
        }
        return problems
    }

    /// The most bytes of a handle `ioOwnerSpec` models: 1 MiB.
    public static let ioOwnerSpecLimit = 1 << 20

    /// Check 30, the refusals of `VmSpace::reader` / `writer`: "`(vaddr≠0 ∧ len>0 ∧ vaddr+len ≤
    /// MAX_USERSPACE_VADDR ∧ this PT is active) ⟹ Ok`; `PT not active ⟹ Err`", with the seeds'
    /// `can_create_reader` / `can_create_writer` as the admission rule (a reader is also kept out
    /// by overlapping readers unless `shared_reader`: `inv` demands it). A refusal is exact: its
    /// error names a condition that fails in `owner`, the state it left unchanged. (`vaddr != 0`
    /// is not required, as above.)
    public static func admissionRefusalSpec(_ vaddr: Vaddr, _ len: Int, view: VmIoMemView, error: OSTDError,
                                            owner: VmSpaceOwner) -> [String] {
        let (end, overflow) = vaddr.rawValue.addingReportingOverflow(UInt64(truncatingIfNeeded: len))
        let inUserSpace = len > 0 && !overflow && end <= maxUserspaceVaddr.rawValue
        let range = vaddr..<Vaddr(inUserSpace ? end : vaddr.rawValue)
        let overlapping = { (handles: [VmIoOwner]) in handles.contains { $0.overlapsWithRange(range) } }
        let admissible = view == .writeView
            ? !overlapping(owner.readers) && !overlapping(owner.writers)
            : !overlapping(owner.writers) && (owner.sharedReader || !overlapping(owner.readers))
        let request = "\(view == .writeView ? "writer" : "reader") over \(vaddr) + \(len)"
        let justified = switch error {
        case .notActive: !owner.active
        case .invalidUserRange: !inUserSpace
        case .accessConflict: inUserSpace && !admissible
        default: false
        }
        return justified ? [] : ["a \(request) was refused with \(error), but "
            + "\(inUserSpace ? "the range is user space" : "the range is not user space"), "
            + "the space is \(owner.active ? "" : "not ")active, and the range is \(admissible ? "" : "not ")admissible"]
    }

    /// The addresses `operation` may read or change, from the cursor's address: the slot a query
    /// or a map works on, the `len` bytes a scan covers, nothing for a jump. The leaves that
    /// overlap it are added whole (a split changes only them), and the specification functions
    /// give the same result on that part of the view as on the whole (they consult no leaf outside
    /// it), so the check costs what the operation costs, not what the space holds.
    static func touchedRange(_ operation: VmSpaceOperation, cursor: CursorAuditState) -> Range<Vaddr> {
        let va = cursor.va
        switch operation {
        case .query: return CursorView.slot(of: va, size: PagingConsts.pageSize(cursor.level))
        case .map(_, let level, _, _): return CursorView.slot(of: va, size: PagingConsts.pageSize(level))
        case .findNext(let len), .unmap(let len), .takeNext(let len), .protectNext(let len, _), .protect(let len, _):
            return va..<(va + len)
        case .jump: return va..<va
        }
    }

    public func didChangeOwnership(_ change: VmSpaceOwnershipChange, in space: VmSpace) {
        var problems = Audit.vmSpaceOwnerInv(space.ownerSnapshot)
        switch change {
        case .admitted(let range, let view):
            problems += Self.admissionSpec(range) + Self.ioOwnerSpec(range, view: view, in: space)
        case .reactivated(let range, let view):
            problems += Self.ioOwnerSpec(range, view: view, in: space)
        case .refused(let vaddr, let len, let view, let error):
            problems += Self.admissionRefusalSpec(vaddr, len, view: view, error: error, owner: space.ownerSnapshot)
        default: break
        }
        record(problems.map { AuditViolation(predicate: "vmSpaceOwnerInv", detail: $0, operation: "\(change)") })
        state.withLock { $0.operations += 1 }
    }

    public func didCreateCursor(over range: Range<Vaddr>, mutable: Bool, result: Result<CursorAuditState, OSTDError>,
                                in space: VmSpace) {
        var problems = CursorInvariants.cursorNewSpec(range, result: result)
        var overlapping: [String] = []
        if case .success(let cursor) = result {
            problems += CursorInvariants.invariants(cursor, table: space.pageTable)
            overlapping = state.withLock { state in
                let live = state.liveCursors[ObjectIdentifier(space), default: []]
                state.liveCursors[ObjectIdentifier(space), default: []].append(cursor.barrierVa)
                return CursorInvariants.locksExclusive(cursor.barrierVa, live: live)
            }
        }
        let name = "\(mutable ? "cursorMut" : "cursor")(\(range.lowerBound)..<\(range.upperBound))"
        record(problems.prefix(5).map { AuditViolation(predicate: "cursorNewSpec", detail: $0, operation: name) }
               + overlapping.prefix(5).map { AuditViolation(predicate: "locksExclusive", detail: $0, operation: name) })
        state.withLock { $0.operations += 1 }
    }

    public func didDropCursor(_ cursor: CursorAuditState, in space: VmSpace) {
        state.withLock { state in
            guard let i = state.liveCursors[ObjectIdentifier(space)]?.firstIndex(of: cursor.barrierVa) else { return }
            state.liveCursors[ObjectIdentifier(space)]!.remove(at: i)
        }
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

// Each cursor operation against its specification (vostd-spec-reference.md §10 B, checks 8–14):
// the view of the cursor's locked subtree after the operation must be exactly the spec function's
// result on the view before (`CursorView`: `mapSpec`, `unmapResult`, `takeNextSpec`,
// `protectSpec`, `findNextSpec`, `querySpec`, `jumpSpec`), the cursor must be where the spec puts
// it, and what the operation returned must be what the spec returns. A refused operation must
// change no translation and leave the cursor where it was (compared as translations: a refused
// `tryUnmap`/`tryProtect` reserves nodes but splits nothing, and a refused `map` splits nothing).

@_spi(OSTDInternals) import OSTDMemory

/// The postconditions of the cursor operations.
public enum CursorRefinement {
    /// What is wrong with `operation` having produced `outcome` and `after` from `before` (views
    /// of the cursor's locked subtree, at the cursor's address); `cursor` is the cursor's state
    /// before the operation. Empty when the operation refines its specification.
    public static func violations(_ operation: VmSpaceOperation, outcome: VmSpaceOperationOutcome,
                                  cursor: CursorAuditState, before: CursorView, after: CursorView) -> [String] {
        if case .failed(let error) = outcome {
            return ViewTransitions.unchanged(before: PageTableView(mappings: before.mappings),
                                             after: PageTableView(mappings: after.mappings))
                + (after.curVa == before.curVa ? [] : ["a refused operation moved the cursor from \(before.curVa) to \(after.curVa)"])
                + refusal(operation, error, cursor: cursor, before: before)
        }
        if let problem = refusal(operation, nil, cursor: cursor, before: before).first { return [problem] }
        switch operation {
        case .query:
            guard case .queried(let range, let item) = outcome else { return unexpected(outcome) }
            let spec = before.querySpec(level: cursor.level)
            return compare(after, before) + query(range: range, item: item, spec: spec)
        case .findNext(let len):
            guard case .found(let found) = outcome else { return unexpected(outcome) }
            let spec = before.findNextSpec(len)
            return compare(after, spec.view)
                + (found == spec.found ? [] : ["findNext returned \(found.map { "\($0)" } ?? "nothing"), the spec \(spec.found.map { "\($0)" } ?? "nothing")"])
        case .jump(let target):
            guard let spec = before.jumpSpec(target, barrier: cursor.barrierVa) else {
                return ["jump to \(target) succeeded, which the spec refuses"]
            }
            return compare(after, spec)
        case .map(let paddr, let level, var property, let isTracked):
            property.flags.remove(.avail1)
            return compare(after, before.mapSpec(pa: paddr, level: level, property: property, isTracked: isTracked))
        case .unmap(let len):
            return compare(after, before.unmapResult(len)) + before.unmapSpecViolations(len: len, new: after, limit: 3)
        case .takeNext(let len):
            guard case .taken(let taken) = outcome else { return unexpected(outcome) }
            let spec = before.takeNextSpec(len, level: cursor.level, guardLevel: cursor.guardLevel)
            let got = taken.map(CursorView.Taken.init)
            return compare(after, spec.view)
                + (got == spec.taken ? [] : ["takeNext removed \(got.map { "\($0)" } ?? "nothing"), the spec \(spec.taken.map { "\($0)" } ?? "nothing")"])
        case .protectNext(let len, let op):
            guard case .protected(let range) = outcome else { return unexpected(outcome) }
            let spec = before.protectSpec(len) { applying(op, to: $0) }
            return compare(after, spec.view)
                + (range == spec.protected ? [] : ["protectNext protected \(describe(range)), the spec \(describe(spec.protected))"])
        case .protect(let len, let op):
            return compare(after, protectLoop(before, len) { applying(op, to: $0) })
        }
    }

    /// Whether the operation was refused exactly when its precondition says (`error` is what it
    /// threw, `nil` when it succeeded): a `map` when the slot is not empty (`canMapSpec`, check 9;
    /// running out of memory is always allowed), a `jump` when the address is outside the barrier
    /// (`jumpSpec`, check 13). Other operations have no refusal but running out of memory.
    static func refusal(_ operation: VmSpaceOperation, _ error: OSTDError?, cursor: CursorAuditState,
                        before: CursorView) -> [String] {
        if case .outOfMemory? = error { return [] }
        let allowed: Bool
        switch operation {
        case .map(_, let level, _, _):
            let size = PagingConsts.pageSize(level)
            allowed = cursor.va.isAligned(to: size) && cursor.va + size <= cursor.barrierVa.upperBound
                && level <= cursor.guardLevel && before.canMapSpec(level: level)
        case .jump(let target):
            allowed = before.jumpSpec(target, barrier: cursor.barrierVa) != nil
        default:
            allowed = true
        }
        switch (allowed, error) {
        case (true, let error?): return ["refused with \(error), which the precondition allows"]
        case (false, nil): return ["succeeded, which the precondition forbids"]
        default: return []
        }
    }

    /// `tryProtect(len, op)`: `protect_next` repeated over the range (each step's flush is the
    /// TLB's business, not the view's).
    static func protectLoop(_ view: CursorView, _ len: Int, _ op: (PageProperty) -> PageProperty) -> CursorView {
        let end = view.curVa + len
        var view = view
        while view.curVa < end {
            let step = view.protectSpec(end - view.curVa, op)
            view = step.view
            if step.protected == nil { break }
        }
        return view
    }

    /// Check 8: the reported slot and item are the spec's.
    static func query(range: Range<Vaddr>, item: VmQueriedItem?, spec: (range: Range<Vaddr>, mapping: Mapping?)) -> [String] {
        let matches: Bool
        if let leaf = spec.mapping, let item {
            matches = item.paddr == leaf.pa.lowerBound && item.level == leaf.level && item.property == leaf.property
        } else {
            matches = item == nil && spec.mapping == nil
        }
        guard !matches || range != spec.range else { return [] }
        return ["query reported \(item.map { "\($0)" } ?? "nothing") over \(describe(range)), the spec "
                + "\(spec.mapping.map { "\($0)" } ?? "nothing") over \(describe(spec.range))"]
    }

    /// The first difference between the view `got` and the spec's `expected`, if any.
    static func compare(_ got: CursorView, _ expected: CursorView) -> [String] {
        var problems: [String] = []
        if got.curVa != expected.curVa { problems.append("the cursor is at \(got.curVa), the spec puts it at \(expected.curVa)") }
        if got.mappings != expected.mappings {
            let extra = got.mappings.filter { !expected.mappings.contains($0) }
            let missing = expected.mappings.filter { !got.mappings.contains($0) }
            problems.append("the table has \(extra.count) leaves the spec does not\(extra.first.map { " (first: \($0))" } ?? "")"
                            + " and lacks \(missing.count)\(missing.first.map { " (first: \($0))" } ?? "")")
        }
        return problems
    }

    /// The property `op` makes of `property`, as the table stores it (`AVAIL1` is the table's).
    static func applying(_ op: (inout PageProperty) -> Void, to property: PageProperty) -> PageProperty {
        var changed = property
        op(&changed)
        changed.flags.remove(.avail1)
        return changed
    }

    static func describe(_ range: Range<Vaddr>?) -> String {
        range.map(Audit.describe) ?? "nothing"
    }

    static func unexpected(_ outcome: VmSpaceOperationOutcome) -> [String] {
        ["the operation returned \(outcome), which it cannot"]
    }
}

extension CursorView.Taken {
    /// What the core reported a `takeNext` removed, as a view sees it.
    init(_ info: PageTableFragInfo) {
        switch info {
        case .mapped(let va, let paddr, let level, var property, let isTracked):
            property.flags.remove(.avail1)
            let size = PagingConsts.pageSize(level)
            self = .mapped(Mapping(va: va..<(va + size), pa: paddr..<(paddr + size), level: level, property: property,
                                   isTracked: isTracked))
        case .strayPageTable(let va, let len, let numFrames):
            self = .strayPageTable(va: va..<(va + len), numFrames: numFrames)
        }
    }
}

// Each cursor operation against its specification (vostd-spec-reference.md §10 B, checks 8–14):
// given the view of the cursor's range before and after the operation, the cursor's address
// before and after, and what the operation returned, the violations of its postcondition.
//
// The views are compared as translation functions (`ViewTransitions`), so a split that keeps
// every translation is allowed wherever the specification allows a split; what an operation
// returned is compared with the view before it (the leaf a query reports, the leaf `takeNext`
// removed, the range `protectNext` changed). A refused operation must change nothing.

@_spi(OSTDInternals) import OSTDMemory

/// The postconditions of the cursor operations.
public enum CursorRefinement {
    /// What is wrong with `operation` having produced `outcome`, `after` and the address `vaAfter`
    /// from `before` at `va`; empty when it refines its specification.
    public static func violations(_ operation: VmSpaceOperation, outcome: VmSpaceOperationOutcome, va: Vaddr,
                                  vaAfter: Vaddr, before: PageTableView, after: PageTableView) -> [String] {
        if case .failed = outcome {
            return ViewTransitions.unchanged(before: before, after: after) + moved(from: va, to: vaAfter, expected: va)
        }
        switch operation {
        case .query:
            guard case .queried(let range, let item) = outcome else { return unexpected(outcome) }
            return ViewTransitions.unchanged(before: before, after: after) + moved(from: va, to: vaAfter, expected: va)
                + querySpec(before.mapping(covering: va), range: range, item: item)
        case .findNext(let len):
            guard case .found(let found) = outcome else { return unexpected(outcome) }
            return ViewTransitions.unchanged(before: before, after: after)
                + findNextSpec(va..<(va + len), found: found, vaAfter: vaAfter, view: before)
        case .jump(let target):
            return ViewTransitions.unchanged(before: before, after: after) + moved(from: va, to: vaAfter, expected: target)
        case .map(let paddr, let level, var property, _):
            property.flags.remove(.avail1)
            let range = va..<(va + PagingConsts.pageSize(level))
            var problems = ViewTransitions.mapped(range, property: property, level: level, before: before, after: after)
            if let leaf = after.mapping(covering: va), leaf.pa.lowerBound != paddr {
                problems.append("mapped \(leaf), expected the page at \(paddr)")
            }
            return problems + moved(from: va, to: vaAfter, expected: range.upperBound)
        case .unmap(let len):
            return ViewTransitions.unmapped(va..<(va + len), before: before, after: after)
                + movedPast(va + len, vaAfter)
        case .takeNext(let len):
            guard case .taken(let taken) = outcome else { return unexpected(outcome) }
            return takeNextSpec(va..<(va + len), taken: taken, vaAfter: vaAfter, before: before, after: after)
        case .protectNext(let len, let op):
            guard case .protected(let range) = outcome else { return unexpected(outcome) }
            return protectNextSpec(va..<(va + len), protected: range, op: op, vaAfter: vaAfter, before: before, after: after)
        case .protect(let len, let op):
            return ViewTransitions.protected(va..<(va + len), before: before, after: after) { applying(op, to: $0) }
                + movedPast(va + len, vaAfter)
        }
    }

    /// Check 8: a present slot reports its leaf (page, level, property) and the leaf's range; an
    /// absent one reports nothing.
    static func querySpec(_ leaf: Mapping?, range: Range<Vaddr>, item: VmQueriedItem?) -> [String] {
        guard let leaf else {
            return item.map { ["query reported \($0) where nothing is mapped"] } ?? []
        }
        guard let item, item.paddr == leaf.pa.lowerBound, item.level == leaf.level, item.property == leaf.property,
              range == leaf.va else {
            return ["query reported \(item.map { "\($0)" } ?? "nothing") over \(range.lowerBound)..<\(range.upperBound), "
                    + "the table maps \(leaf)"]
        }
        return []
    }

    /// Check 12: `findNext` stops at the first mapped address of its range, or passes the range
    /// when nothing in it is mapped.
    static func findNextSpec(_ range: Range<Vaddr>, found: Vaddr?, vaAfter: Vaddr, view: PageTableView) -> [String] {
        guard let found else {
            return (firstMapped(in: range, view).map { ["findNext found nothing, but \($0) is mapped"] } ?? [])
                + movedPast(range.upperBound, vaAfter)
        }
        var problems = moved(from: range.lowerBound, to: vaAfter, expected: found)
        if !range.contains(found) || view.mapping(covering: found) == nil {
            problems.append("findNext found \(found), which is not a mapped address of its range")
        }
        if let earlier = firstMapped(in: range.lowerBound..<found, view) {
            problems.append("findNext found \(found), but \(earlier) is mapped before it")
        }
        return problems
    }

    /// Check 14: `takeNext` removes the first leaf (or subtree) starting in its range, after
    /// splitting a huge leaf the range covers in part, and changes nothing else.
    static func takeNextSpec(_ range: Range<Vaddr>, taken: PageTableFragInfo?, vaAfter: Vaddr,
                             before: PageTableView, after: PageTableView) -> [String] {
        guard let taken else {
            return ViewTransitions.unchanged(before: before, after: after)
                + (firstMapped(in: range, before).map { ["takeNext took nothing, but \($0) is mapped"] } ?? [])
                + movedPast(range.upperBound, vaAfter)
        }
        let removed: Range<Vaddr>
        var problems: [String] = []
        switch taken {
        case .mapped(let va, let paddr, let level, var property):
            removed = va..<(va + PagingConsts.pageSize(level))
            property.flags.remove(.avail1)
            if let was = before.translation(of: va), was.paddr != paddr || was.property != property {
                problems.append("takeNext returned \(paddr) \(property) at \(va), the table mapped \(was)")
            } else if before.translation(of: va) == nil {
                problems.append("takeNext returned a leaf at \(va), where nothing was mapped")
            }
        case .strayPageTable(let va, let len, let numFrames):
            removed = va..<(va + len)
            let leaves = before.mappings.filter { removed.contains($0.va.lowerBound) }.count
            if leaves != numFrames { problems.append("takeNext removed a subtree of \(leaves) leaves but reported \(numFrames)") }
        }
        if removed.lowerBound < range.lowerBound || removed.upperBound > range.upperBound {
            problems.append("takeNext removed \(removed.lowerBound)..<\(removed.upperBound), outside its range "
                            + "\(range.lowerBound)..<\(range.upperBound)")
        }
        if let earlier = firstMapped(in: range.lowerBound..<removed.lowerBound, before) {
            problems.append("takeNext removed \(removed.lowerBound)..<\(removed.upperBound), but \(earlier) came first")
        }
        return problems + ViewTransitions.unmapped(removed, before: before, after: after)
            + moved(from: range.lowerBound, to: vaAfter, expected: removed.upperBound)
    }

    /// `protect_next` (ours; vostd's `protect_spec` is unused): `op` applied to the first leaf in
    /// range, after splitting a huge leaf the range covers in part, and nothing else changed.
    static func protectNextSpec(_ range: Range<Vaddr>, protected: Range<Vaddr>?, op: (inout PageProperty) -> Void,
                                vaAfter: Vaddr, before: PageTableView, after: PageTableView) -> [String] {
        guard let protected else {
            return ViewTransitions.unchanged(before: before, after: after)
                + (firstMapped(in: range, before).map { ["protectNext protected nothing, but \($0) is mapped"] } ?? [])
                + movedPast(range.upperBound, vaAfter)
        }
        var problems: [String] = []
        if protected.lowerBound < range.lowerBound || protected.upperBound > range.upperBound
            || after.mapping(covering: protected.lowerBound)?.va != protected {
            problems.append("protectNext protected \(protected.lowerBound)..<\(protected.upperBound), which is not a "
                            + "leaf inside \(range.lowerBound)..<\(range.upperBound)")
        }
        if let earlier = firstMapped(in: range.lowerBound..<protected.lowerBound, before) {
            problems.append("protectNext protected \(protected.lowerBound)..<\(protected.upperBound), but \(earlier) came first")
        }
        return problems + ViewTransitions.protected(protected, before: before, after: after) { applying(op, to: $0) }
            + moved(from: range.lowerBound, to: vaAfter, expected: protected.upperBound)
    }

    /// The property `op` makes of `property`, as the table stores it (`AVAIL1` is the table's).
    static func applying(_ op: (inout PageProperty) -> Void, to property: PageProperty) -> PageProperty {
        var changed = property
        op(&changed)
        changed.flags.remove(.avail1)
        return changed
    }

    /// The first mapped address in `range`, if any.
    static func firstMapped(in range: Range<Vaddr>, _ view: PageTableView) -> Vaddr? {
        guard !range.isEmpty else { return nil }
        for mapping in view.mappings where mapping.va.upperBound > range.lowerBound && mapping.va.lowerBound < range.upperBound {
            return max(mapping.va.lowerBound, range.lowerBound)
        }
        return nil
    }

    static func moved(from va: Vaddr, to vaAfter: Vaddr, expected: Vaddr) -> [String] {
        vaAfter == expected ? [] : ["the cursor moved from \(va) to \(vaAfter), expected \(expected)"]
    }

    static func movedPast(_ end: Vaddr, _ vaAfter: Vaddr) -> [String] {
        vaAfter >= end ? [] : ["the cursor stopped at \(vaAfter), before the end of its range \(end)"]
    }

    static func unexpected(_ outcome: VmSpaceOperationOutcome) -> [String] {
        ["the operation returned \(outcome), which it cannot"]
    }
}

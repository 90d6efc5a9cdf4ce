// What an address-space operation may do to the page table's abstract view, as pure functions of
// the view before and after (vostd-spec-reference.md §10 B, checks 10, 11 and 14, and a protect
// spec, which vostd lacks): `unmap` removes every translation in its range and changes nothing
// else; `protect` applies its property change in its range and changes nothing else; `map` adds
// translations of the requested property and leaf size in its range only; a data access (a read,
// write, fill or copy, complete or not) may set the accessed and dirty flags of the leaves it used,
// as the MMU does (`X86Mmu`), and changes nothing else; everything else (queries, any failed
// operation that is not an access) leaves the view as it was.
//
// Views are compared as translation functions, not as leaf sets: splitting a huge leaf changes the
// leaves but not what any address translates to. Both views are piecewise affine (within one leaf,
// physical address = leaf base + offset), so comparing at every leaf boundary of either view and
// at the operation's range ends decides the comparison exactly.

@_spi(OSTDInternals) import OSTDMemory

/// What a view says about one virtual address.
public struct Translation: Equatable, Sendable, CustomStringConvertible {
    public var paddr: Paddr
    public var property: PageProperty
    public var level: PagingLevel

    public var description: String { "\(paddr) \(property) (level \(level))" }
}

extension PageTableView {
    /// The translation of `va`, if a mapping covers it.
    public func translation(of va: Vaddr) -> Translation? {
        guard let mapping = mapping(covering: va) else { return nil }
        return Translation(paddr: mapping.pa.lowerBound + (va - mapping.va.lowerBound), property: mapping.property,
                           level: mapping.level)
    }
}

/// The spec functions of the address-space operations, on views.
public enum ViewTransitions {
    /// What the view after an operation must say at one address.
    enum Expectation {
        /// This translation (or none).
        case exactly(Translation?)
        /// This translation (or none), with `.accessed` and `.dirty` perhaps set since.
        case accessedDirtyMaySet(Translation?)
        /// Anything: another check covers it.
        case anything
    }

    /// The view must not change at all (a query, a data access, a failed operation).
    public static func unchanged(before: PageTableView, after: PageTableView) -> [String] {
        compare(before, after, range: nil) { _, old in .exactly(old) }
    }

    /// A data access: every translation is as it was, but the MMU may have set `.accessed` and
    /// `.dirty` (never cleared them).
    public static func accessed(before: PageTableView, after: PageTableView) -> [String] {
        compare(before, after, range: nil) { _, old in .accessedDirtyMaySet(old) }
    }

    /// `unmap_spec`: nothing in `range` translates; outside it, nothing changed.
    public static func unmapped(_ range: Range<Vaddr>, before: PageTableView, after: PageTableView) -> [String] {
        compare(before, after, range: range) { inRange, old in .exactly(inRange ? nil : old) }
    }

    /// `protect_spec`: in `range`, every translation keeps its page and gets `op(property)`;
    /// outside it, nothing changed.
    public static func protected(_ range: Range<Vaddr>, before: PageTableView, after: PageTableView,
                                 _ op: (PageProperty) -> PageProperty) -> [String] {
        compare(before, after, range: range) { inRange, old in
            guard inRange, var changed = old else { return .exactly(old) }
            changed.property = op(changed.property)
            return .exactly(changed)
        }
    }

    /// `map_spec` for a range that was unmapped: every address of `range` translates with
    /// `property`, through leaves of `level` that lie inside the range (each leaf onto one
    /// aligned block); outside it, nothing changed.
    public static func mapped(_ range: Range<Vaddr>, property: PageProperty, level: PagingLevel,
                              before: PageTableView, after: PageTableView) -> [String] {
        var problems = compare(before, after, range: range) { inRange, old in inRange ? .anything : .exactly(old) }
        var covered = 0
        for mapping in after.mappings where mapping.va.lowerBound < range.upperBound && range.lowerBound < mapping.va.upperBound {
            covered += mapping.pageSize
            if mapping.property != property || mapping.level != level || !mapping.inv()
                || mapping.va.lowerBound < range.lowerBound || mapping.va.upperBound > range.upperBound {
                problems.append("mapped \(mapping), expected \(property) leaves of level \(level) inside "
                                + "\(range.lowerBound)..<\(range.upperBound)")
            }
        }
        if covered != range.upperBound - range.lowerBound {
            problems.append("\(covered) bytes of \(range.lowerBound)..<\(range.upperBound) mapped, expected all "
                            + "\(range.upperBound - range.lowerBound)")
        }
        return problems
    }

    /// Compares the two views at every point where either may change (every leaf boundary of
    /// both, and the range's ends): `expected(inRange, old)` says what `after` must give where
    /// `before` gave `old`. Leaf sizes are not compared: a split changes them, not a translation.
    static func compare(_ before: PageTableView, _ after: PageTableView, range: Range<Vaddr>?,
                        expected: (Bool, Translation?) -> Expectation) -> [String] {
        var probes = Set<Vaddr>()
        for mapping in before.mappings + after.mappings {
            probes.insert(mapping.va.lowerBound)
            probes.insert(mapping.va.upperBound)
        }
        if let range {
            probes.insert(range.lowerBound)
            probes.insert(range.upperBound)
        }
        var problems: [String] = []
        let marks: PageFlags = [.accessed, .dirty]
        for va in probes.sorted() {
            let want: Translation?, mayMark: Bool
            switch expected(range?.contains(va) ?? false, before.translation(of: va)) {
            case .exactly(let translation): (want, mayMark) = (translation, false)
            case .accessedDirtyMaySet(let translation): (want, mayMark) = (translation, true)
            case .anything: continue
            }
            var got = after.translation(of: va)
            if mayMark, let old = want, var new = got, new.property.flags.isSuperset(of: old.property.flags.intersection(marks)) {
                // The flags the MMU set are the only difference allowed.
                new.property.flags.subtract(marks.subtracting(old.property.flags))
                got = new
            }
            if want?.paddr != got?.paddr || want?.property != got?.property {
                problems.append("at \(va): expected \(want.map(\.description) ?? "nothing"), found \(got.map(\.description) ?? "nothing")")
                if problems.count >= 5 { break }
            }
        }
        return problems
    }
}

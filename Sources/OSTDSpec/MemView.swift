// The seeds' virtual-memory view, `MemView` (vostd `ostd/specs/mm/virt_mem.rs`, quoted in
// vostd-spec-reference.md §2.1–2.3): a set of mappings and the contents of the frames they map,
// keyed by frame base PA. Each spec fn of the seed is one function here, same name in Swift case.
//
// Design.
// - `mappings` is a `Set<Mapping>` as in the seed (`Mapping` is the page-table leaf of
//   PageTableView.swift); lookups scan it, which is fine for views of a handle's range.
// - `addr_transl` `choose`s among the covering mappings; under `mappings_are_disjoint` there is
//   at most one. When mappings overlap this picks the lowest (va, pa), to stay deterministic.
// - Where the seed reads an untranslated or absent byte ("unspecified") the functions return nil.
// - A seed `forall |va|` over the whole address space is decided on `probes`: every mapping
//   boundary of the views involved (and one below it, and 0) plus any range ends the predicate
//   names. Between consecutive probes every view translates through one mapping or none, and
//   two translations `(m.pa.start, va - m.va.start)` that agree at one address of such a segment
//   agree on all of it.
// - `split` and `join` are corrected (docs/SPEC.md, defect 11); `seedSplit` keeps the literal
//   text for the tests.
// Building a view from a live space is MemView+Space.swift.

@_spi(OSTDInternals) import OSTDMemory

/// A virtual-memory view (the seeds' `MemView { mappings, memory }`).
public struct MemView: Equatable, Sendable {
    /// The mappings the view holds (`mappings: Set<Mapping>`).
    public var mappings: Set<Mapping>
    /// Frame contents by frame base PA (`memory: Map<Paddr, FrameContents>`).
    public var memory: [Paddr: FrameContents]

    public init(mappings: Set<Mapping> = [], memory: [Paddr: FrameContents] = [:]) {
        self.mappings = mappings
        self.memory = memory
    }

    // MARK: Translation and bytes

    /// The mapping `addr_transl` chooses for `va`, if any.
    public func mapping(covering va: Vaddr) -> Mapping? {
        mappings.filter { $0.va.contains(va) }
            .min { ($0.va.lowerBound, $0.pa.lowerBound) < ($1.va.lowerBound, $1.pa.lowerBound) }
    }

    /// `addr_transl(va)` (ref §2.3): "`C = {m ∈ mappings | m.va.start <= va < m.va.end}`; if
    /// `|C| > 0` then `Some((m.pa.start, va - m.va.start))` for `m = choose(C)`, else None".
    public func addrTransl(_ va: Vaddr) -> (Paddr, Int)? {
        guard let m = mapping(covering: va) else { return nil }
        return (m.pa.lowerBound, va - m.va.lowerBound)
    }

    /// Whether two results of `addrTransl` are equal (the seeds compare them with `==`).
    public static func sameTransl(_ a: (Paddr, Int)?, _ b: (Paddr, Int)?) -> Bool {
        switch (a, b) {
        case (nil, nil): return true
        case let (x?, y?): return x.0 == y.0 && x.1 == y.1
        default: return false
        }
    }

    /// `read(va)` (ref §2.3): "`memory[pa].contents[off]` where `(pa, off) = addr_transl(va)`";
    /// nil where the seed is unspecified (untranslated, or the frame absent).
    public func read(_ va: Vaddr) -> MemContents? {
        guard let (pa, offset) = addrTransl(va), let frame = memory[pa], offset < frame.contents.count else { return nil }
        return frame.contents[offset]
    }

    /// `write(va, x)` (ref §2.3): "`memory := memory.insert(pa, memory[pa] with contents[off] :=
    /// Init(x))`; mappings unchanged".
    ///
    /// - Precondition: `va` is translated and its frame present (the seed's `unwrap`).
    public mutating func write(_ va: Vaddr, _ byte: UInt8) {
        guard let (pa, offset) = addrTransl(va), memory[pa] != nil else {
            preconditionFailure("write at \(va): not translated, or its frame is not in the view")
        }
        memory[pa]!.contents[offset] = .initialized(byte)
    }

    /// `read_bytes(va, n)` (ref §2.3): "`[read(va).value(), …, read(va + n - 1).value()]`"; nil
    /// if a byte is untranslated, absent or uninitialised.
    public func readBytes(_ va: Vaddr, _ count: Int) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        for i in 0..<count {
            guard let byte = read(va + i)?.value else { return nil }
            bytes.append(byte)
        }
        return bytes
    }

    /// `write_bytes(va, bs)` (ref §2.3): "writes `bs[0]` at `va`, then recurses on `va + 1`".
    public mutating func writeBytes(_ va: Vaddr, _ bytes: [UInt8]) {
        for (i, byte) in bytes.enumerated() { write(va + i, byte) }
    }

    /// `is_mapped(va, pa)` (ref §2.3): "`addr_transl(va) is Some ∧ addr_transl(va).0 == pa`".
    public func isMapped(_ va: Vaddr, _ pa: Paddr) -> Bool { addrTransl(va)?.0 == pa }

    /// `eq_at(va1, va2)` (ref §2.3): the bytes at the two translations are equal.
    public func eqAt(_ va1: Vaddr, _ va2: Vaddr) -> Bool { read(va1) == read(va2) }

    // MARK: Well-formedness

    /// `mappings_are_disjoint()` (ref §2.2): "`∀ m1 ≠ m2 ∈ mappings: m1.va.end <= m2.va.start ∨
    /// m2.va.end <= m1.va.start`".
    public func mappingsAreDisjoint() -> Bool {
        let sorted = mappings.sorted { ($0.va.lowerBound, $0.pa.lowerBound) < ($1.va.lowerBound, $1.pa.lowerBound) }
        return zip(sorted, sorted.dropFirst()).allSatisfy { $0.va.upperBound <= $1.va.lowerBound }
    }

    /// Whether every address of `range` is translated (a seed `∀ va ∈ range. addr_transl(va) is
    /// Some`), decided mapping by mapping.
    public func translatesAll(_ range: Range<Vaddr>) -> Bool {
        segments(range).allSatisfy { $0.mapping != nil }
    }

    /// `range` cut where the translating mapping changes: each piece with the mapping `addr_transl`
    /// chooses for it, or nil.
    public func segments(_ range: Range<Vaddr>) -> [(range: Range<Vaddr>, mapping: Mapping?)] {
        var pieces: [(range: Range<Vaddr>, mapping: Mapping?)] = []
        var va = range.lowerBound
        while va < range.upperBound {
            if let m = mapping(covering: va) {
                let end = Swift.min(m.va.upperBound, range.upperBound)
                pieces.append((va..<end, m))
                va = end
            } else {
                let next = mappings.map(\.va.lowerBound).filter { $0 > va }.min() ?? range.upperBound
                let end = Swift.min(next, range.upperBound)
                pieces.append((va..<end, nil))
                va = end
            }
        }
        return pieces
    }

    /// The addresses that decide a `forall |va|` over `views` (see the file comment), plus `extra`.
    public static func probes(_ views: [MemView], extra: [Vaddr] = []) -> [Vaddr] {
        var points: Set<Vaddr> = [Vaddr(0)]
        for b in extra + views.flatMap({ $0.mappings.flatMap { [$0.va.lowerBound, $0.va.upperBound] } }) {
            points.insert(b)
            if b.rawValue > 0 { points.insert(Vaddr(b.rawValue - 1)) }
        }
        return points.sorted()
    }

    /// Whether `self` and `other` translate every address alike (a seed `∀ va. a.addr_transl(va)
    /// == b.addr_transl(va)`), or only the addresses `where` accepts; `extra` must hold the ends of
    /// the ranges `where` tests, so that every probed segment is wholly in or out.
    public func translatesLike(_ other: MemView, extra: [Vaddr] = [],
                               where include: (Vaddr) -> Bool = { _ in true }) -> Bool {
        MemView.probes([self, other], extra: extra).allSatisfy {
            !include($0) || MemView.sameTransl(addrTransl($0), other.addrTransl($0))
        }
    }
}

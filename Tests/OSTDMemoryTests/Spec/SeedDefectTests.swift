// The seeds' own defects, found by running them (issue 11, point 6; catalogue in docs/SPEC.md).
//
// Design: each defect gets one test that (a) transcribes the seed's Verus text literally as a
// test-local function named `seed_<name>`, on plain values (`UInt64` addresses, `Range<UInt64>`
// where the seed has `Range<usize>`, a `SeedMemView` for `MemView`); (b) builds a concrete
// counterexample; (c) shows the literal transcription gives the wrong answer on it; (d) shows the
// run time's corrected predicate or behaviour (the real `VmIoOwner`, `VmSpaceOwner`, `VmSpace`,
// readers and writers) gives the right one. Where the run time does not model the structure yet
// (`MemView`, the TLB model, page-table specs) the corrected predicate is also written here as a
// `corrected_<name>` function, and docs/SPEC.md says which run-time check will enforce it.
//
// A seed `forall |va: usize|` is evaluated on `probes(...)`: every mapping boundary `b` of the
// views involved, `b - 1`, and 0. Between consecutive boundaries every view translates through
// the same mapping (or none), so these points decide the quantifiers used here exactly.
//
// This file: the shared transcriptions and fixtures. The defects are in
// `SeedDefectTests+<Concern>.swift`: `+Owner` (the `VmSpaceOwner` / `VmIoOwner` predicates and
// the preconditions), `+Lifecycle` (activation and disposal), `+PageTable` (cursor, `MemView`
// split, TLB), `+MetaRegion` (seed 003).

import Testing
import OSTDHost
@_spi(OSTDInternals) @testable import OSTDMemory

// MARK: The seeds' values, transcribed

/// A seed `Mapping`: its VA range and the start of its PA range (`memory` is keyed by it).
struct SeedMapping: Hashable {
    var va: Range<UInt64>
    var pa: UInt64
}

/// `addr_transl`'s result: the frame base PA and the offset into it.
struct SeedTransl: Equatable {
    var pa: UInt64
    var offset: UInt64
}

/// A seed `MemView`: `mappings` and the domain of `memory` (frame base PAs).
struct SeedMemView: Equatable {
    var mappings: Set<SeedMapping> = []
    var memory: Set<UInt64> = []

    init(_ mappings: [SeedMapping] = []) {
        self.mappings = Set(mappings)
        memory = Set(mappings.map(\.pa))
    }

    /// `addr_transl(va)`: "`choose` of `{m | m.va.start <= va < m.va.end}`" (unique when the
    /// mappings are disjoint; the lowest one otherwise, to stay deterministic).
    func addrTransl(_ va: UInt64) -> SeedTransl? {
        let covering = mappings.filter { $0.va.lowerBound <= va && va < $0.va.upperBound }
        guard let m = covering.min(by: { ($0.va.lowerBound, $0.pa) < ($1.va.lowerBound, $1.pa) }) else { return nil }
        return SeedTransl(pa: m.pa, offset: va - m.va.lowerBound)
    }

    /// `mappings_are_disjoint()`.
    func mappingsAreDisjoint() -> Bool {
        let all = Array(mappings)
        for i in all.indices {
            for j in all.indices where i != j {
                if !(all[i].va.upperBound <= all[j].va.lowerBound || all[j].va.upperBound <= all[i].va.lowerBound) { return false }
            }
        }
        return true
    }

    /// The seed's `split(vaddr, len)` (`virt_mem.rs`, quoted in vostd-spec-reference.md §2.3):
    /// left = mappings overlapping `[vaddr, e)`, right = mappings with `m.va.end > e`; each
    /// half's memory is the frames some address of it maps.
    func split(_ vaddr: UInt64, _ len: UInt64) -> (SeedMemView, SeedMemView) {
        let e = vaddr + len
        var left = SeedMemView()
        var right = SeedMemView()
        left.mappings = mappings.filter { $0.va.lowerBound < e && $0.va.upperBound > vaddr }
        right.mappings = mappings.filter { $0.va.upperBound > e }
        left.memory = memory.intersection(left.mappings.map(\.pa))
        right.memory = memory.intersection(right.mappings.map(\.pa))
        return (left, right)
    }

    /// The seed's `borrow_at(vaddr, len)`: the mappings overlapping `[vaddr, vaddr + len)`.
    func borrowAt(_ vaddr: UInt64, _ len: UInt64) -> SeedMemView { split(vaddr, len).0 }
}

/// A seed `VmIoMemView`.
enum SeedIoView: Equatable {
    case readView(SeedMemView)
    case writeView(SeedMemView)

    var view: SeedMemView {
        switch self {
        case .readView(let mv), .writeView(let mv): return mv
        }
    }
}

/// A seed `VmIoOwner` (the fields the predicates read).
struct SeedIoOwner: Equatable {
    var range: Range<UInt64>
    var memView: SeedIoView? = nil
}

/// A seed `VmSpaceOwner` (without `page_table_owner`, whose `inv` is taken as true).
struct SeedSpaceOwner {
    var active = true
    var readers: [SeedIoOwner] = []
    var writers: [SeedIoOwner] = []
    var memView: SeedMemView?
    var mvRange: SeedMemView?
    var sharedReader = false
}

/// Every mapping boundary of `views`, one below it, and 0 (see the file comment).
func probes(_ views: [SeedMemView]) -> [UInt64] {
    var points: Set<UInt64> = [0]
    for view in views {
        for m in view.mappings {
            for b in [m.va.lowerBound, m.va.upperBound] {
                points.insert(b)
                if b > 0 { points.insert(b - 1) }
            }
        }
    }
    return points.sorted()
}

/// The views an owner's predicates quantify over.
func views(_ s: SeedSpaceOwner) -> [SeedMemView] {
    [s.memView, s.mvRange].compactMap { $0 } + (s.readers + s.writers).compactMap { $0.memView?.view }
}

// MARK: The seeds' predicates, literally

/// 001 `overlaps_with_range`: "`self.range.start <= range.end && range.start <= self.range.end`".
func seed_overlaps_with_range(_ selfRange: Range<UInt64>, _ range: Range<UInt64>) -> Bool {
    selfRange.lowerBound <= range.upperBound && range.lowerBound <= selfRange.upperBound
}

/// 001 `disjoint`: "`!self.overlaps_with_range(other.range)` and, both views present, disjoint
/// mapping sets".
func seed_disjoint(_ a: SeedIoOwner, _ b: SeedIoOwner) -> Bool {
    guard !seed_overlaps_with_range(a.range, b.range) else { return false }
    guard let l = a.memView, let r = b.memView else { return true }
    return l.view.mappings.isDisjoint(with: r.view.mappings)
}

/// 001 `VmIoOwner::inv`: `range.start <= range.end` and a view, if any, is finite, disjoint and
/// translates every `va` of the range.
func seed_io_inv(_ o: SeedIoOwner) -> Bool {
    guard o.range.lowerBound <= o.range.upperBound else { return false }
    guard let mv = o.memView?.view else { return true }
    let ends = o.range.isEmpty ? [] : [o.range.lowerBound, o.range.upperBound - 1]
    let inRange = probes([mv]).filter { o.range.contains($0) } + ends
    return mv.mappingsAreDisjoint() && inRange.allSatisfy { mv.addrTransl($0) != nil }
}

/// 000:167-248 `mem_view_wf`, literally (R = remaining `mem_view`, T = total `mv_range`).
func seed_mem_view_wf(_ s: SeedSpaceOwner) -> Bool {
    guard (s.memView != nil) == (s.mvRange != nil) else { return false }
    guard let remaining = s.memView, let total = s.mvRange else { return true }
    let vas = probes(views(s))
    guard remaining.mappingsAreDisjoint(), total.mappingsAreDisjoint(),
          remaining.mappings.isSubset(of: total.mappings), remaining.memory.isSubset(of: total.memory),
          vas.allSatisfy({ remaining.addrTransl($0) == total.addrTransl($0) }) else { return false }
    for writer in s.writers {
        guard case .writeView(let w)? = writer.memView else { return false }
        for va in vas {
            guard w.addrTransl(va) == total.addrTransl(va) else { return false }
            if w.addrTransl(va) != nil && (remaining.addrTransl(va) != nil || remaining.memory.contains(va)) { return false }
        }
        guard w.mappings.isDisjoint(with: remaining.mappings), w.mappings.isSubset(of: total.mappings),
              w.memory.isSubset(of: total.memory) else { return false }
    }
    for reader in s.readers {
        guard case .readView(let r)? = reader.memView else { return false }
        guard vas.allSatisfy({ r.addrTransl($0) == total.addrTransl($0) }) else { return false }
    }
    return true
}

/// 000:94-137 `VmSpaceOwner::inv`, literally.
func seed_inv(_ s: SeedSpaceOwner) -> Bool {
    guard s.active else { return true }
    guard seed_mem_view_wf(s) else { return false }
    guard s.memView != nil else { return true }
    guard s.readers.allSatisfy(seed_io_inv), s.writers.allSatisfy(seed_io_inv) else { return false }
    for r in s.readers { for w in s.writers where !seed_disjoint(r, w) { return false } }
    if !s.sharedReader && !pairwiseDisjoint(s.readers) { return false }
    return pairwiseDisjoint(s.writers)
}

func pairwiseDisjoint(_ owners: [SeedIoOwner]) -> Bool {
    for i in owners.indices { for j in owners.indices where i != j && !seed_disjoint(owners[i], owners[j]) { return false } }
    return true
}

/// 000:254-263 `can_create_reader`: no writer `overlaps_with_range(vaddr..vaddr+len)`.
func seed_can_create_reader(_ s: SeedSpaceOwner, _ vaddr: UInt64, _ len: UInt64) -> Bool {
    s.writers.allSatisfy { !seed_overlaps_with_range($0.range, vaddr..<(vaddr + len)) }
}

/// 000:268-282 `can_create_writer`: no reader and no writer overlaps.
func seed_can_create_writer(_ s: SeedSpaceOwner, _ vaddr: UInt64, _ len: UInt64) -> Bool {
    (s.readers + s.writers).allSatisfy { !seed_overlaps_with_range($0.range, vaddr..<(vaddr + len)) }
}

// MARK: Fixtures

/// One 4 KiB page at `va` mapped to `pa`.
func page(_ va: UInt64, _ pa: UInt64) -> SeedMapping { SeedMapping(va: va..<(va + 0x1000), pa: pa) }

/// A space with `count` fresh pages mapped read-write at `base`, active on CPU 0.
func specSpace(_ machine: Machine, pages count: Int = 1, sharedReader: Bool = false) throws -> VmSpace {
    let space = try VmSpace(machine: machine, sharedReader: sharedReader)
    var cursor = try space.cursorMut(pages(base, count))
    for _ in 0..<count { cursor.map(try FrameAllocOptions().allocFrame(in: machine), .user(.rw)) }
    _ = consume cursor
    space.activate(on: 0)
    return space
}

/// `base + lo` as a plain address.
func at(_ lo: Int) -> UInt64 { (base + lo).rawValue }

@Suite struct SeedDefectTests {}

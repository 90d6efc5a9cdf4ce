// Seed defects in the `VmSpaceOwner` / `VmIoOwner` predicates (seeds 000, 001, 002): the
// unsatisfiable `mem_view_wf` (defects 1 and 13), the closed-interval `overlaps_with_range`
// (2), the `shared_reader` doc comment (3), `can_create_reader` (4), and the seeds' preconditions
// on `vaddr` / `len` against OSTD and the run time (docs/SPEC.md, "Preconditions: seeds vs OSTD").
// Literal transcriptions are `seed_*` (shared ones in SeedDefectTests.swift); the corrected
// `mem_view_wf` is `corrected_mem_view_wf` below, since the run time keeps no `MemView` yet.

import Testing
import OSTDHost
@_spi(OSTDInternals) @testable import OSTDMemory

/// The corrected `mem_view_wf` (vostd-spec-reference.md §4.2's weakening): R agrees with T where
/// no writer translates; where a writer translates it agrees with T and R translates nothing;
/// a reader agrees with T where it translates (not everywhere).
func corrected_mem_view_wf(_ s: SeedSpaceOwner) -> Bool {
    guard (s.memView != nil) == (s.mvRange != nil) else { return false }
    guard let remaining = s.memView, let total = s.mvRange else { return true }
    guard remaining.mappingsAreDisjoint(), total.mappingsAreDisjoint(),
          remaining.mappings.isSubset(of: total.mappings) else { return false }
    var writerViews: [SeedMemView] = []
    for writer in s.writers {
        guard case .writeView(let w)? = writer.memView, w.mappings.isSubset(of: total.mappings),
              w.mappings.isDisjoint(with: remaining.mappings),
              writerViews.allSatisfy({ $0.mappings.isDisjoint(with: w.mappings) }) else { return false }
        writerViews.append(w)
    }
    for va in probes(views(s)) {
        if let w = writerViews.first(where: { $0.addrTransl(va) != nil }) {
            guard w.addrTransl(va) == total.addrTransl(va), remaining.addrTransl(va) == nil else { return false }
        } else {
            guard remaining.addrTransl(va) == total.addrTransl(va) else { return false }
        }
        for reader in s.readers {
            guard case .readView(let r)? = reader.memView else { return false }
            if let t = r.addrTransl(va), t != total.addrTransl(va) { return false }
        }
    }
    return true
}

/// 000:630-656 `dispose_writer`'s `requires`, literally.
func seed_dispose_writer_requires(_ old: SeedSpaceOwner, _ owner: SeedIoOwner) -> Bool {
    guard seed_inv(old), old.active, seed_io_inv(owner), let total = old.mvRange, let remaining = old.memView,
          case .writeView(let mv)? = owner.memView else { return false }
    for va in probes(views(old) + [mv]) {
        guard mv.addrTransl(va) == total.addrTransl(va) else { return false }
        if mv.addrTransl(va) != nil && (remaining.addrTransl(va) != nil || remaining.memory.contains(va)) { return false }
    }
    guard mv.mappings.isDisjoint(with: remaining.mappings), mv.mappings.isSubset(of: total.mappings),
          mv.memory.isSubset(of: total.memory) else { return false }
    return old.writers.allSatisfy { seed_disjoint($0, owner) } && old.readers.allSatisfy { seed_disjoint($0, owner) }
}

/// 000:586-606 `dispose_reader`'s `requires`, literally.
func seed_dispose_reader_requires(_ old: SeedSpaceOwner, _ owner: SeedIoOwner) -> Bool {
    guard seed_io_inv(owner), seed_inv(old), old.active, let total = old.mvRange, old.memView != nil,
          case .readView(let mv)? = owner.memView else { return false }
    guard probes(views(old) + [mv]).allSatisfy({ total.addrTransl($0) == mv.addrTransl($0) }) else { return false }
    return old.writers.allSatisfy { seed_disjoint($0, owner) } && old.readers.allSatisfy { seed_disjoint($0, owner) }
}

extension SeedDefectTests {
    // MARK: 1. `mem_view_wf` with a writer

    @Test func memViewWfIsUnsatisfiableWithAWriter() throws {
        // (b) One page, and a writer activated over it with the seed's `split`.
        let p = page(at(0), 0x8000)
        let total = SeedMemView([p])
        let (taken, rest) = total.split(at(0), 0x1000)
        let writer = SeedIoOwner(range: at(0)..<at(0x1000), memView: .writeView(taken))
        #expect(seed_io_inv(writer) && taken.mappings == [p] && rest.mappings.isEmpty)
        // (c) No remaining view R ⊆ T satisfies `mem_view_wf` with the writer, nor `dispose_writer`'s
        // precondition; without a writer R = T does (the predicate is not simply false).
        for remaining in [SeedMemView(), total] {
            #expect(!seed_mem_view_wf(SeedSpaceOwner(writers: [writer], memView: remaining, mvRange: total)))
            #expect(!seed_dispose_writer_requires(SeedSpaceOwner(memView: remaining, mvRange: total), writer))
        }
        #expect(seed_mem_view_wf(SeedSpaceOwner(memView: total, mvRange: total)))
        #expect(corrected_mem_view_wf(SeedSpaceOwner(writers: [writer], memView: rest, mvRange: total)))
        // (d) The run time: a writer holding a whole page is active and `inv` holds; it is disposed
        // (the permission comes back), activated again and used.
        let machine = makeMachine()
        let space = try specSpace(machine)
        var w = try space.createWriter(base, 0x1000)
        let snapshot = space.ownerSnapshot
        #expect(snapshot.active && snapshot.writers.map(\.range) == [bytes(0, 0x1000)] && snapshot.inv())
        space.disposeWriter(&w)
        #expect(space.ownerSnapshot.writers.isEmpty && space.ownerSnapshot.inv())
        try space.activateWriter(&w)
        try w.writeVal(UInt64(7))
        #expect(space.ownerSnapshot.inv())
        _ = consume w
    }

    // MARK: 13. `mem_view_wf` makes every reader's (and writer's) view the whole space

    @Test func memViewWfDemandsWholeSpaceViews() throws {
        // (b) Two pages; a reader borrows the first (the seed's `activate_reader`), a writer holds
        // the second.
        let p1 = page(at(0), 0x8000), p2 = page(at(0x1000), 0x9000)
        let total = SeedMemView([p1, p2])
        let reader = SeedIoOwner(range: at(0)..<at(8), memView: .readView(total.borrowAt(at(0), 8)))
        let writer = SeedIoOwner(range: at(0x1000)..<at(0x1008), memView: .writeView(SeedMemView([p2])))
        #expect(seed_io_inv(reader) && seed_io_inv(writer))
        // (c) "forall va: reader_mv.addr_transl(va) == total_view.addr_transl(va)" fails at p2.
        let withReader = SeedSpaceOwner(readers: [reader], memView: total, mvRange: total)
        #expect(!seed_mem_view_wf(withReader))
        #expect(!seed_dispose_reader_requires(SeedSpaceOwner(memView: total, mvRange: total), reader))
        let both = SeedSpaceOwner(readers: [reader], writers: [writer], memView: SeedMemView([p1]), mvRange: total)
        #expect(!seed_mem_view_wf(both))
        #expect(corrected_mem_view_wf(withReader) && corrected_mem_view_wf(both))
        // (d) The run time: the same reader and writer are active together and `inv` holds.
        let machine = makeMachine()
        let space = try specSpace(machine, pages: 2)
        var r = try space.createReader(base, 8)
        let w = try space.createWriter(base + 0x1000, 8)
        #expect(space.ownerSnapshot.inv())
        space.disposeReader(&r)
        try space.activateReader(&r)
        _ = try r.readVal(UInt64.self)
        #expect(space.ownerSnapshot.inv())
        _ = consume w
    }

    // MARK: 2. `overlaps_with_range` counts adjacent and empty ranges

    @Test func overlapsWithRangeCountsAdjacentAndEmptyRanges() throws {
        // (b, c) Adjacent ranges, an empty range inside another, an empty range at a boundary.
        #expect(seed_overlaps_with_range(at(0)..<at(16), at(16)..<at(32)))
        #expect(seed_overlaps_with_range(at(8)..<at(8), at(0)..<at(16)))
        #expect(seed_overlaps_with_range(at(40)..<at(40), at(32)..<at(40)))
        let s = SeedSpaceOwner(readers: [SeedIoOwner(range: at(0)..<at(16))])
        #expect(!seed_can_create_writer(s, at(16), 16))
        let consumed = SeedSpaceOwner(writers: [SeedIoOwner(range: at(40)..<at(40))])
        #expect(!seed_can_create_reader(consumed, at(32), 8) && !seed_can_create_reader(consumed, at(40), 8))
        // (d) `VmIoOwner.overlapsWithRange` is half-open and an empty range overlaps nothing.
        let reader = VmIoOwner(id: 1, range: bytes(0, 16), isFallible: true, isKernel: false, memView: .readView)
        #expect(!reader.overlapsWithRange(bytes(16, 32)) && reader.overlapsWithRange(bytes(15, 16)))
        let empty = VmIoOwner(id: 2, range: bytes(8, 8), isFallible: true, isKernel: false, memView: .writeView)
        #expect(!empty.overlapsWithRange(bytes(0, 16)) && reader.disjoint(empty))
        // The space admits a writer next to a reader, and readers over a writer's consumed bytes.
        let machine = makeMachine()
        let space = try specSpace(machine)
        let r = try space.createReader(base, 16)
        #expect(space.ownerSnapshot.canCreateWriter(base + 16, 16))
        var w = try space.createWriter(base + 32, 8)
        let adjacent = try space.createWriter(base + 16, 16)
        try w.writeVal(UInt64(1))   // the writer now owns [40, 40)
        #expect(space.ownerSnapshot.writers.map(\.range).contains(bytes(40, 40)))
        let over = try space.createReader(base + 32, 8)
        let after = try space.createReader(base + 40, 8)
        #expect(space.ownerSnapshot.inv())
        _ = consume r
        _ = consume w
        _ = consume adjacent
        _ = consume over
        _ = consume after
    }

    // MARK: 3. The `shared_reader` doc comment says the opposite of the code

    @Test func sharedReaderDocContradictsTheCode() throws {
        // (a) 000:93 documents the clause one way, 000:119 codes it the other way.
        func seed_readers_clause_as_coded(_ s: SeedSpaceOwner) -> Bool { s.sharedReader || pairwiseDisjoint(s.readers) }
        func seed_readers_clause_as_documented(_ s: SeedSpaceOwner) -> Bool { !s.sharedReader || pairwiseDisjoint(s.readers) }
        // (b) Two overlapping readers.
        let readers = [SeedIoOwner(range: at(0)..<at(16)), SeedIoOwner(range: at(8)..<at(24))]
        for shared in [true, false] {
            let s = SeedSpaceOwner(readers: readers, sharedReader: shared)
            // (c) The two readings disagree either way.
            #expect(seed_readers_clause_as_coded(s) == shared)
            #expect(seed_readers_clause_as_documented(s) == !shared)
        }
        // (d) The run time follows the code (and the field's doc, "whether we allow shared
        // reading"): with `sharedReader` the readers coexist, without it the second is refused.
        let machine = makeMachine()
        let shared = try specSpace(machine, sharedReader: true)
        let a = try shared.createReader(base, 16)
        let b = try shared.createReader(base + 8, 16)
        #expect(shared.ownerSnapshot.readers.count == 2 && shared.ownerSnapshot.inv())
        let exclusive = try specSpace(machine)
        let c = try exclusive.createReader(base, 16)
        #expect(throws: OSTDError.accessConflict(requested: bytes(8, 24), conflicting: bytes(0, 16))) {
            _ = try exclusive.createReader(base + 8, 16)
        }
        _ = consume a
        _ = consume b
        _ = consume c
    }

    // MARK: 4. `can_create_reader` ignores readers when `shared_reader` is false

    @Test func canCreateReaderAdmitsWhatInvForbids() throws {
        // (b) One reader over the first 16 bytes of a page, readers not shared.
        let total = SeedMemView([page(at(0), 0x8000)])
        let first = SeedIoOwner(range: at(0)..<at(16), memView: .readView(total.borrowAt(at(0), 16)))
        let s = SeedSpaceOwner(readers: [first], memView: total, mvRange: total)
        #expect(seed_inv(s))
        // (c) The seed admits an overlapping reader, and the state with it breaks `inv`.
        #expect(seed_can_create_reader(s, at(8), 8))
        var after = s
        after.readers.append(SeedIoOwner(range: at(8)..<at(16), memView: .readView(total.borrowAt(at(8), 8))))
        #expect(!seed_inv(after))
        // (d) `canCreateReader` is the literal predicate; `admitsReader` adds the readers unless
        // shared, and creation follows it.
        let machine = makeMachine()
        let space = try specSpace(machine)
        let r = try space.createReader(base, 16)
        #expect(space.ownerSnapshot.canCreateReader(base + 8, 8))
        #expect(!space.ownerSnapshot.admitsReader(base + 8, 8))
        #expect(throws: OSTDError.accessConflict(requested: bytes(8, 16), conflicting: bytes(0, 16))) {
            _ = try space.createReader(base + 8, 8)
        }
        #expect(space.ownerSnapshot.inv())
        _ = consume r
    }

    // MARK: Preconditions: seeds vs OSTD

    @Test func userRangePreconditionsPinTodaysBehaviour() throws {
        // 002:634 / 002:649: "vaddr != 0 && len > 0 && vaddr + len <= MAX_USERSPACE_VADDR_SPEC()".
        func seed_range_requires(_ vaddr: UInt64, _ len: UInt64) -> Bool {
            vaddr != 0 && len > 0 && vaddr + len <= 0x0000_8000_0000_0000 - 4096
        }
        #expect(!seed_range_requires(0, 0) && !seed_range_requires(0, 8) && seed_range_requires(0x1000, 8))
        // The run time: `len == 0` is refused, `vaddr == 0` is not (scripts map and read page 0).
        let machine = makeMachine()
        let space = try VmSpace(machine: machine)
        space.activate(on: 0)
        #expect(throws: OSTDError.invalidUserRange(vaddr: Vaddr(0), len: 0)) { _ = try space.createReader(Vaddr(0), 0) }
        #expect(throws: OSTDError.invalidUserRange(vaddr: Vaddr(0), len: 0)) { _ = try space.createWriter(Vaddr(0), 0) }
        let reader = try space.createReader(Vaddr(0), 8)
        #expect(reader.owner?.range == Vaddr(0)..<Vaddr(8))
        _ = consume reader
    }
}

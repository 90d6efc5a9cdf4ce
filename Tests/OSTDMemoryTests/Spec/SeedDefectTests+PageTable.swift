// Seed defects in the cursor, `MemView` and TLB specifications (seed 002, and the specs it uses
// that vostd-spec-reference.md quotes): `unmap` bounded by the kernel range (defect 8),
// `protect_next` requiring a present entry (9), `map` promising replacement (10), `MemView::split`
// not partitioning (11), and the TLB dispatch spec ignoring flush-all (12). These structures are
// not run-time predicates yet, so the corrected contracts are `corrected_*` functions here and
// the run time's behaviour (`VmSpace.CursorMut`, `TlbFlusher`) is what the tests check.

import Testing
import OSTDHost
@_spi(OSTDInternals) @testable import OSTDMemory

/// A seed `TlbFlushOp`.
enum SeedFlushOp {
    case all
    case address(UInt64)
    case range(Range<UInt64>)
}

/// A seed `TlbModel`.
struct SeedTlb {
    var pending: [SeedFlushOp]
    var mappings: Set<SeedMapping>
}

/// `TlbModel::flush(va)`: removes every mapping containing `va`.
func seed_tlb_flush(_ tlb: SeedTlb, _ va: UInt64) -> SeedTlb {
    SeedTlb(pending: tlb.pending, mappings: tlb.mappings.filter { !$0.va.contains(va) })
}

/// `dispatch_tlb_flush_spec` (vostd-spec-reference.md §7): pops the last pending op; `All` leaves
/// the mappings unchanged, `Address(va)` flushes `va`, `Range(r)` flushes `r.start` only.
func seed_dispatch_tlb_flush(_ tlb: SeedTlb) -> SeedTlb {
    var t = tlb
    guard let op = t.pending.popLast() else { return t }
    switch op {
    case .all: return t
    case .address(let va): return seed_tlb_flush(t, va)
    case .range(let r): return seed_tlb_flush(t, r.lowerBound)
    }
}

/// `consistent_with_pt(pt)`: "`mappings ⊆ pt.mappings`".
func seed_consistent_with_pt(_ tlb: SeedTlb, _ pt: Set<SeedMapping>) -> Bool { tlb.mappings.isSubset(of: pt) }

/// Reads 8 bytes at `va` on CPU 0; `nil` when the access faults.
private func read64(_ space: VmSpace, _ va: Vaddr) -> UInt64? {
    try? space.withReader(at: va, count: 8) { (reader: inout VmReader<Fallible>) throws(OSTDError) in
        try reader.readVal(UInt64.self)
    }
}

extension SeedDefectTests {
    // MARK: 8. `unmap` is bounded by the kernel range, not the cursor's barrier

    @Test func unmapBoundIsTheBarrier() async throws {
        // (a) 002:1389-1392, and OSTD's bound (panic "len exceeds remaining cursor range").
        func seed_unmap_requires(_ va: UInt64, _ len: UInt64) -> Bool {
            len % 4096 == 0 && va % 4096 == 0 && va + len <= 0xffff_ffff_ffff_0000   // KERNEL_VADDR_RANGE().end
        }
        func corrected_unmap_requires(_ va: UInt64, _ len: UInt64, barrier: Range<UInt64>) -> Bool {
            len % 4096 == 0 && va % 4096 == 0 && va + len <= barrier.upperBound
        }
        // (b, c) A cursor over one page asked to unmap two.
        #expect(seed_unmap_requires(at(0), 0x2000))
        #expect(!corrected_unmap_requires(at(0), 0x2000, barrier: at(0)..<at(0x1000)))
        // (d) The run time refuses it, as OSTD does.
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let machine = makeMachine()
            let space = try! VmSpace(machine: machine)
            var cursor = try! space.cursorMut(Vaddr(0x40_0000)..<Vaddr(0x40_1000))
            cursor.unmap(0x2000)
        }
        #expect(stderrContains(result, "len exceeds remaining cursor range"))
    }

    // MARK: 9. `protect_next` requires a present entry

    @Test func protectNextOnAnAbsentEntry() throws {
        // (a) 002:1462 "!old(owner).cur_entry_owner().is_absent()", with the range clauses.
        func seed_protect_next_requires(entryAbsent: Bool, _ va: UInt64, _ len: UInt64, barrierEnd: UInt64) -> Bool {
            !entryAbsent && len % 4096 == 0 && va + len <= barrierEnd
        }
        // (b, c) A cursor over an unmapped page: its entry is absent at every level, so the seed
        // excludes the call its own doc (002:1444-1446) and OSTD's `protect_next_empty_entry` make.
        #expect(!seed_protect_next_requires(entryAbsent: true, at(0), 0x1000, barrierEnd: at(0x1000)))
        // (d) The run time returns `nil` there, and protects the first mapped page after a hole.
        let machine = makeMachine()
        let space = try VmSpace(machine: machine)
        var empty = try space.cursorMut(pages(base, 1))
        #expect(empty.protectNext(pageSize) { flags, _ in flags = .r } == nil)
        _ = consume empty
        var mapper = try space.cursorMut(pages(base, 2))
        try mapper.jump(base + pageSize)
        mapper.map(try FrameAllocOptions().allocFrame(in: machine), .user(.rw))
        _ = consume mapper
        var cursor = try space.cursorMut(pages(base, 2))
        #expect(cursor.protectNext(2 * pageSize) { flags, _ in flags = .r } == bytes(0x1000, 0x2000))
        _ = consume cursor
        #expect(space.pageTable.pageWalk(base + pageSize)?.property.flags == .r)
    }

    // MARK: 10. `map` promises to replace a mapping where OSTD panics

    @Test func mapOverAMappedPage() throws {
        // (a) `map_spec` (002:1308-1319, vostd-spec-reference.md §5.2) at 4 KiB: remove the
        // mappings starting in the slot, add the new one; 002:1337-1340 do not require the slot empty.
        func seed_map_spec(_ pt: Set<SeedMapping>, _ va: UInt64, _ pa: UInt64) -> Set<SeedMapping> {
            let a = va / 0x1000 * 0x1000
            return pt.filter { !($0.va.lowerBound >= a && $0.va.lowerBound < a + 0x1000) }.union([page(a, pa)])
        }
        // (b, c) The page is mapped to X; mapping Y there "succeeds" by replacement.
        #expect(seed_map_spec([page(at(0), 0x8000)], at(0), 0x9000) == [page(at(0), 0x9000)])
        // (d) The run time refuses (`tryMap` hands the item back; `map` panics "mapping over an
        // already mapped page", OSTDVmSpaceTests.vmspaceMapTwice) and the first mapping stays.
        let machine = makeMachine()
        let space = try VmSpace(machine: machine)
        var cursor = try space.cursorMut(pages(base, 1))
        let first = try FrameAllocOptions().allocFrame(in: machine)
        let firstPaddr = first.paddr
        cursor.map(first, .user(.rw))
        _ = consume cursor
        var again = try space.cursorMut(pages(base, 1))
        switch again.tryMap(MappedItem(frame: try FrameAllocOptions().allocFrame(in: machine), property: .user(.rw))) {
        case .some(let failure): #expect(failure.error == .alreadyMapped(base))
        case .none: Issue.record("mapping over a mapped page succeeded")
        }
        _ = consume again
        #expect(space.pageTable.pageWalk(base)?.paddr == firstPaddr)
    }

    // MARK: 11. `MemView::split` is not a partition

    @Test func memViewSplitIsNotAPartition() throws {
        // (b) Pages Q below and P at the split; split after the first 0x800 bytes of P.
        let q = page(at(0), 0x7000), p = page(at(0x1000), 0x8000)
        let mv = SeedMemView([q, p])
        let (left, right) = mv.split(at(0x1000), 0x800)
        // (c) P lands in both halves (its frame duplicated), Q in neither.
        #expect(left.mappings == [p] && right.mappings == [p])
        #expect(left.memory == [0x8000] && right.memory == [0x8000])
        // So a writer activated over those bytes shares P with the remaining view, which no
        // `mem_view_wf` (even the corrected one) accepts, and `remove_writer`'s join cannot happen.
        let s = SeedSpaceOwner(memView: mv, mvRange: mv)
        let (after, w) = seed_activate_writer(s, SeedIoOwner(range: at(0x1000)..<at(0x1800)))
        var registered = after
        registered.writers.append(w)
        #expect(!corrected_mem_view_wf(registered))
        // (d) The run time splits ownership by bytes: two writers in one page, and a split writer.
        let machine = makeMachine()
        let space = try specSpace(machine)
        var whole = try space.createWriter(base, 0x1000)
        let front = whole.split(0x800)
        let snapshot = space.ownerSnapshot
        #expect(snapshot.writers.count == 2)
        #expect(snapshot.writers.map(\.range).contains(bytes(0, 0x800)))
        #expect(snapshot.writers.map(\.range).contains(bytes(0x800, 0x1000)))
        #expect(snapshot.writers[0].disjoint(snapshot.writers[1]) && snapshot.inv())
        _ = consume front
        _ = consume whole
    }

    // MARK: 12. The TLB dispatch spec ignores flush-all (and flushes one page of a range)

    @Test func tlbDispatchIgnoresFlushAll() throws {
        // (b) The TLB caches two pages the page table no longer maps.
        let p1 = page(at(0), 0x8000), p2 = page(at(0x1000), 0x9000)
        let all = seed_dispatch_tlb_flush(SeedTlb(pending: [.all], mappings: [p1, p2]))
        let range = seed_dispatch_tlb_flush(SeedTlb(pending: [.range(at(0)..<at(0x2000))], mappings: [p1, p2]))
        // (c) Both stay cached after a flush of everything; one after a flush of both pages.
        #expect(all.mappings == [p1, p2] && !seed_consistent_with_pt(all, []))
        #expect(range.mappings == [p2] && !seed_consistent_with_pt(range, []))
        // (d) The run time: after the same unmaps, both flushes leave no stale translation.
        for op in [TlbFlushOp.all, .range(pages(base, 2))] {
            let machine = makeMachine()
            let space = try specSpace(machine, pages: 2)
            #expect(read64(space, base) != nil && read64(space, base + pageSize) != nil)
            var cursor = try space.cursorMut(pages(base, 2))
            for _ in 0..<2 {
                guard let fragment = cursor.takeNext(pages(base, 2).upperBound - cursor.virtAddr) else {
                    Issue.record("nothing to take")
                    return
                }
                cursor.flusher.issueTlbFlushWith(op, keeping: fragment)
            }
            #expect(read64(space, base) != nil && read64(space, base + pageSize) != nil, "stale before \(op)")
            cursor.flusher.dispatchTlbFlush()
            #expect(read64(space, base) == nil && read64(space, base + pageSize) == nil, "flushed by \(op)")
            _ = consume cursor
        }
    }
}

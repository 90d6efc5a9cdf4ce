// The TLB flush-op encoding and CPU sets (OSTD `mm/tlb.rs`, `cpu/set.rs`).

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

@Suite struct TlbFlushOpTests {
    @Test func singlePageKeepsItsPageAddress() {
        let op = TlbFlushOp.single(Vaddr(0x7fff_ffff_f123))
        #expect(op.pages == Vaddr(0x7fff_ffff_f000)..<Vaddr(0x8000_0000_0000))
        #expect(op.pageCount == 1)
        #expect(!op.isAll)
    }

    @Test func rangesBelowTheThresholdStayRanges() {
        let op = TlbFlushOp.range(Vaddr(0x40_0000)..<Vaddr(0x40_0000 + 31 * 4096))
        #expect(op.pageCount == 31)
        #expect(op.pages?.lowerBound == Vaddr(0x40_0000))
    }

    @Test func rangesAtTheThresholdFlushEverything() {
        #expect(TlbFlushOp.range(Vaddr(0)..<Vaddr(32 * 4096)).isAll)
        #expect(TlbFlushOp.range(Vaddr(0)..<Vaddr(1 << 30)).isAll)
        #expect(TlbFlushOp.all.pages == nil)
    }

    @Test func unalignedRangePanics() async {
        await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = TlbFlushOp.range(Vaddr(0x1001)..<Vaddr(0x3000))
        } .map { #expect(stderrContains($0, "is not page aligned")) }
    }

    @Test func cpuSets() {
        var set = CpuSet()
        set.insert(0)
        set.insert(63)
        set.insert(5)
        #expect(Array(set) == [0, 5, 63])
        set.remove(5)
        #expect(set.count == 2)
        #expect(CpuSet.full(count: 64).count == 64)
        #expect(Array(CpuSet.full(count: 3)) == [0, 1, 2])
        let shared = AtomicCpuSet()
        shared.add(2)
        shared.add(7)
        shared.remove(2)
        #expect(Array(shared.load()) == [7])
        #expect(shared.contains(7) && !shared.contains(2))
    }
}

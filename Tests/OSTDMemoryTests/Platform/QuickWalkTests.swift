// The software walker's quick path (`SoftwarePageWalker.quickTranslate`) against the full rule
// (`walkAndDecide`: `X86Mmu.walk`, then `decide` in its steps) on random four-level walks: every
// outcome the quick path decides must be the full rule's, with the same translation, rights,
// dirty state and error code, and must leave the entries as they were.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory

@Suite struct QuickWalkTests {
    /// Random entries along one walk (P, W, U, A, D, PS, NX and now and then a reserved bit),
    /// random controls and accesses, 40 000 times.
    @Test func decidedOutcomesAreTheFullRules() {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: 5 * pageSize, alignment: pageSize)
        defer { memory.deallocate() }
        var random = SplitMix64(0x9e37_79b9)
        var decided = (translated: 0, notPresent: 0)
        for _ in 0..<40_000 {
            memory.initializeMemory(as: UInt8.self, repeating: 0, count: 5 * pageSize)
            let va = Vaddr(signExtend(random.next() & 0x0000_7fff_ffff_f000) | (random.next() & 0xfff))
            let controls = PagingControls(writeProtect: true, noExecute: random.next() % 4 != 0, smep: false, smap: false,
                                          page1GB: random.next() % 4 != 0, physicalAddressBits: [40, 46, 52][Int(random.next() % 3)])
            // Table `level` lives in page `4 - level` (the root in page 0); every entry of the walk
            // points at the next page.
            var offsets: [Int] = []
            for level in stride(from: 4, through: 1, by: -1) {
                var entry = UInt64(5 - level) << 12
                for bit: UInt64 in [0, 1, 2, 5, 6] where random.next() % 8 != 0 { entry |= 1 << bit }
                if random.next() % 4 == 0 { entry |= PageTableEntry.huge }
                if random.next() % 8 == 0 { entry |= PageTableEntry.noExecute }
                // A reserved bit now and then: above MAXPHYADDR (never a bit of the next table's
                // address, which must stay in the buffer), or below a huge leaf's frame address.
                let addressBits = UInt64(controls.physicalAddressBits)
                if addressBits < 52 && random.next() % 16 == 0 { entry |= 1 << (addressBits + random.next() % (52 - addressBits)) }
                if level >= 2 && entry & PageTableEntry.huge != 0 && random.next() % 8 == 0 { entry |= 1 << (13 + random.next() % 8) }
                offsets.append((4 - level) * pageSize + PagingConsts.pteIndex(va, PagingLevel(level)) * 8)
                memory.storeBytes(of: entry, toByteOffset: offsets.last!, as: UInt64.self)
            }
            func entries() -> [UInt64] { offsets.map { memory.load(fromByteOffset: $0, as: UInt64.self) } }
            let before = entries()
            let write = random.next() % 2 == 0
            // SAFETY: `memory` holds the four tables of the walk, page 0 the root, and outlives it.
            let walker = unsafe SoftwarePageWalker(root: Paddr(UInt64(0)), memoryBase: memory, controls: controls)
            let quick = walker.quickTranslate(va, write: write)
            let access = MemoryAccess(write ? .write : .read, userMode: true)
            switch quick {
            case .undecided:
                continue
            case .notPresent:
                decided.notPresent += 1
                #expect(entries() == before)
                var fault = PageFaultErrorCode()
                #expect(walker.walkAndDecide(va, access, fault: &fault) == nil)
                #expect(fault == X86Mmu.errorCode(access, controls: controls))
            case .translated(let translation):
                decided.translated += 1
                #expect(entries() == before)
                var fault = PageFaultErrorCode()
                let full = walker.walkAndDecide(va, access, fault: &fault)
                #expect(full?.base == translation.base && full?.level == translation.level)
                #expect(full?.rights == translation.rights && full?.dirty == translation.dirty)
                #expect(entries() == before, "the full rule had A or D to set, which the quick path skipped")
            }
        }
        // Both outcomes are exercised, not only the fall-back.
        #expect(decided.translated > 100 && decided.notPresent > 1_000)
    }
}

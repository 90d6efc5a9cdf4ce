// The simulated platform's MMU: its page walker starts at CR3 and reads raw entries, knowing
// nothing of the page-table layer, so it is checked against the page table's own lock-free walk
// (`PageTable.translate`) on random tables of 4 KiB, 2 MiB and 1 GiB leaves with random rights,
// and against the TLB it fills. Also: `withUserAccess` refuses a root that is not in CR3.

@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost
import Testing

struct SimulatedMmuTests {
    /// What a user-mode access may do at `va`, by the page table's software walk.
    func expected(_ space: VmSpace, _ va: Vaddr, write: Bool) -> UserTranslation? {
        // A leaf without `R` has P clear: the hardware finds it not present.
        guard let (leaf, offset) = space.pageTable.translate(va), leaf.property.flags.contains(.r),
              leaf.property.privilegedFlags.contains(.user),
              !write || leaf.property.flags.contains(.w) else { return nil }
        return UserTranslation(paddr: leaf.paddr + offset, bytesLeftInPage: leaf.size - offset)
    }

    /// A space with random leaves in the first 4 GiB: for each 1 GiB, a 1 GiB leaf, 2 MiB leaves,
    /// 4 KiB leaves or nothing, with random rights and the USER bit most of the time.
    func randomSpace(_ random: inout SplitMix64, _ machine: Machine) throws -> VmSpace {
        let space = try VmSpace(machine: machine)
        for gig in 0..<4 {
            let start = Vaddr(UInt64(gig) << 30)
            var cursor = try space.cursorMut(start..<(start + (1 << 30)))
            func property(_ random: inout SplitMix64) -> PageProperty {
                PageProperty(flags: random.pick([.r, .rw, .rx, []]), cache: .writeback,
                             privilegedFlags: random.chance(80) ? .user : [])
            }
            // SAFETY (every untracked item below): the space is only translated, never accessed,
            // so no one reads or writes the physical memory these items name.
            switch random.below(4) {
            case 0:
                cursor.map(unsafe MappedItem(untracked: Paddr(UInt64(random.below(4)) << 30), level: 3, property: property(&random)))
            case 1:
                for i in 0..<8 where random.chance(60) {
                    try cursor.jump(start + i << 21)
                    cursor.map(unsafe MappedItem(untracked: Paddr(UInt64(random.below(8)) << 21), level: 2, property: property(&random)))
                }
            case 2:
                for i in 0..<64 where random.chance(50) {
                    try cursor.jump(start + i << 12)
                    cursor.map(unsafe MappedItem(untracked: Paddr(UInt64(random.below(4096)) << 12), level: 1, property: property(&random)))
                }
            default:
                break
            }
        }
        return space
    }

    @Test(arguments: 0..<8) func walkerAgreesWithThePageTable(seed: Int) throws {
        var random = SplitMix64(seed)
        let machine = makeMachine(memory: 32 << 20)
        let space = try randomSpace(&random, machine)
        space.activate(on: 0)
        for _ in 0..<2000 {
            let gig = UInt64(random.below(4)) << 30
            let va = Vaddr(gig | UInt64(random.chance(50) ? random.below(1 << 18) : random.below(1 << 30)))
            let write = random.chance(50)
            let expectation = expected(space, va, write: write)
            // Twice: the first may walk and fill the TLB, the second may hit it.
            for _ in 0..<2 {
                let got = machine.context.platform.withUserAccess(on: 0, root: space.rootPaddr) { mmu in
                    mmu.translate(va, write: write)
                }
                #expect(got == .some(expectation), "seed \(seed), \(va) write \(write)")
            }
        }
    }

    /// `continuation`, the next page of a run, answers exactly as `translate` compared with the
    /// expected address, TLB included: two machines built from one seed see the same questions,
    /// one asked through `continuation` (the TLB's quick hit), the other through `translate`;
    /// answers, TLB statistics and TLB contents must be equal after each.
    @Test(arguments: 0..<4) func continuationIsTranslateComparedWithTheAddress(seed: Int) throws {
        var randoms = (SplitMix64(seed), SplitMix64(seed))
        let machines = (makeMachine(memory: 32 << 20), makeMachine(memory: 32 << 20))
        let spaces = (try randomSpace(&randoms.0, machines.0), try randomSpace(&randoms.1, machines.1))
        spaces.0.activate(on: 0)
        spaces.1.activate(on: 0)
        var random = SplitMix64(seed &+ 1000)
        for _ in 0..<3000 {
            let gig = UInt64(random.below(4)) << 30
            let va = Vaddr(gig | UInt64(random.chance(70) ? random.below(1 << 18) : random.below(1 << 30)) & ~0xfff)
            let write = random.chance(50)
            // The address a run would expect there: right, one page off, or anywhere.
            var paddr = expected(spaces.0, va, write: false)?.paddr ?? Paddr(UInt64(random.below(1 << 20)) << 12)
            if random.chance(20) { paddr = paddr + pageSize }
            let quick = machines.0.context.platform.withUserAccess(on: 0, root: spaces.0.rootPaddr) { mmu in
                mmu.continuation(va, at: paddr, write: write)
            }
            let full = machines.1.context.platform.withUserAccess(on: 0, root: spaces.1.rootPaddr) { mmu -> Int? in
                guard let next = mmu.translate(va, write: write), next.paddr == paddr else { return nil }
                return next.bytesLeftInPage
            }
            #expect(quick == full, "seed \(seed), \(va) at \(paddr) write \(write)")
            #expect(machines.0.tlbStatistics(cpu: 0) == machines.1.tlbStatistics(cpu: 0))
            #expect(machines.0.tlbEntries(cpu: 0) == machines.1.tlbEntries(cpu: 0))
        }
        // The quick hit was taken, not only the fall-back.
        #expect(machines.0.tlbStatistics(cpu: 0).hits > 100)
    }

    @Test func userAccessNeedsTheRootInCr3() throws {
        let machine = makeMachine()
        let space = try VmSpace(machine: machine)
        let other = try VmSpace(machine: machine)
        space.activate(on: 0)
        let ran = machine.context.platform.withUserAccess(on: 0, root: other.rootPaddr) { _ in true }
        #expect(ran == nil)
        #expect(machine.context.platform.withUserAccess(on: 0, root: space.rootPaddr) { _ in true } == true)
    }
}

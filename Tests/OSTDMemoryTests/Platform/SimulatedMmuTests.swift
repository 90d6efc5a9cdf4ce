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

    /// Two machines with a space each, built by `build` from the same seed and active on CPU 0.
    func twins(_ seed: Int, _ build: (inout SplitMix64, Machine) throws -> VmSpace) throws -> ((Machine, Machine), (VmSpace, VmSpace)) {
        var randoms = (SplitMix64(seed), SplitMix64(seed))
        let machines = (makeMachine(memory: 32 << 20), makeMachine(memory: 32 << 20))
        let spaces = (try build(&randoms.0, machines.0), try build(&randoms.1, machines.1))
        spaces.0.activate(on: 0)
        spaces.1.activate(on: 0)
        return (machines, spaces)
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
        let (machines, spaces) = try twins(seed, randomSpace)
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

    /// A space for runs: 512 pages from 4 MiB, mapped in stretches of physically consecutive
    /// frames with random rights, broken now and then by a gap, a jump elsewhere or a page the
    /// user may not touch; and a 2 MiB leaf at 8 MiB.
    func runSpace(_ random: inout SplitMix64, _ machine: Machine) throws -> VmSpace {
        let space = try VmSpace(machine: machine)
        var cursor = try space.cursorMut(Vaddr(0x40_0000)..<Vaddr(0xa0_0000))
        var paddr = Paddr(UInt64(random.below(1024)) << 12)
        var flags: PageFlags = .rw
        for page in 0..<512 {
            if random.chance(8) { paddr = Paddr(UInt64(random.below(1024)) << 12) }
            if random.chance(5) { flags = random.pick([.r, .rw, .rw, []]) }
            let user: PrivilegedPageFlags = random.chance(97) ? .user : []
            if random.chance(95) {
                try cursor.jump(Vaddr(0x40_0000 + UInt64(page) << 12))
                // SAFETY: the space is only translated, never accessed.
                cursor.map(unsafe MappedItem(untracked: paddr, level: 1,
                                             property: PageProperty(flags: flags, cache: .writeback, privilegedFlags: user)))
            }
            paddr = paddr + pageSize
        }
        try cursor.jump(Vaddr(0x80_0000))
        // SAFETY: as above.
        cursor.map(unsafe MappedItem(untracked: Paddr(UInt64(0x20_0000)), level: 2,
                                     property: PageProperty(flags: .rw, cache: .writeback, privilegedFlags: .user)))
        return space
    }

    /// `translateRun`, which answers from the runs the TLB remembers, is exactly the page-by-page
    /// lookup it stands for: two machines built from one seed are asked the same runs (copies of
    /// random start, length and access, run after run), one through `translateRun`, the other
    /// page by page (`translateRunPageByPage`), with single-page accesses and page flushes in
    /// between that change the entries; answers, error codes, TLB statistics and contents must be
    /// equal after each step.
    @Test(arguments: 0..<4) func translateRunIsPageByPage(seed: Int) throws {
        let (machines, spaces) = try twins(seed, runSpace)
        var random = SplitMix64(seed &+ 2000)
        var remembered = 0
        // Buffers copied again and again, as a program's are (one in the 2 MiB page, where one
        // entry answers for many pages); other copies go anywhere.
        let buffers = (0..<6).map { _ in
            (Vaddr(0x40_0000 + UInt64(random.below(0x4_0000))), 1 + random.below(random.chance(50) ? 0x1_0000 : 0x4_0000))
        } + [(Vaddr(0x80_0000 + UInt64(random.below(0x10_0000))), 1 + random.below(0x4_0000))]
        for step in 0..<4000 {
            let buffer = random.chance(80) ? random.pick(buffers) : nil
            let va = buffer?.0 ?? Vaddr(0x40_0000 + UInt64(random.below(random.chance(90) ? 0x4_0000 : 0x60_0000)))
            let write = random.chance(50)
            switch random.below(32) {
            case 0:
                // A flush of one page (the run holding it, if any, is forgotten).
                machines.0.context.platform.flushTlb([.single(va)], all: false, on: 0)
                machines.1.context.platform.flushTlb([.single(va)], all: false, on: 0)
            case 1:
                // A single-page access, which may fill or invalidate an entry.
                _ = machines.0.context.platform.withUserAccess(on: 0, root: spaces.0.rootPaddr) { $0.translate(va, write: write) }
                _ = machines.1.context.platform.withUserAccess(on: 0, root: spaces.1.rootPaddr) { $0.translate(va, write: write) }
            default:
                // A copy of `count` bytes from `va`, run after run, as `transfer` goes.
                let count = buffer?.1 ?? (random.chance(50) ? 1 + random.below(0x1_0000) : 1 + random.below(0x9_0000))
                var done = 0
                while done < count {
                    var faults = (PageFaultErrorCode(), PageFaultErrorCode())
                    let at = va + done
                    let quick = machines.0.context.platform.withUserAccess(on: 0, root: spaces.0.rootPaddr) { mmu in
                        if let simulated = mmu as? SimulatedMmu {
                            // SAFETY: CPU 0's TLB, read under its MMU lock (inside the access).
                            let (runs, generation) = unsafe (simulated.tlb.pointee.runs, simulated.tlb.pointee.generation)
                            if runs.0.holds(at.rawValue, rights: TlbEntry.userBit, generation: generation)
                                || runs.1.holds(at.rawValue, rights: TlbEntry.userBit, generation: generation) {
                                remembered += 1
                            }
                        }
                        return mmu.translateRun(at, write: write, limit: count - done, fault: &faults.0)
                    }
                    let full = machines.1.context.platform.withUserAccess(on: 0, root: spaces.1.rootPaddr) { mmu in
                        mmu.translateRunPageByPage(at, write: write, limit: count - done, fault: &faults.1)
                    }
                    // Equal but for `repeatsWrite`, which only a remembered run can set.
                    var answer = quick ?? nil
                    answer?.repeatsWrite = false
                    #expect(answer == full ?? nil, "seed \(seed) step \(step): \(at) + \(count - done) write \(write)")
                    #expect(faults.0 == faults.1)
                    guard answer == full ?? nil, let run = full ?? nil else { break }
                    done += min(run.bytesLeftInPage, count - done)
                }
            }
            #expect(machines.0.tlbStatistics(cpu: 0) == machines.1.tlbStatistics(cpu: 0), "seed \(seed) step \(step)")
            #expect(machines.0.tlbEntries(cpu: 0) == machines.1.tlbEntries(cpu: 0))
        }
        // Runs the TLB remembered held many of the addresses asked, so answers came from them.
        #expect(remembered > 200, "\(remembered)")
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

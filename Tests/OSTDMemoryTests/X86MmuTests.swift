// The x86-64 MMU's rule (`X86Mmu`) and its use by the simulated MMU.
//
// The rule is checked against a small model written here from the SDM's prose (vol. 3A §4.6
// "Access rights", §4.7 "Page-fault exceptions"), exhaustively over the leaf's R, W, X, U, which
// intermediate entry drops U/S or R/W or sets NX (or is not present), the access (read, write,
// fetch at CPL 0 and 3) and the controls (WP, SMEP, SMAP, NXE). Reserved bits (tables 4-14 to
// 4-19) are checked one by one. Through a `VmSpace` and its CPU: a leaf without R faults
// not-present with error codes 4 and 6; a successful access sets A on its walk and D on the leaf
// for a write, a faulting one sets nothing, a write through a TLB entry cached clean sets D; and
// `protectNext` keeps A/D bits the MMU sets while it runs.

import Synchronization
import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDHost

/// Page-table memory for walks without a machine: four tables at 0x1000, 0x2000, 0x3000,
/// 0x4000, one per level, each with entry 0 used, so that `va` 0 walks entry 0 of each.
private struct FakeTables {
    var entries: [UInt64: UInt64] = [:]

    /// An intermediate entry pointing at `child`, with P|RW|US as OSTD writes them.
    static func table(_ child: UInt64) -> UInt64 { child | 0x7 }

    /// A walk down to a leaf at `leafLevel` whose entry is `leaf`; the intermediate entries
    /// above are `upper` (root first), each pointing at the next table.
    init(upper: [UInt64], leaf: UInt64, leafLevel: PagingLevel = 1) {
        precondition(upper.count == 4 - Int(leafLevel))
        for (i, entry) in upper.enumerated() { entries[UInt64(i + 1) << 12] = entry }
        entries[UInt64(5 - Int(leafLevel)) << 12] = leaf
    }

    func walk(_ controls: PagingControls) -> PageWalk {
        X86Mmu.walk(Vaddr(0), root: Paddr(0x1000), controls: controls) { entries[$0.rawValue] ?? 0 }
    }
}

/// The standard intermediate entries of a walk to a 4 KiB leaf.
private let upperEntries = [FakeTables.table(0x2000), FakeTables.table(0x3000), FakeTables.table(0x4000)]

/// The SDM's rule, written from its prose without `X86Mmu`: the error code of `access` through
/// entries `walk` (root first, the last one the leaf), or `nil` when it is allowed.
private func sdmModel(_ walk: [UInt64], _ access: MemoryAccess, _ controls: PagingControls) -> PageFaultErrorCode? {
    let write = access.kind == .write, fetch = access.kind == .fetch, user = access.userMode
    // §4.7: W/R is the access's kind, U/S its CPL; I/D is reported only with NXE or SMEP.
    var code: PageFaultErrorCode = []
    if write { code.insert(.write) }
    if user { code.insert(.user) }
    if fetch && (controls.noExecute || controls.smep) { code.insert(.instructionFetch) }
    // §4.7: P is 0 when the fault is a not-present page.
    for entry in walk {
        if entry & 1 == 0 { return code }
        // Table 4-14 and on: with EFER.NXE = 0, bit 63 is reserved in every entry.
        if !controls.noExecute && entry >> 63 == 1 { return code.union([.present, .reservedBit]) }
    }
    // §4.6.1: a user-mode address has U/S = 1 in every paging-structure entry; writes are
    // allowed to it from CPL 3 only with R/W = 1 in every entry; instruction fetches are not
    // allowed if XD = 1 in any entry (with NXE = 1).
    let userModeAddress = walk.allSatisfy { $0 & 4 != 0 }
    let readWrite = walk.allSatisfy { $0 & 2 != 0 }
    let executeDisabled = controls.noExecute && walk.contains { $0 >> 63 == 1 }
    var allowed = true
    if user {
        // §4.6.1 "User-mode access": only user-mode addresses; writes need R/W; fetches need no XD.
        if !userModeAddress { allowed = false }
        if write && !readWrite { allowed = false }
        if fetch && executeDisabled { allowed = false }
    } else {
        // §4.6.1 "Supervisor-mode access" (explicit, EFLAGS.AC = 0).
        if fetch {
            if userModeAddress && controls.smep { allowed = false }
            if executeDisabled { allowed = false }
        } else {
            if userModeAddress && controls.smap { allowed = false }
            if write && controls.writeProtect && !readWrite { allowed = false }
        }
    }
    return allowed ? nil : code.union(.present)
}

/// The raw entries of the walk of `va` in `space`, read from physical memory.
private func entries(_ space: VmSpace, _ va: Vaddr) -> PageWalk {
    let machine = space.machine
    return X86Mmu.walk(va, root: space.rootPaddr, controls: .standard) {
        machine.readOnlyPointer(to: $0).load(as: UInt64.self)
    }
}

/// Clears A in the intermediate entries of `va`'s walk, as OSTD's `new_pt` writes them (ours are
/// born with A, docs/differences.md), so that a test sees the walker set it.
private func clearIntermediateAccessed(_ space: VmSpace, _ va: Vaddr) {
    let walk = entries(space, va)
    for i in 0..<(walk.count - 1) {
        // SAFETY: an entry of the space's live table, read just above; nothing else runs.
        unsafe space.machine.pointer(to: walk.location(i)).storeBytes(of: walk[i] & ~PageTableEntry.accessed,
                                                                       as: UInt64.self)
    }
}

/// Whether every entry of `walk` has A, and whether the leaf has D.
private func marks(_ walk: PageWalk) -> (accessed: [Bool], dirty: Bool) {
    ((0..<walk.count).map { walk[$0] & PageTableEntry.accessed != 0 },
     walk[walk.count - 1] & PageTableEntry.dirty != 0)
}

@Suite struct X86MmuTests {
    // MARK: (a) The rule against the SDM

    /// Every combination of the leaf's R, W, X, U; an intermediate entry (or none) without U/S,
    /// one without R/W, one with NX, or one not present; every access kind at CPL 0 and 3; every
    /// setting of WP, SMEP, SMAP, NXE: `decide` gives what the SDM's prose gives.
    @Test func decideAgreesWithTheSdmOnEveryCombination() {
        // Which intermediate entry (0–2, or 3 for none) lacks U/S, lacks R/W, has NX.
        var variants: [[UInt64]] = []
        for noUser in 0..<4 {
            for noWrite in 0..<4 {
                for nx in 0..<4 {
                    var upper = upperEntries
                    if noUser < 3 { upper[noUser] &= ~PageTableEntry.user }
                    if noWrite < 3 { upper[noWrite] &= ~PageTableEntry.writable }
                    if nx < 3 { upper[nx] |= PageTableEntry.noExecute }
                    variants.append(upper)
                }
            }
        }
        for notPresent in 0..<3 {
            var upper = upperEntries
            upper[notPresent] &= ~PageTableEntry.present
            variants.append(upper)
        }
        var checked = 0, allowed = 0
        for upper in variants {
            for leafBits in 0..<16 {
                let property = PageProperty(flags: PageFlags(rawValue: UInt8(leafBits & 7)), cache: .writeback,
                                            privilegedFlags: leafBits & 8 != 0 ? .user : [])
                let leaf = PageTableEntry.page(Paddr(0x5000), level: 1, prop: property).raw
                let tables = FakeTables(upper: upper, leaf: leaf)
                for controlBits in 0..<16 {
                    let controls = PagingControls(writeProtect: controlBits & 1 != 0, noExecute: controlBits & 2 != 0,
                                                  smep: controlBits & 4 != 0, smap: controlBits & 8 != 0)
                    let walk = tables.walk(controls)
                    let read = (0..<walk.count).map { walk[$0] }
                    for kind in MemoryAccessKind.allCases {
                        for userMode in [false, true] {
                            let access = MemoryAccess(kind, userMode: userMode)
                            let expected = sdmModel(read, access, controls)
                            let got = X86Mmu.decide(walk, access, controls: controls)
                            #expect(got == expected, "\(access), leaf \(property), upper \(upper.map { String($0, radix: 16) }), controls \(controls)")
                            if expected == nil { allowed += 1 }
                            checked += 1
                        }
                    }
                }
            }
        }
        #expect(checked == 67 * 16 * 16 * 6)
        #expect(allowed > 0 && allowed < checked)
    }

    // MARK: (b) Reserved bits

    /// The error code of a reserved-bit fault: P and RSVD, plus the access's bits.
    private func reservedFault(_ access: MemoryAccess, _ controls: PagingControls) -> PageFaultErrorCode {
        X86Mmu.errorCode(access, controls: controls).union([.present, .reservedBit])
    }

    /// Decides every access on `tables` under `controls` and expects a reserved-bit fault.
    private func expectReserved(_ tables: FakeTables, under controls: PagingControls = .standard, _ what: String,
                        sourceLocation: SourceLocation = #_sourceLocation) {
        let walk = tables.walk(controls)
        #expect(walk.end == .reservedBit, "\(what)", sourceLocation: sourceLocation)
        for kind in MemoryAccessKind.allCases {
            for userMode in [false, true] {
                let access = MemoryAccess(kind, userMode: userMode)
                #expect(X86Mmu.decide(walk, access, controls: controls) == reservedFault(access, controls),
                        "\(what), \(access)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test func reservedBitsFault() {
        let userRW = PageProperty.user(.rwx)
        // PS at level 4.
        expectReserved(FakeTables(upper: upperEntries, leaf: 0).replacingRoot(PageTableEntry.huge | 0x7), "PS at level 4")
        // PS at level 3: reserved without Page1GB, a 1 GiB leaf with it.
        let gig = FakeTables(upper: [FakeTables.table(0x2000)],
                             leaf: PageTableEntry.page(Paddr(1 << 30), level: 3, prop: userRW).raw, leafLevel: 3)
        expectReserved(gig, under: PagingControls(page1GB: false), "PS at level 3 without Page1GB")
        #expect(gig.walk(.standard).end == .leaf(level: 3))
        #expect(gig.walk(.standard).paddr(of: Vaddr(0x1234)) == Paddr((1 << 30) + 0x1234))
        // Bits 13–20 of a 2 MiB leaf; bit 12 (PAT) and the address bits are not reserved.
        let twoMeg = PageTableEntry.page(Paddr(1 << 21), level: 2, prop: userRW).raw
        let twoMegUpper = [FakeTables.table(0x2000), FakeTables.table(0x3000)]
        for bit in 13...20 {
            expectReserved(FakeTables(upper: twoMegUpper, leaf: twoMeg | 1 << UInt64(bit), leafLevel: 2), "bit \(bit) of a 2 MiB leaf")
        }
        for bit in [12, 21] {
            #expect(FakeTables(upper: twoMegUpper, leaf: twoMeg | 1 << UInt64(bit), leafLevel: 2).walk(.standard).end == .leaf(level: 2))
        }
        // Bits 13–29 of a 1 GiB leaf.
        let oneGig = PageTableEntry.page(Paddr(1 << 30), level: 3, prop: userRW).raw
        for bit in 13...29 {
            expectReserved(FakeTables(upper: [FakeTables.table(0x2000)], leaf: oneGig | 1 << UInt64(bit), leafLevel: 3),
                           "bit \(bit) of a 1 GiB leaf")
        }
        for bit in [12, 30] {
            #expect(FakeTables(upper: [FakeTables.table(0x2000)], leaf: oneGig | 1 << UInt64(bit), leafLevel: 3)
                        .walk(.standard).end == .leaf(level: 3))
        }
        // Bit 51 with MAXPHYADDR 46, in the leaf or in an intermediate entry; bit 45 is an address bit.
        let narrow = PagingControls(physicalAddressBits: 46)
        let leaf = PageTableEntry.page(Paddr(0x5000), level: 1, prop: userRW).raw
        expectReserved(FakeTables(upper: upperEntries, leaf: leaf | 1 << 51), under: narrow, "bit 51 of a leaf, MAXPHYADDR 46")
        var upper = upperEntries
        upper[1] |= 1 << 51
        expectReserved(FakeTables(upper: upper, leaf: leaf), under: narrow, "bit 51 of a level-3 entry, MAXPHYADDR 46")
        #expect(FakeTables(upper: upperEntries, leaf: leaf | 1 << 45).walk(narrow).end == .leaf(level: 1))
        #expect(FakeTables(upper: upperEntries, leaf: leaf | 1 << 51).walk(.standard).end == .leaf(level: 1))
        // NX without NXE.
        let noNxe = PagingControls(noExecute: false)
        let noExec = PageTableEntry.page(Paddr(0x5000), level: 1, prop: .user(.rw)).raw
        expectReserved(FakeTables(upper: upperEntries, leaf: noExec), under: noNxe, "NX without NXE")
        #expect(FakeTables(upper: upperEntries, leaf: noExec).walk(.standard).end == .leaf(level: 1))
        // The codes themselves, for a few accesses: a user write 0xf, a user fetch without NXE
        // or SMEP 0xd (no I/D), a supervisor fetch with SMEP 0x19.
        #expect(reservedFault(MemoryAccess(.write, userMode: true), .standard).rawValue == 0xf)
        #expect(reservedFault(MemoryAccess(.fetch, userMode: true), noNxe).rawValue == 0xd)
        #expect(reservedFault(MemoryAccess(.fetch, userMode: false), PagingControls(noExecute: false, smep: true)).rawValue == 0x19)
    }

    /// The reserved bits the controls keep (`X86Mmu.commonReservedBits`) follow every change made through
    /// their setters, in any order: they are those of controls made with the same values, and so
    /// is equality. MAXPHYADDR 46 reserves bits 46–51; no NXE reserves bit 63 too.
    @Test func controlsKeepTheirReservedBitsThroughEveryChange() {
        #expect(X86Mmu.commonReservedBits(.standard) == 0)
        #expect(X86Mmu.commonReservedBits(PagingControls(noExecute: false, physicalAddressBits: 46))
                    == 0x000f_c000_0000_0000 | PageTableEntry.noExecute)
        var random = SplitMix64(0x5eed_c0de)
        var controls = PagingControls.standard
        for _ in 0..<2000 {
            switch random.next() % 6 {
            case 0: controls.writeProtect.toggle()
            case 1: controls.noExecute.toggle()
            case 2: controls.smep.toggle()
            case 3: controls.smap.toggle()
            case 4: controls.page1GB.toggle()
            default: controls.physicalAddressBits = 36 + Int(random.next() % 17)
            }
            let fresh = PagingControls(writeProtect: controls.writeProtect, noExecute: controls.noExecute,
                                       smep: controls.smep, smap: controls.smap, page1GB: controls.page1GB,
                                       physicalAddressBits: controls.physicalAddressBits)
            #expect(X86Mmu.commonReservedBits(controls) == X86Mmu.commonReservedBits(fresh))
            #expect(controls == fresh)
            let addressBits = UInt64(controls.physicalAddressBits)
            let expected: UInt64 = (addressBits == 52 ? 0 : ((1 << 52) - (1 << addressBits))) | (controls.noExecute ? 0 : 1 << 63)
            #expect(X86Mmu.commonReservedBits(controls) == expected)
        }
    }

    /// A walk stops at the first non-present or reserved entry and sets nothing: `accessedDirty`
    /// is only asked of complete walks, and a fault through the simulated MMU leaves memory as it
    /// was (`aFaultingAccessSetsNothing`).
    @Test func aWalkStopsWhereTheHardwareStops() {
        var upper = upperEntries
        upper[1] = FakeTables.table(0x3000) & ~PageTableEntry.present
        let walk = FakeTables(upper: upper, leaf: 0).walk(.standard)
        #expect(walk.count == 2 && walk.end == .notPresent && walk.leafLevel == nil && walk.paddr(of: Vaddr(0)) == nil)
        #expect(X86Mmu.decide(walk, MemoryAccess(.read, userMode: true), controls: .standard)?.rawValue == 0x4)
        #expect(X86Mmu.decide(walk, MemoryAccess(.write, userMode: true), controls: .standard)?.rawValue == 0x6)
    }

    // MARK: (c) A leaf without R

    /// `.user([])` has P clear: the simulated MMU faults not-present, error code 4 for a read and
    /// 6 for a write; `readVal` fails and the handler is told the same code.
    @Test func aLeafWithoutReadFaultsNotPresent() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [PageProperty.user([])])
        for (write, code) in [(false, 0x4 as UInt64), (true, 0x6)] {
            let outcome = machine.context.platform.withUserAccess(on: 0, root: space.rootPaddr) { mmu in
                var fault = PageFaultErrorCode()
                let translation = mmu.translate(base, write: write, fault: &fault)
                return (translation, fault)
            }
            #expect(outcome?.0 == nil)
            #expect(outcome?.1.rawValue == code, "write \(write)")
        }
        let seen = Mutex<[PageFaultInfo]>([])
        space.pageFaultHandler = { _, fault in
            seen.withLock { $0.append(fault) }
            return false
        }
        #expect(throws: OSTDError.pageFault(address: base + 8, copied: 0)) {
            _ = try space.withReader(at: base + 8, count: 8) { try $0.readVal(UInt64.self) }
        }
        #expect(throws: OSTDError.pageFault(address: base, copied: 0)) {
            try space.withWriter(at: base, count: 8) { try $0.writeVal(UInt64(1)) }
        }
        #expect(seen.withLock { $0 } == [PageFaultInfo(address: base + 8, isWrite: false, cpu: 0, errorCode: .user),
                                         PageFaultInfo(address: base, isWrite: true, cpu: 0, errorCode: [.user, .write])])
        #expect(seen.withLock { $0.map(\.errorCode.rawValue) } == [0x4, 0x6])
    }

    // MARK: (d) Accessed and dirty bits

    /// A user read sets A in the leaf and every entry above it, and no D; a write then sets D.
    /// `query` reports them. (Intermediate entries are born with A; cleared here, as OSTD's
    /// `new_pt` writes them, the walker sets it.)
    @Test func accessesSetAccessedAndDirty() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [userRW])
        #expect(marks(entries(space, base)).accessed == [true, true, true, false])
        clearIntermediateAccessed(space, base)
        #expect(marks(entries(space, base)).accessed == [false, false, false, false])
        #expect(try space.withReader(at: base, count: 8) { try $0.readVal(UInt64.self) } == 0)
        #expect(marks(entries(space, base)).accessed == [true, true, true, true])
        #expect(marks(entries(space, base)).dirty == false)
        var cursor = try space.cursor(pages(base, 1))
        #expect(try cursor.query().item?.property.flags == [.rw, .accessed])
        _ = consume cursor

        try space.withWriter(at: base, count: 8) { try $0.writeVal(UInt64(7)) }
        #expect(marks(entries(space, base)).accessed == [true, true, true, true])
        #expect(marks(entries(space, base)).dirty == true)
        var again = try space.cursor(pages(base, 1))
        #expect(try again.query().item?.property.flags == [.rw, .accessed, .dirty])
    }

    /// A faulting access sets nothing: neither a write to a read-only page nor an access through
    /// a not-present leaf marks any entry of its walk.
    @Test func aFaultingAccessSetsNothing() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [PageProperty.user(.r), PageProperty.user([])])
        clearIntermediateAccessed(space, base)
        #expect(throws: OSTDError.pageFault(address: base, copied: 0)) {
            try space.withWriter(at: base, count: 8) { try $0.writeVal(UInt64(1)) }
        }
        #expect(marks(entries(space, base)).accessed == [false, false, false, false])
        #expect(marks(entries(space, base)).dirty == false)
        #expect(throws: OSTDError.pageFault(address: base + pageSize, copied: 0)) {
            _ = try space.withReader(at: base + pageSize, count: 8) { try $0.readVal(UInt64.self) }
        }
        #expect(marks(entries(space, base + pageSize)).accessed == [false, false, false, false])
    }

    /// A read caches the translation clean; a write through that TLB entry walks again and sets
    /// D, as the hardware does; later writes hit the entry, now cached dirty.
    @Test func aWriteThroughACleanTlbEntrySetsDirty() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [userRW])
        _ = try space.withReader(at: base, count: 8) { try $0.readVal(UInt64.self) }
        #expect(machine.tlbEntries(cpu: 0).map(\.dirty) == [false])
        #expect(marks(entries(space, base)).dirty == false)

        let before = machine.tlbStatistics(cpu: 0)
        try space.withWriter(at: base, count: 8) { try $0.writeVal(UInt64(1)) }
        #expect(marks(entries(space, base)).dirty == true)
        #expect(machine.tlbEntries(cpu: 0).map(\.dirty) == [true])
        #expect(machine.tlbStatistics(cpu: 0).misses == before.misses)   // a hit, then a walk

        try space.withWriter(at: base + 8, count: 8) { try $0.writeVal(UInt64(2)) }
        #expect(machine.tlbStatistics(cpu: 0).hits == before.hits + 2)
    }

    // MARK: (e) protectNext keeps A/D

    /// The MMU sets D (and A) in the leaf while `protectNext`'s op runs, after the cursor read the
    /// entry: the entry written keeps them, with the op's change (W removed).
    @Test func protectKeepsDirtyBitsSetWhileItRuns() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [userRW])
        let leafLocation = entries(space, base).location(3)
        var cursor = try space.cursorMut(pages(base, 1))
        let range = cursor.protectNext(pageSize, property: { property in
            #expect(!property.flags.contains(.dirty))
            property.flags.remove(.w)
            // SAFETY: the leaf's entry lies in a page-table node of this live machine; it is
            // accessed atomically, as the MMU does.
            let entry = machine.pointer(to: leafLocation, count: 8).assumingMemoryBound(to: Atomic<UInt64>.self)
            entry.pointee.bitwiseOr(PageTableEntry.accessed | PageTableEntry.dirty, ordering: .relaxed)
        })
        #expect(range == pages(base, 1))
        _ = consume cursor
        let leaf = PageTableEntry(raw: entries(space, base)[3])
        #expect(leaf.property.flags == [.r, .accessed, .dirty])
        #expect(leaf.property.privilegedFlags == .user)
    }

    /// What `op` does to A/D is written: it sees them as the entry holds them and may clear them.
    @Test func protectWritesTheAccessedDirtyBitsTheOpLeaves() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [userRW])
        try space.withWriter(at: base, count: 8) { try $0.writeVal(UInt64(1)) }
        var cursor = try space.cursorMut(pages(base, 1))
        _ = cursor.protectNext(pageSize, property: { property in
            #expect(property.flags == [.rw, .accessed, .dirty])
            property.flags.remove([.accessed, .dirty])
        })
        _ = consume cursor
        #expect(PageTableEntry(raw: entries(space, base)[3]).property.flags == .rw)
    }

    // MARK: Paging controls per CPU

    /// A CPU's controls are its own and decide its accesses: with NXE off, a leaf with NX (every
    /// mapping without `X`) has a reserved bit, so CPU 1 faults with P|RSVD|U while CPU 0 reads.
    @Test func pagingControlsArePerCpu() throws {
        let machine = makeMachine(cpus: 2)
        let space = try makeSpace(machine, [userRW])
        machine.withCpu(1) { space.activate(on: 1) }
        machine.setPagingControls(PagingControls(noExecute: false), cpu: 1)
        #expect(machine.pagingControls(cpu: 1) == PagingControls(noExecute: false))
        #expect(machine.pagingControls(cpu: 0) == .standard)
        let seen = Mutex<[PageFaultInfo]>([])
        space.pageFaultHandler = { _, fault in
            seen.withLock { $0.append(fault) }
            return false
        }
        let error = machine.withCpu(1) { () -> (any Error)? in
            do {
                _ = try space.withReader(at: base, count: 8) { try $0.readVal(UInt64.self) }
                return nil
            } catch {
                return error
            }
        }
        #expect(error as? OSTDError == .pageFault(address: base, copied: 0))
        #expect(seen.withLock { $0.map(\.errorCode) } == [[.present, .reservedBit, .user]])
        let value = try machine.withCpu(0) { try space.withReader(at: base, count: 8) { try $0.readVal(UInt64.self) } }
        #expect(value == 0)
    }
}

extension FakeTables {
    /// These tables with the root's entry replaced by `entry`.
    func replacingRoot(_ entry: UInt64) -> FakeTables {
        var copy = self
        copy.entries[0x1000] = entry
        return copy
    }
}

// Every specification predicate that the suite only ever saw holding is shown returning false on
// a concrete bad state (issue 11, point 5): `VmSpaceOwner.inv`, `Mapping.inv`, `PageTableView.inv`,
// `structuralViolations`, `slotOwnersAgreeExcept`, `MetaRegionOwners.inv` (its index and slot
// clauses), `MetaSlotOwner.inv`, `paddrRangeNotMapped` and `accountingViolations`. A predicate
// replaced by `return true` fails here.

@_spi(OSTDInternals) @testable import OSTDMemory
@testable import OSTDSpec
import OSTDHost
import Testing

struct PredicateFailureTests {
    func owner(_ id: UInt64, _ range: Range<UInt64>, _ view: VmIoMemView?) -> VmIoOwner {
        VmIoOwner(id: id, range: Vaddr(range.lowerBound)..<Vaddr(range.upperBound), isFallible: true,
                  isKernel: false, memView: view)
    }

    @Test func vmSpaceOwnerInvFailsOnEveryOverlapItForbids() {
        let reader = owner(1, 0x1000..<0x2000, .readView)
        let overlappingReader = owner(2, 0x1800..<0x2800, .readView)
        let overlappingWriter = owner(3, 0x1f00..<0x2100, .writeView)
        let otherWriter = owner(4, 0x2000..<0x3000, .writeView)
        let fine = VmSpaceOwner(readers: [reader], writers: [otherWriter], sharedReader: false, active: true)
        #expect(fine.inv())
        // A reader overlapping a writer.
        #expect(!VmSpaceOwner(readers: [reader], writers: [overlappingWriter], sharedReader: true, active: true).inv())
        // Two overlapping writers.
        #expect(!VmSpaceOwner(readers: [], writers: [overlappingWriter, otherWriter], sharedReader: true, active: true).inv())
        // Two overlapping readers without sharing; fine with it.
        #expect(!VmSpaceOwner(readers: [reader, overlappingReader], writers: [], sharedReader: false, active: true).inv())
        #expect(VmSpaceOwner(readers: [reader, overlappingReader], writers: [], sharedReader: true, active: true).inv())
    }

    @Test func mappingInvFailsWhenMisalignedOrOfTheWrongSize() {
        let good = Mapping(va: Vaddr(0x20_0000)..<Vaddr(0x40_0000), pa: Paddr(0x20_0000)..<Paddr(0x40_0000),
                           level: 2, property: .user(.rw), isTracked: true)
        #expect(good.inv())
        var misaligned = good
        misaligned.va = Vaddr(0x20_1000)..<Vaddr(0x40_1000)
        #expect(!misaligned.inv())
        var short = good
        short.pa = Paddr(0x20_0000)..<Paddr(0x20_1000)
        #expect(!short.inv())
        var tooHigh = good
        tooHigh.level = 4
        #expect(!tooHigh.inv())
    }

    @Test func pageTableViewInvFailsOnOverlappingMappings() {
        let a = Mapping(va: Vaddr(0x1000)..<Vaddr(0x2000), pa: Paddr(0x5000)..<Paddr(0x6000), level: 1,
                        property: .user(.r), isTracked: false)
        var b = a
        b.va = Vaddr(0x1000)..<Vaddr(0x2000)
        #expect(PageTableView(mappings: [a]).inv())
        #expect(!PageTableView(mappings: [a, b]).inv())
    }

    @Test func structuralViolationsReportsACorruptedNode() throws {
        let machine = makeMachine()
        let kernel = try PageTable.newKernelPageTable(machine: machine)
        let table = try kernel.createUserPageTable()
        var cursor = try table.cursorMut(Vaddr(0x40_0000)..<Vaddr(0x40_1000))
        // SAFETY: no CPU activates this table, so no TLB can reach it.
        unsafe cursor.map(MappedItem(frame: try FrameAllocOptions().allocFrame(in: machine), property: .user(.rw)))
        _ = consume cursor
        #expect(table.structuralViolations().isEmpty)
        var leafNode: Paddr? = nil
        table.forEachNode { node in if node.level == 1 { leafNode = node.paddr } }
        let node = try #require(leafNode)
        // An extra present entry that `nrChildren` does not count (an untracked user leaf, so that
        // nothing owns a reference through it), written behind the page table's back.
        // SAFETY: `node` is a level-1 node of this table; its page holds 512 eight-byte entries.
        let entry = machine.pointer(to: node).advanced(by: 7 * 8).assumingMemoryBound(to: UInt64.self)
        entry.pointee = PageTableEntry.page(Paddr(0x7000), level: 1, prop: .user(.r)).raw | PageTableEntry.avail1
        let problems = table.structuralViolations()
        entry.pointee = 0
        #expect(problems == ["node \(node): nrChildren 1 but 2 present entries"])
        #expect(table.structuralViolations().isEmpty)
    }

    @Test func slotOwnersAgreeExceptFailsWhenASecondSlotChanged() throws {
        let machine = makeMachine()
        let first = try FrameAllocOptions().allocFrame(in: machine)
        let second = try FrameAllocOptions().allocFrame(in: machine)
        let before = machine.metaRegionOwners()
        let firstClone = first.clone()
        let secondClone = second.clone()
        let after = machine.metaRegionOwners()
        #expect(!before.slotOwnersAgreeExcept(after, Int(first.paddr.rawValue >> 12)))
        _ = consume secondClone
        #expect(before.slotOwnersAgreeExcept(machine.metaRegionOwners(), Int(first.paddr.rawValue >> 12)))
        _ = consume firstClone
    }

    @Test func metaRegionOwnersInvFailsOnAMisplacedOrInconsistentSlot() {
        let machine = makeMachine()
        let owners = machine.metaRegionOwners()
        #expect(owners.inv())
        let slots = owners.slotOwners
        func with(_ i: Int, _ owner: MetaSlotOwner) -> MetaRegionOwners {
            var changed = slots
            changed[i] = owner
            return MetaRegionOwners(slotOwners: changed, frameObligations: owners.frameObligations, isExactLedger: true)
        }
        let s = slots[100]
        // The index clause: slot 100 claims to be slot 101.
        let misplaced = MetaSlotOwner(index: 101, refCount: s.refCount, typeTag: s.typeTag, inList: s.inList,
                                      slotOffset: s.slotOffset, regionSize: s.regionSize, pathsInPt: s.pathsInPt)
        #expect(!with(100, misplaced).inv())
        #expect(with(100, misplaced).firstInvViolation() == misplaced)
        // The address clause: slot 100 at slot 99's offset.
        let moved = MetaSlotOwner(index: 100, refCount: s.refCount, typeTag: s.typeTag, inList: s.inList,
                                  slotOffset: 99 * MetaSlot.size, regionSize: s.regionSize, pathsInPt: s.pathsInPt)
        #expect(!with(100, moved).inv())
    }

    @Test func metaSlotOwnerInvFailsOnEachForbiddenState() {
        func slot(_ rc: UInt64, tag: UInt64 = 0, inList: UInt64 = 0, offset: Int = 64, paths: Int = 0) -> MetaSlotOwner {
            MetaSlotOwner(index: 1, refCount: rc, typeTag: FrameMetaTag(word: tag), inList: inList,
                          slotOffset: offset, regionSize: 64 * 16, pathsInPt: paths)
        }
        let tag = UntypedMeta.typeTag.word
        #expect(slot(MetaSlot.refCountUnused).inv())
        #expect(!slot(MetaSlot.refCountUnused, inList: 3).inv())        // unused but on a free list
        #expect(!slot(MetaSlot.refCountUnused, paths: 1).inv())         // unused but mapped
        #expect(!slot(MetaSlot.refCountUnique).inv())                   // unique without metadata
        #expect(!slot(2).inv())                                         // shared without metadata
        #expect(!slot(2, tag: tag, inList: 1).inv())                     // shared on a free list
        #expect(!slot(MetaSlot.refCountMax + 1, tag: tag).inv())         // a count past MAX
        #expect(!slot(0, inList: 1).inv())                               // busy on a free list
        #expect(!slot(2, tag: tag, offset: 64 * 16).inv())               // outside the region
        #expect(!slot(2, tag: tag, offset: 65).inv())                    // not slot-aligned
        #expect(slot(2, tag: tag).inv())
    }

    @Test func mappedFramesAreNotUnmappedAndTheirPathsCount() throws {
        let machine = makeMachine()
        let kernel = try PageTable.newKernelPageTable(machine: machine)
        let table = try kernel.createUserPageTable()
        let frame = try FrameAllocOptions().allocFrame(in: machine)
        let paddr = frame.paddr
        var cursor = try table.cursorMut(Vaddr(0x40_0000)..<Vaddr(0x40_1000))
        // SAFETY: no CPU activates this table, so no TLB can reach it.
        unsafe cursor.map(MappedItem(frame: frame, property: .user(.rw)))
        _ = consume cursor
        var paths = table.pathsInPt()
        for (p, n) in kernel.pathsInPt() { paths[p, default: 0] += n }
        let owners = machine.metaRegionOwners(pathsInPt: paths)
        #expect(!owners.paddrRangeNotMapped(paddr..<(paddr + pageSize)))
        #expect(owners.accountingViolations().isEmpty)
        // Without the page table's paths, the frame's one reference is unaccounted for.
        let blind = machine.metaRegionOwners()
        #expect(blind.paddrRangeNotMapped(paddr..<(paddr + pageSize)))
        #expect(blind.accountingViolations().contains { $0.hasPrefix("frame \(paddr): reference count 1") })
    }
}

@Test func vaBoundsReportsAUserMappingPastTheUserHalfAndAKernelOneBelowIt() {
    let user = Mapping(va: Vaddr(0x7fff_ffe0_0000)..<Vaddr(0x8000_0000_0000), pa: Paddr(0)..<Paddr(0x20_0000),
                       level: 2, property: .user(.r), isTracked: false)
    #expect(Audit.vaBounds(user: PageTableView(mappings: [user]), kernel: PageTableView(mappings: [])).isEmpty)
    var past = user
    past.va = Vaddr(0x8000_0000_0000)..<Vaddr(0x8000_0020_0000)
    #expect(Audit.vaBounds(user: PageTableView(mappings: [past]), kernel: PageTableView(mappings: [])).count == 1)
    #expect(Audit.vaBounds(user: PageTableView(mappings: []), kernel: PageTableView(mappings: [user])).count == 1)
}

// First checks of the page table: map, query, take, protect, huge split, reclamation.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

@Suite struct PageTableBasicsTests {
    let rw = PageProperty.user(.rw)

    @Test func mapQueryTakeReclaims() throws {
        let machine = makeMachine()
        let table = try PageTable<UserPtConfig>(empty: machine)
        let frame = try FrameAllocOptions().allocFrame(in: machine)
        let paddr = frame.paddr
        do {
            var cursor = try table.cursorMut(Vaddr(0x1000)..<Vaddr(0x3000))
            cursor.map(MappedItem(frame: frame, property: rw))
            #expect(cursor.virtAddr == Vaddr(0x2000))
            try cursor.jump(Vaddr(0x1000))
            let (range, item) = try cursor.query()
            #expect(range == Vaddr(0x1000)..<Vaddr(0x2000))
            #expect(item?.paddr == paddr)
            #expect(item?.property == rw)
            #expect(item?.isTracked == true)
        }
        #expect(table.pageWalk(Vaddr(0x1abc))?.paddr == paddr + 0xabc)
        #expect(machine.metaSlot(of: paddr).referenceCount == 1)
        #expect(table.structuralViolations() == [])
        #expect(table.nodes().count == 4)
        do {
            var cursor = try table.cursorMut(Vaddr(0x1000)..<Vaddr(0x3000))
            guard case .mapped(let va, let item)? = cursor.takeNext(0x2000) else {
                Issue.record("nothing taken"); return
            }
            #expect(va == Vaddr(0x1000))
            #expect(item.paddr == paddr)
            let nothingLeft = isNone(cursor.takeNext(0x1000))
            #expect(nothingLeft)
        }
        #expect(table.nodes().count == 1)
        #expect(table.structuralViolations() == [])
        #expect(machine.outstandingFrames == 1)  // the root
    }

    @Test func hugeSplitOnProtect() throws {
        let machine = makeMachine(memory: 64 << 20)
        let table = try PageTable<UserPtConfig>(empty: machine)
        let segment = try FrameAllocOptions().zeroed(false).allocSegment(512, in: machine)
        let base = segment.paddr
        do {
            var cursor = try table.cursorMut(Vaddr(0)..<Vaddr(0x40_0000))
            try cursor.jump(Vaddr(0x20_0000))
            cursor.map(MappedItem(hugePage: segment, property: rw))
            #expect(table.view().mappings.count == 1)
            try cursor.jump(Vaddr(0x20_1000))
            let first = cursor.protectNext(0x2000) { $0.flags.remove(.w) }
            #expect(first == Vaddr(0x20_1000)..<Vaddr(0x20_2000))
            let second = cursor.protectNext(0x1000) { $0.flags.remove(.w) }
            #expect(second == Vaddr(0x20_2000)..<Vaddr(0x20_3000))
        }
        let view = table.view()
        #expect(view.mappings.count == 512)
        #expect(view.inv())
        #expect(view.mapping(covering: Vaddr(0x20_1000))?.property == PageProperty.user(.r))
        #expect(view.mapping(covering: Vaddr(0x20_2000))?.property == PageProperty.user(.r))
        #expect(view.mapping(covering: Vaddr(0x20_3000))?.property == rw)
        #expect(table.pageWalk(Vaddr(0x20_3004))?.paddr == base + 0x3004)
        #expect(table.structuralViolations() == [])
        do {
            var cursor = try table.cursorMut(Vaddr(0)..<Vaddr(0x40_0000))
            var taken = 0
            while let frag = cursor.takeNext(0x40_0000 - (cursor.virtAddr.rawValue > 0 ? Int(cursor.virtAddr.rawValue) : 0)) {
                _ = consume frag
                taken += 1
            }
            #expect(taken == 1)  // the split node goes as one subtree
        }
        #expect(table.nodes().count == 1)
        #expect(machine.outstandingFrames == 1)
    }

    @Test func kernelSharing() throws {
        let machine = makeMachine()
        let kernel = try PageTable.newKernelPageTable(machine: machine)
        let user = try kernel.createUserPageTable()
        #expect(kernel.nodes().count == 257)
        #expect(user.nodes().count == 1)
        #expect(user.structuralViolations() == [])
        #expect(kernel.structuralViolations() == [])
    }

    /// `rc == handles + page-table paths + segments` (vostd `accounting_inv`), with a mapped
    /// frame that also has a live handle, a huge page, and the nodes themselves.
    @Test func referenceAccounting() throws {
        let machine = makeMachine(memory: 64 << 20)
        let table = try PageTable<UserPtConfig>(empty: machine)
        let frame = try FrameAllocOptions().allocFrame(in: machine)
        let handle = frame.clone()
        let segment = try FrameAllocOptions().zeroed(false).allocSegment(512, in: machine)
        do {
            var cursor = try table.cursorMut(Vaddr(0)..<Vaddr(0x40_0000))
            cursor.map(MappedItem(frame: frame, property: rw))
            try cursor.jump(Vaddr(0x20_0000))
            cursor.map(MappedItem(hugePage: segment, property: rw))
        }
        #expect(handle.referenceCount == 2)
        let paths = table.pathsInPt()
        #expect(paths[handle.paddr] == 1)
        #expect(machine.metaRegionOwners(pathsInPt: paths).accountingViolations() == [])
        // Without the page table's share the same frames do not add up: the check bites.
        #expect(machine.metaRegionOwners().accountingViolations().count == 1 + 512 + table.nodes().count)
        #expect(machine.metaRegionOwners(pathsInPt: paths).slotOwners.allSatisfy { $0.inv() })
    }

    /// A cursor over exactly one 2 MiB slot can map a 2 MiB page there (OSTD's cursor would lock
    /// one level too low and refuse).
    @Test func hugeMapWithExactRange() throws {
        let machine = makeMachine(memory: 64 << 20)
        let table = try PageTable<UserPtConfig>(empty: machine)
        let huge = Vaddr(0x4020_0000)..<Vaddr(0x4040_0000)
        do {
            var cursor = try table.cursorMut(huge)
            #expect(cursor.lockedLevel == 2)
            let mapped = isNone(cursor.tryMap(MappedItem(untracked: Paddr(0x20_0000), level: 2, property: rw)))
            #expect(mapped)
        }
        #expect(table.pageWalk(Vaddr(0x4030_0000))?.paddr == Paddr(0x30_0000))
        #expect(table.view().mappings.map(\.level) == [2])
        do {
            var cursor = try table.cursorMut(huge)
            let taken = !isNone(cursor.takeNext(huge.upperBound - huge.lowerBound))
            #expect(taken)
        }
        #expect(table.nodes().count == 1)
    }

    /// Regression: when `takeNext` emptied a node, the cursor moved on by the parent's whole slot
    /// (to 0x200000 here) instead of to the end of what it took, so the caller's next
    /// `takeNext(end - virtAddr)` trapped.
    @Test func takeNextThatEmptiesANodeStopsAtTheTakenSlot() throws {
        let machine = makeMachine()
        let table = try PageTable<UserPtConfig>(empty: machine)
        do {
            var cursor = try table.cursorMut(Vaddr(0x1000)..<Vaddr(0x3000))
            cursor.map(MappedItem(frame: try FrameAllocOptions().allocFrame(in: machine), property: rw))
        }
        var cursor = try table.cursorMut(Vaddr(0)..<Vaddr(0x40_0000))
        let took = !isNone(cursor.takeNext(0x3000))
        #expect(took)
        #expect(cursor.virtAddr == Vaddr(0x2000))
        let nothingMore = isNone(cursor.takeNext(0x3000 - 0x2000))
        #expect(nothingMore)
        #expect(cursor.virtAddr == Vaddr(0x3000))
    }

    /// Splitting a huge page with no free frame: `tryProtectNext` and `tryTakeNext` throw
    /// `outOfMemory` and change nothing; with memory back, the same calls succeed.
    @Test func splitWithoutMemoryThrows() throws {
        let machine = makeMachine()
        let table = try PageTable<UserPtConfig>(empty: machine)
        let huge = Vaddr(0x20_0000)..<Vaddr(0x40_0000)
        var cursor = try table.cursorMut(huge)
        cursor.map(MappedItem(untracked: Paddr(0x20_0000), level: 2, property: rw))
        try cursor.jump(Vaddr(0x20_1000))
        var held: [Paddr] = []
        while let frame = try? FrameAllocOptions().zeroed(false).allocFrame(in: machine) { held.append(frame.intoRaw()) }
        #expect(throws: PageTableError.outOfMemory) { try cursor.tryProtectNext(0x1000) { $0.flags.remove(.w) } }
        try cursor.jump(Vaddr(0x20_1000))
        #expect(throws: PageTableError.outOfMemory) { _ = try cursor.tryTakeNext(0x1000) }
        #expect(table.view().mappings.map(\.level) == [2])
        for paddr in held { _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine) }
        try cursor.jump(Vaddr(0x20_1000))
        let protected = try cursor.tryProtectNext(0x1000) { $0.flags.remove(.w) }
        #expect(protected == Vaddr(0x20_1000)..<Vaddr(0x20_2000))
        #expect(table.view().mappings.count == 512)
        _ = consume cursor
        #expect(table.structuralViolations() == [])
    }
}

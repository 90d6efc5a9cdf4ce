// `VmSpace.mapPage`, the one-page map of the page-fault path: it maps as a one-page cursor does,
// refuses what the cursor refuses with the same errors, returns the frame's reference when it
// cannot map, and shows an audited space's auditor the operation like any cursor's.

@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost
import Testing

@Suite struct MapPageTests {
    private static let page = Vaddr(0x40_0000)

    @Test func mapsThePageAsACursorWould() throws {
        let machine = try Machine.host(memory: 16 << 20)
        let space = try VmSpace(machine: machine)
        let before = machine.outstandingFrames
        let frame = try FrameAllocOptions().allocFrame(in: machine)
        let paddr = frame.paddr
        try space.mapPage(frame, at: Self.page, .user(.rw))
        var cursor = try space.cursor(Self.page..<(Self.page + pageSize))
        let (range, item) = try cursor.query()
        #expect(range == Self.page..<(Self.page + pageSize))
        #expect(item?.paddr == paddr)
        #expect(item?.property == .user(.rw))
        _ = consume cursor
        // The data frame and the three nodes below the root.
        #expect(machine.outstandingFrames == before + 4)
    }

    @Test func aMappedPageIsRefusedAndTheFrameReturned() throws {
        let machine = try Machine.host(memory: 16 << 20)
        let space = try VmSpace(machine: machine)
        try space.mapPage(try FrameAllocOptions().allocFrame(in: machine), at: Self.page, .user(.rw))
        let before = machine.outstandingFrames
        #expect(throws: OSTDError.pageTable(.alreadyMapped(Self.page))) {
            try space.mapPage(try FrameAllocOptions().allocFrame(in: machine), at: Self.page, .user(.r))
        }
        #expect(machine.outstandingFrames == before)
        var cursor = try space.cursor(Self.page..<(Self.page + pageSize))
        #expect(try cursor.query().item?.property == .user(.rw))
    }

    @Test func badAddressesAreRefusedAndNothingIsLost() throws {
        let machine = try Machine.host(memory: 16 << 20)
        let space = try VmSpace(machine: machine)
        let before = machine.outstandingFrames
        let unaligned = Vaddr(0x40_0010)
        let kernel = Vaddr(0xffff_8000_0000_0000)
        #expect(throws: OSTDError.pageTable(.unalignedVaddr(unaligned))) {
            try space.mapPage(try FrameAllocOptions().allocFrame(in: machine), at: unaligned, .user(.rw))
        }
        #expect(throws: OSTDError.pageTable(.invalidVaddrRange(kernel, kernel + pageSize))) {
            try space.mapPage(try FrameAllocOptions().allocFrame(in: machine), at: kernel, .user(.rw))
        }
        #expect(throws: OSTDError.pageTable(.invalidVaddrRange(Vaddr(.max & ~0xfff), Vaddr(.max & ~0xfff)))) {
            try space.mapPage(try FrameAllocOptions().allocFrame(in: machine), at: Vaddr(.max & ~0xfff), .user(.rw))
        }
        #expect(machine.outstandingFrames == before)
    }

    /// The three nodes below the root are missing and there is memory for fewer: the allocating
    /// descent builds what it can and declines, and the general path reports
    /// `outOfMemory(frames: 1)`. The frame comes back, no node is left over, and with memory for
    /// all three the map succeeds.
    @Test func outOfMemoryForANodeIsReportedAndNothingIsLeft() throws {
        for spare in 0...3 {
            let machine = try Machine.host(memory: 16 << 20)
            let space = try VmSpace(machine: machine)
            let data = try FrameAllocOptions().allocFrame(in: machine)
            var held: [Paddr] = []
            while let frame = try? FrameAllocOptions().zeroed(false).allocFrame(in: machine) { held.append(frame.intoRaw()) }
            // SAFETY (here and below): each address is a frame whose reference `intoRaw` kept.
            for _ in 0..<spare { _ = unsafe Frame<UntypedMeta>.fromRaw(held.removeLast(), in: machine) }
            defer { for paddr in held { _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine) } }
            let before = machine.outstandingFrames
            if spare < 3 {
                var thrown: OSTDError? = nil
                do { try space.mapPage(data, at: Self.page, .user(.rw)) } catch { thrown = error }
                #expect(thrown == .outOfMemory(frames: 1), "spare \(spare)")
                machine.reclaimRetired()
                #expect(machine.outstandingFrames == before - 1, "spare \(spare): the frame is returned, no node kept")
                #expect(space.pageTable.nodes().count == 1, "spare \(spare)")
            } else {
                try space.mapPage(data, at: Self.page, .user(.rw))
                #expect(machine.outstandingFrames == before + 3)
                var cursor = try space.cursor(Self.page..<(Self.page + pageSize))
                #expect(try cursor.query().item != nil)
            }
        }
    }

    /// Every page after the first in a node goes through the fast path; the child counts it keeps
    /// must let unmapping reclaim every node again.
    @Test func aNodeFilledPageByPageIsCountedExactly() throws {
        let machine = try Machine.host(memory: 16 << 20)
        let space = try VmSpace(machine: machine)
        let before = machine.outstandingFrames
        for i in 0..<512 {
            try space.mapPage(try FrameAllocOptions().allocFrame(in: machine), at: Self.page + i * pageSize, .user(.rw))
        }
        #expect(machine.outstandingFrames == before + 512 + 3)
        var cursor = try space.cursorMut(Self.page..<(Self.page + 512 * pageSize))
        for i in 0..<512 {
            try cursor.jump(Self.page + i * pageSize)
            #expect(try cursor.query().item != nil)
        }
        try cursor.jump(Self.page)
        #expect(cursor.unmap(512 * pageSize) == 512)
        _ = consume cursor
        #expect(machine.outstandingFrames == before)
    }

    /// The handler of docs/vm-space.md ("Demand paging"), as written there.
    @Test func theDocumentedFaultHandlerServesFirstTouches() throws {
        let machine = try Machine.host(memory: 16 << 20)
        let heap = Self.page..<(Self.page + 8 * pageSize)
        let space = try VmSpace(machine: machine)
        space.pageFaultHandler = { space, fault in
            let page = Vaddr(fault.address.rawValue & ~0xfff)
            guard heap.contains(page), let frame = try? FrameAllocOptions().allocFrame(in: space.machine) else { return false }
            do {
                try space.mapPage(frame, at: page, .user(.rw))
            } catch OSTDError.pageTable(.alreadyMapped) {
                // another CPU's fault on the same page mapped it first: the access can go on
            } catch {
                return false
            }
            return true
        }
        try machine.withCpu(0) {
            space.activate(on: 0)
            try space.withWriter(at: Self.page + 0x10, count: 8) { try $0.writeVal(UInt64(0x1122_3344)) }
            let read = try space.withReader(at: Self.page + 0x10, count: 8 * pageSize - 0x10) { reader in
                try reader.readVal(UInt64.self)
            }
            #expect(read == 0x1122_3344)
            #expect(throws: OSTDError.self) {
                try space.withReader(at: heap.upperBound, count: 8) { try $0.readVal(UInt64.self) }
            }
        }
    }

    @Test func anAuditedSpaceShowsTheMapToItsAuditor() throws {
        let audited = try AuditedSpace()
        let checked = audited.auditor.operationsChecked
        try audited.space.mapPage(try FrameAllocOptions().allocFrame(in: audited.machine), at: Self.page, .user(.rw))
        #expect(audited.auditor.operationsChecked > checked)
        #expect(audited.violatedPredicates().isEmpty)
    }
}

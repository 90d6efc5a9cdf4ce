// `readVal` / `writeVal` of a value of one to eight bytes inside one page take a path of their own
// (`loadUserValue` / `storeUserValue`: one translation, one load or store, as Linux's `get_user` /
// `put_user`); a value that crosses a page still goes through the copy (`transfer`). These tests
// pin the seam: where a value stops being one access, what a store marks (the frame written, the
// entry dirty), and that a fault the handler resolves is retried on the same path. The property
// test (`UserIoTests+Property.swift`) compares both paths with a flat model at random offsets.

import Synchronization
import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDHost

extension UserIoTests {
    /// A value ending at a page's last byte is read whole even with the next page unmapped; one
    /// byte further it crosses into that page, and the read faults there, having read the first
    /// page's bytes (`copied`), and leaves the cursor where it was.
    @Test func aValueEndingAtAPageEndIsOneAccessAndOneByteMoreCrosses() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [userRW, nil])
        try poke(space, base + (pageSize - 9), Array(1...9))
        try space.withReader(at: base + (pageSize - 8), count: 8) { (reader) throws(OSTDError) in
            let value = try reader.readVal(UInt64.self)
            #expect(withUnsafeBytes(of: value) { Array($0) } == Array(2...9))
            #expect(reader.remain == 0)
        }
        try space.withReader(at: base + (pageSize - 7), count: 8) { (reader) throws(OSTDError) in
            #expect(throws: OSTDError.pageFault(address: base + pageSize, copied: 7)) { try reader.readVal(UInt64.self) }
            #expect(reader.cursor == (base + (pageSize - 7)).rawValue)
        }
        try space.withWriter(at: base + (pageSize - 3), count: 4) { (writer) throws(OSTDError) in
            #expect(throws: OSTDError.pageFault(address: base + pageSize, copied: 3)) { try writer.writeVal(UInt32(7)) }
            #expect(writer.avail == 4)
        }
    }

    /// A stored value marks its frame written (so the frame is zeroed when it is handed out
    /// again) and, through the MMU, sets the entry's D bit; a loaded one does neither.
    @Test func aStoredValueMarksItsFrameWrittenAndItsEntryDirty() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [userRW, userRW])
        let pages = try [0, 1].map { try #require(space.pageTable.pageWalk(base + $0 * pageSize)) }
        #expect(pages.allSatisfy { !machine.metaSlot(of: $0.paddr).mayBeNonZero && !$0.property.flags.contains(.dirty) })
        try space.withReader(at: base, count: 8) { (reader) throws(OSTDError) in _ = try reader.readVal(UInt64.self) }
        try space.withWriter(at: base + pageSize + 0x10, count: 2) { (writer) throws(OSTDError) in
            try writer.writeVal(UInt16(0xbeef))
        }
        let after = try [0, 1].map { try #require(space.pageTable.pageWalk(base + $0 * pageSize)) }
        #expect(!machine.metaSlot(of: after[0].paddr).mayBeNonZero && !after[0].property.flags.contains(.dirty))
        #expect(machine.metaSlot(of: after[1].paddr).mayBeNonZero && after[1].property.flags.contains(.dirty))
        #expect(try peek(space, base + pageSize + 0x10, 2) == [0xef, 0xbe])
    }

    /// A first touch through `readVal` and `writeVal`: each faults once, the handler maps the
    /// page, and the access is retried; a handler that maps nothing leaves a fault with no byte
    /// moved.
    @Test func aSmallValueFaultIsResolvedByTheHandlerAndRetried() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [nil, nil, nil])
        let faults = Mutex<[Vaddr]>([])
        space.pageFaultHandler = { space, fault in
            faults.withLock { $0.append(fault.address) }
            guard fault.address < base + 2 * pageSize else { return false }
            let page = Vaddr(fault.address.rawValue & ~UInt64(pageSize - 1))
            return (try? space.mapPage(try FrameAllocOptions().allocFrame(in: space.machine), at: page, userRW)) != nil
        }
        try space.withWriter(at: base + 0x20, count: 4) { (writer) throws(OSTDError) in try writer.writeVal(UInt32(0x0102_0304)) }
        let read = try space.withReader(at: base + pageSize + 8, count: 8) { (reader) throws(OSTDError) in
            try reader.readVal(UInt64.self)
        }
        #expect(read == 0)
        #expect(try peek(space, base + 0x20, 4) == [4, 3, 2, 1])
        let refused = try space.withReader(at: base + 2 * pageSize, count: 1) { (reader) throws(OSTDError) in
            #expect(throws: OSTDError.pageFault(address: base + 2 * pageSize, copied: 0)) { try reader.readVal(UInt8.self) }
        }
        #expect(refused != nil)
        #expect(faults.withLock { $0 } == [base + 0x20, base + pageSize + 8, base + 2 * pageSize])
        space.pageFaultHandler = nil
    }
}

// User-space I/O through 2 MiB pages and across a huge / 4 KiB boundary, and on more than one CPU:
// a handle of a space that is no longer active on its CPU fails with `notActive`, `VmIo` works on
// user handles, and copies run on a second CPU bound with `Machine.withCpu`.

import Testing
import PropertyBased
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost

extension UserIoTests {
    // MARK: Huge pages

    /// Reads and writes through a 2 MiB page, across 4 KiB boundaries inside it, across its end
    /// into a 4 KiB page, and into the unmapped page after that.
    @Test func accessesThroughHugePages() throws {
        let machine = makeMachine(memory: 32 << 20)
        let space = try VmSpace(machine: machine)
        let hugeBase = Vaddr(0x40_0000)
        #expect(hugeBase.isAligned(to: huge))
        let segment = try FrameAllocOptions().allocSegment(512, in: machine)
        let hugeFrames = segment.clone()
        let frame = try FrameAllocOptions().allocFrame(in: machine)
        let smallFrame = frame.clone()
        do {
            var cursor = try space.cursorMut(hugeBase..<(hugeBase + huge + 2 * pageSize))
            cursor.map(MappedItem(hugePage: segment, property: userRW))
            cursor.map(frame, userRW)
            try cursor.jump(hugeBase)
            let (range, item) = try cursor.query()
            #expect(range == hugeBase..<(hugeBase + huge))
            #expect(item?.level == 2)
        }
        space.activate(on: 0)

        // Inside the huge page, across several 4 KiB boundaries.
        let inner = pattern(9000, seed: 11)
        let innerOffset = 100 * pageSize - 50
        try poke(space, hugeBase + innerOffset, inner)
        #expect(try peek(space, hugeBase + innerOffset, inner.count) == inner)
        var physical = [UInt8](repeating: 0, count: inner.count)
        try hugeFrames.readSlice(at: innerOffset, into: &physical)
        #expect(physical == inner, "the huge page maps its segment in order")

        // Across the end of the huge page into the 4 KiB page after it.
        let across = pattern(300, seed: 12)
        try poke(space, hugeBase + (huge - 100), across)
        #expect(try peek(space, hugeBase + (huge - 100), 300) == across)
        var hugeTail = [UInt8](repeating: 0, count: 100)
        try hugeFrames.readSlice(at: huge - 100, into: &hugeTail)
        var smallHead = [UInt8](repeating: 0, count: 200)
        try smallFrame.readSlice(at: 0, into: &smallHead)
        #expect(hugeTail == Array(across[..<100]))
        #expect(smallHead == Array(across[100...]))

        // A value straddling the two.
        try space.withWriter(at: hugeBase + (huge - 4), count: 8) { w in try w.writeVal(UInt64(0xF0E1_D2C3_B4A5_9687)) }
        let straddling = try space.withReader(at: hugeBase + (huge - 4), count: 8) { r in try r.readVal(UInt64.self) }
        #expect(straddling == 0xF0E1_D2C3_B4A5_9687)

        // On into the unmapped page after the 4 KiB one.
        var reader = try space.createReader(hugeBase + (huge - 256), 2 * pageSize)
        let (result, bytes, _) = copyOut(&reader, count: 2 * pageSize)
        #expect(result == .failure(.pageFault(address: hugeBase + huge + pageSize, copied: 256 + pageSize)))
        #expect(Array(bytes[156..<252]) == Array(across[..<96]))
        #expect(Array(bytes[252..<256]) == [0x87, 0x96, 0xA5, 0xB4])
    }

    /// A copy from one huge page to another, with both sides crossing 4 KiB boundaries.
    @Test func copyBetweenHugePages() throws {
        let machine = makeMachine(memory: 32 << 20)
        let space = try VmSpace(machine: machine)
        let first = Vaddr(0x4000_0000)
        do {
            var cursor = try space.cursorMut(first..<(first + 2 * huge))
            cursor.map(MappedItem(hugePage: try FrameAllocOptions().allocSegment(512, in: machine), property: userRW))
            cursor.map(MappedItem(hugePage: try FrameAllocOptions().allocSegment(512, in: machine), property: userRW))
        }
        space.activate(on: 0)
        let data = pattern(3 * pageSize + 17, seed: 13)
        try poke(space, first + (huge - pageSize - 5), data)
        var reader = try space.createReader(first + (huge - pageSize - 5), data.count)
        var writer = try space.createWriter(first + 12345, data.count)
        let copied = try reader.readFallible(&writer)
        _ = consume reader
        _ = consume writer
        #expect(copied == data.count)
        #expect(try peek(space, first + 12345, data.count) == data)
    }

    // MARK: Activation and CPUs

    /// A handle is usable only while its space is active on the CPU that uses it.
    @Test func readerAfterAnotherSpaceIsActivated() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [userRW])
        let other = try makeSpace(machine, [userRW])      // now active on CPU 0
        #expect(throws: OSTDError.notActive(cpu: 0)) { _ = try space.createReader(base, 8) }

        space.activate(on: 0)
        try poke(space, base, [1, 2, 3, 4, 5, 6, 7, 8])
        var reader = try space.createReader(base, 8)
        var writer = try space.createWriter(base + 8, 8)
        other.activate(on: 0)
        #expect(!space.isActive(on: 0))
        let read = outcome { () throws(OSTDError) in try reader.readVal(UInt64.self) }
        let write = attempt { () throws(OSTDError) in try writer.writeVal(UInt64(9)) }
        let fill = outcome { () throws(OSTDError) in try writer.fillZeros(8) }
        let atomic = outcome { () throws(OSTDError) in try reader.atomicLoad() }
        let copy = outcome { () throws(OSTDError) in try reader.readFallible(&writer) }
        #expect(read == .failure(.notActive(cpu: 0)))
        #expect(write == .notActive(cpu: 0))
        #expect(fill == .failure(.notActive(cpu: 0)))
        #expect(atomic == .failure(.notActive(cpu: 0)))
        #expect(copy == .failure(.notActive(cpu: 0)))
        let (remain, avail) = (reader.remain, writer.avail)
        #expect(remain == 8)
        #expect(avail == 8)

        // Back on CPU 0, the same handles work again.
        space.activate(on: 0)
        let value = try reader.readVal(UInt64.self)
        #expect(value == 0x0807_0605_0403_0201)
        try writer.writeVal(UInt64(9))
    }

    /// A copy from a reader of the active space into a writer of another space: the writer's space
    /// is not active, so the copy must fail with `notActive` and change nothing, in either space.
    @Test
    func copyIntoAWriterOfAnInactiveSpace() throws {
        let machine = makeMachine()
        let other = try makeSpace(machine, [userRW, userRW])
        var writer = try other.createWriter(base + pageSize, 16)       // made while `other` was active
        let space = try makeSpace(machine, [userRW, userRW])            // now active on CPU 0
        let data = pattern(16, seed: 15)
        try poke(space, base, data)
        var reader = try space.createReader(base, 16)
        let result = outcome { () throws(OSTDError) in try reader.readFallible(&writer) }
        let (remain, avail) = (reader.remain, writer.avail)
        _ = consume reader
        _ = consume writer
        #expect(result == .failure(.notActive(cpu: 0)))
        #expect(remain == 16)
        #expect(avail == 16)
        #expect(try peek(space, base + pageSize, 16) == [UInt8](repeating: 0, count: 16),
                "the active space's memory at the writer's address is untouched")
        other.activate(on: 0)
        #expect(try peek(other, base + pageSize, 16) == [UInt8](repeating: 0, count: 16))
    }

    /// The reverse: a reader of an inactive space is refused with `notActive`.
    @Test func copyFromAReaderOfAnInactiveSpace() throws {
        let machine = makeMachine()
        let other = try makeSpace(machine, [userRW, userRW])
        var reader = try other.createReader(base, 16)
        let space = try makeSpace(machine, [userRW, userRW])
        var writer = try space.createWriter(base + pageSize, 16)
        let result = outcome { () throws(OSTDError) in try writer.writeFallible(&reader) }
        #expect(result == .failure(.notActive(cpu: 0)))
    }

    /// `VmIo` with user handles: a segment copied into a user writer, or filled from a user
    /// reader, stops at a fault with `pageFault` and the user handle moved by what was copied.
    @Test func vmIoWithUserHandles() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [userRW, nil])
        let segment = try FrameAllocOptions().allocSegment(2, in: machine)
        let data = pattern(2 * pageSize, seed: 16)
        try segment.writeSlice(at: 0, data)

        var writer = try space.createWriter(base + 100, 2 * pageSize - 200)
        let read = attempt { () throws(OSTDError) in try segment.read(at: 50, into: &writer) }
        let writerCursor = writer.cursor
        _ = consume writer
        #expect(read == .pageFault(address: base + pageSize, copied: pageSize - 100))
        #expect(writerCursor == (base + pageSize).rawValue)
        #expect(try peek(space, base + 100, pageSize - 100) == Array(data[50..<(pageSize - 50)]))

        // No short reads: a writer longer than what is left of the segment is refused whole.
        var long = try space.createWriter(base, pageSize)
        let refused = attempt { () throws(OSTDError) in try segment.read(at: pageSize + 1, into: &long) }
        let longAvail = long.avail
        _ = consume long
        if case .invalidArgs? = refused {} else { Issue.record("expected invalidArgs, got \(String(describing: refused))") }
        #expect(longAvail == pageSize)

        // From a user reader into the segment.
        try poke(space, base, pattern(pageSize, seed: 17))
        var reader = try space.createReader(base + (pageSize - 8), 16)
        let write = attempt { () throws(OSTDError) in try segment.write(at: 0, from: &reader) }
        let readerCursor = reader.cursor
        #expect(write == .pageFault(address: base + pageSize, copied: 8))
        #expect(readerCursor == (base + pageSize).rawValue)
        let head = try segment.readVal(at: 0, as: UInt64.self)
        let expected = Array(pattern(pageSize, seed: 17)[(pageSize - 8)...]).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        #expect(head == expected)
    }

    /// Copies on CPU 1, where the space is active; CPU 0, where it is not, refuses them.
    @Test func copiesOnASecondCpu() throws {
        let machine = makeMachine(cpus: 2)
        let space = try makeSpace(machine, [userRW, userRW, nil], cpu: 1)
        #expect(space.isActive(on: 1))
        #expect(!space.isActive(on: 0))
        #expect(throws: OSTDError.notActive(cpu: 0)) { _ = try space.createReader(base, 8) }

        let data = pattern(pageSize, seed: 14)
        let reader = try machine.withCpu(1) { () throws -> VmReader<Fallible> in
            #expect(machine.currentCpu == 1)
            try poke(space, base + 100, data)
            var source = try space.createReader(base + 100, data.count)
            var destination = try space.createWriter(base + pageSize + 200, 2 * pageSize)
            let result = outcome { () throws(OSTDError) in try source.readFallible(&destination) }
            #expect(result == .failure(.pageFault(address: base + 2 * pageSize, copied: pageSize - 200)))
            _ = consume source
            _ = consume destination
            #expect(try peek(space, base + pageSize + 200, pageSize - 200) == Array(data[..<(pageSize - 200)]))
            return try space.createReader(base + 100, 8)
        }
        #expect(space.tlbStatistics(cpu: 1).misses > 0)
        #expect(space.tlbStatistics(cpu: 0).misses == 0)
        #expect(space.tlbStatistics(cpu: 0).hits == 0)

        // The reader made on CPU 1 cannot be used on CPU 0.
        var moved = reader
        let read = outcome { () throws(OSTDError) in try moved.readVal(UInt64.self) }
        #expect(read == .failure(.notActive(cpu: 0)))
        let value = try machine.withCpu(1) { () throws(OSTDError) -> UInt64 in try moved.readVal(UInt64.self) }
        #expect(value == data.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
    }
}

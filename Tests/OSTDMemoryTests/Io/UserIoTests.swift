// User-space I/O: readers and writers of a `VmSpace`, which access memory as a user program
// would, through the CPU's TLB and with user-mode access rights.
//
// What is checked: a read needs USER, a write needs USER and W; a copy that stops at a page it
// cannot access reports `pageFault(address: first inaccessible byte, copied: n)` with both
// cursors moved by `n` (OSTD's `Err((PageFault, n))` from `__memcpy_fallible`); in a user-to-user
// copy the byte reported is the first one either side cannot access, the source's when both fail
// at the same byte (`rep movsb` reads before it writes); `readVal` / `writeVal` put the cursor
// back after a fault; `fillZeros` fills up to the fault; `limit`, `skip`, `split`, `advance` and
// `writeToRead` keep the space's registration in step with the handle; accesses through 2 MiB
// pages and across a huge / 4 KiB boundary; a handle of a space that is no longer active on the
// CPU fails with `notActive`; and copies on a second CPU, bound with `Machine.withCpu`.
//
// A property test runs random writes, reads, copies, values, fills and atomic loads at random
// offsets and lengths over a few pages (user read-write, user read-only, kernel-only, unmapped)
// and compares every outcome, cursor and byte with a flat byte-array model.

import Testing
import PropertyBased
@testable import OSTDMemory
import OSTDHost

// MARK: - Helpers

private let huge = PagingConsts.pageSize(2)

/// A user read-write page.
private let userRW = PageProperty.user(.rw)
/// A page without USER: present, but user-mode accesses fault.
private let kernelRW = PageProperty(flags: .rw, cache: .writeback, privilegedFlags: [])

/// A space with one zeroed frame per page of `layout` mapped from `start` (`nil`: left unmapped),
/// active on `cpu`.
private func makeSpace(
    _ machine: Machine, _ layout: [PageProperty?], at start: Vaddr = base, cpu: Int = 0
) throws -> VmSpace {
    let space = try VmSpace(machine: machine)
    var cursor = try space.cursorMut(start..<(start + layout.count * pageSize))
    for (page, property) in layout.enumerated() {
        guard let property else { continue }
        try cursor.jump(start + page * pageSize)
        cursor.map(try FrameAllocOptions().allocFrame(in: machine), property)
    }
    _ = consume cursor
    space.activate(on: cpu)
    return space
}

/// The error `body` threw, or `nil`.
private func attempt(_ body: () throws(OSTDError) -> Void) -> OSTDError? {
    do throws(OSTDError) { try body() } catch { return error }
    return nil
}

/// `count` bytes of a recognisable pattern.
private func pattern(_ count: Int, seed: UInt8 = 1) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed) &* 31 &+ ($0 >> 8)) | 1 }
}

/// Copies `bytes` from a kernel buffer into `writer` (`writeFallible`): the outcome and the bytes
/// the kernel reader has left.
private func copyIn(_ bytes: [UInt8], to writer: inout VmWriter<Fallible>) -> (Result<Int, OSTDError>, sourceLeft: Int) {
    bytes.withUnsafeBytes { raw in
        var source = unsafe VmReader<Infallible>(raw)
        let result = outcome { () throws(OSTDError) in try writer.writeFallible(&source) }
        return (result, source.remain)
    }
}

/// Reads `reader` into a kernel buffer of `count` bytes (`readFallible`): the outcome, the
/// buffer, and the bytes the kernel writer has left.
private func copyOut(
    _ reader: inout VmReader<Fallible>, count: Int
) -> (Result<Int, OSTDError>, bytes: [UInt8], destinationLeft: Int) {
    var buffer = [UInt8](repeating: 0, count: count)
    let (result, left) = buffer.withUnsafeMutableBytes { raw in
        var destination = unsafe VmWriter<Infallible>(raw)
        let result = outcome { () throws(OSTDError) in try reader.readFallible(&destination) }
        return (result, destination.avail)
    }
    return (result, buffer, left)
}

/// Writes `bytes` at `va` through a writer of the space (which must succeed).
private func poke(_ space: VmSpace, _ va: Vaddr, _ bytes: [UInt8]) throws {
    var writer = try space.createWriter(va, bytes.count)
    let (result, _) = copyIn(bytes, to: &writer)
    _ = try result.get()
}

/// Reads `count` bytes at `va` through a reader of the space (which must succeed).
private func peek(_ space: VmSpace, _ va: Vaddr, _ count: Int) throws -> [UInt8] {
    var reader = try space.createReader(va, count)
    let (result, bytes, _) = copyOut(&reader, count: count)
    _ = try result.get()
    return bytes
}

@Suite struct UserIoTests {
    // MARK: Access rights

    /// A page mapped without USER is present, but neither readable nor writable from user mode.
    @Test func readingNeedsUser() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [kernelRW])
        var reader = try space.createReader(base, 8)
        let read = outcome { () throws(OSTDError) in try reader.readVal(UInt64.self) }
        let (copy, _, left) = copyOut(&reader, count: 8)
        let cursor = reader.cursor
        _ = consume reader
        #expect(read == .failure(.pageFault(address: base, copied: 0)))
        #expect(copy == .failure(.pageFault(address: base, copied: 0)))
        #expect(left == 8)
        #expect(cursor == base.rawValue)

        var writer = try space.createWriter(base, 8)
        let write = attempt { () throws(OSTDError) in try writer.writeVal(UInt64(1)) }
        #expect(write == .pageFault(address: base, copied: 0))
    }

    /// A read-only user page reads, and faults on a write, also after the read cached it in the
    /// TLB.
    @Test func writingNeedsW() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [.user(.r)])
        let value = try space.withReader(at: base, count: 8) { reader in try reader.readVal(UInt64.self) }
        #expect(value == 0)

        var writer = try space.createWriter(base, 8)
        let write = attempt { () throws(OSTDError) in try writer.writeVal(UInt64(0x55)) }
        let (copy, sourceLeft) = copyIn([1, 2, 3, 4], to: &writer)
        let fill = outcome { () throws(OSTDError) in try writer.fillZeros(8) }
        let avail = writer.avail
        _ = consume writer
        #expect(write == .pageFault(address: base, copied: 0))
        #expect(copy == .failure(.pageFault(address: base, copied: 0)))
        #expect(sourceLeft == 4)
        #expect(fill == .failure(.pageFault(address: base, copied: 0)))
        #expect(avail == 8)

        let after = try space.withReader(at: base, count: 8) { reader in try reader.readVal(UInt64.self) }
        #expect(after == 0)
    }

    /// Readers and writers can be made over unmapped memory; only accesses fault. Their ranges
    /// must be non-empty and end at or below `maxUserspaceVaddr`.
    @Test func userRangesAreChecked() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [nil])
        #expect(throws: OSTDError.invalidUserRange(vaddr: base, len: 0)) { _ = try space.createReader(base, 0) }
        #expect(throws: OSTDError.invalidUserRange(vaddr: base, len: Int.max)) { _ = try space.createWriter(base, Int.max) }
        let tail = Vaddr(maxUserspaceVaddr.rawValue - 8)
        #expect(throws: OSTDError.invalidUserRange(vaddr: tail, len: 9)) { _ = try space.createReader(tail, 9) }
        var reader = try space.createReader(tail, 8)
        let read = outcome { () throws(OSTDError) in try reader.readVal(UInt64.self) }
        #expect(read == .failure(.pageFault(address: tail, copied: 0)))
    }

    // MARK: Faults in the middle of a copy

    /// A copy from kernel memory into pages whose third is unmapped stops at that page: the fault
    /// names its first byte and the bytes copied, and both cursors moved by them.
    @Test func writeStopsAtTheFirstUnmappedByte() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [userRW, userRW, nil])
        let start = base + 100
        let data = pattern(3 * pageSize - 200)
        let copied = 2 * pageSize - 100

        var writer = try space.createWriter(start, data.count)
        let (result, sourceLeft) = copyIn(data, to: &writer)
        let (cursor, avail) = (writer.cursor, writer.avail)
        let ownerRange = writer.owner?.range
        _ = consume writer
        #expect(result == .failure(.pageFault(address: base + 2 * pageSize, copied: copied)))
        #expect(sourceLeft == data.count - copied)
        #expect(cursor == (start + copied).rawValue)
        #expect(avail == data.count - copied)
        #expect(ownerRange == (start + copied)..<(start + data.count), "the registration follows the cursor")

        let written = try peek(space, start, copied)
        #expect(written == Array(data[..<copied]))
        let before = try peek(space, base, 100)
        #expect(before == [UInt8](repeating: 0, count: 100))
    }

    /// The reading side of the same: a read into kernel memory stops at the unmapped page.
    @Test func readStopsAtTheFirstUnmappedByte() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [userRW, userRW, nil, userRW])
        let data = pattern(2 * pageSize, seed: 9)
        try poke(space, base, data)

        let start = base + pageSize + 7
        var reader = try space.createReader(start, 2 * pageSize)
        let (result, bytes, destinationLeft) = copyOut(&reader, count: 2 * pageSize)
        let (cursor, remain) = (reader.cursor, reader.remain)
        #expect(result == .failure(.pageFault(address: base + 2 * pageSize, copied: pageSize - 7)))
        #expect(Array(bytes[..<(pageSize - 7)]) == Array(data[(pageSize + 7)...]))
        #expect(bytes[(pageSize - 7)...].allSatisfy { $0 == 0 })
        #expect(destinationLeft == pageSize + 7)
        #expect(cursor == (base + 2 * pageSize).rawValue)
        #expect(remain == pageSize + 7)

        // Retrying from the fault faults again at once, with nothing copied.
        let (again, _, _) = copyOut(&reader, count: 16)
        #expect(again == .failure(.pageFault(address: base + 2 * pageSize, copied: 0)))
        // Skipping the hole, the rest reads.
        reader.skip(pageSize)
        let (rest, restBytes, _) = copyOut(&reader, count: 7)
        #expect(rest == .success(7))
        #expect(restBytes == [UInt8](repeating: 0, count: 7))
    }

    /// A user-to-user copy whose destination faults before its source: the destination's address.
    @Test func userToUserCopyReportsTheDestinationWhenItFaultsFirst() throws {
        let machine = makeMachine()
        // Pages 0-2 mapped, 3 unmapped, 4 mapped, 5 unmapped.
        let space = try makeSpace(machine, [userRW, userRW, userRW, nil, userRW, nil])
        let data = pattern(3 * pageSize, seed: 3)
        try poke(space, base, data)

        let source = base                                   // faults 3 pages in
        let destination = base + 4 * pageSize + 2048        // faults 2048 bytes in
        var reader = try space.createReader(source, 4 * pageSize)
        var writer = try space.createWriter(destination, 4 * pageSize)
        let result = outcome { () throws(OSTDError) in try reader.readFallible(&writer) }
        let (readerCursor, writerCursor) = (reader.cursor, writer.cursor)
        _ = consume reader
        _ = consume writer
        #expect(result == .failure(.pageFault(address: base + 5 * pageSize, copied: 2048)))
        #expect(readerCursor == (source + 2048).rawValue)
        #expect(writerCursor == (destination + 2048).rawValue)
        #expect(try peek(space, destination, 2048) == Array(data[..<2048]))
    }

    /// A user-to-user copy whose source faults first: the source's address.
    @Test func userToUserCopyReportsTheSourceWhenItFaultsFirst() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [userRW, nil, userRW, userRW, userRW])
        let source = base + (pageSize - 300)                  // faults 300 bytes in
        let destination = base + 2 * pageSize + 10          // never faults
        try poke(space, source, pattern(300, seed: 4))
        var reader = try space.createReader(source, pageSize)
        var writer = try space.createWriter(destination, pageSize)
        let result = outcome { () throws(OSTDError) in try writer.writeFallible(&reader) }
        let (readerCursor, writerCursor) = (reader.cursor, writer.cursor)
        _ = consume reader
        _ = consume writer
        #expect(result == .failure(.pageFault(address: base + pageSize, copied: 300)))
        #expect(readerCursor == (source + 300).rawValue)
        #expect(writerCursor == (destination + 300).rawValue)
        #expect(try peek(space, destination, 300) == pattern(300, seed: 4))
    }

    /// When both sides fault at the same byte of the copy, the source is reported: the read of a
    /// byte comes before its write.
    @Test func userToUserCopyReportsTheSourceWhenBothFaultAtTheSameByte() throws {
        let machine = makeMachine()
        // Page 2 mapped, 3 unmapped; page 4 mapped, 5 unmapped.
        let space = try makeSpace(machine, [nil, nil, userRW, nil, userRW, nil])
        let data = pattern(pageSize, seed: 5)
        try poke(space, base + 2 * pageSize, data)
        var reader = try space.createReader(base + 2 * pageSize, 2 * pageSize)
        var writer = try space.createWriter(base + 4 * pageSize, 2 * pageSize)
        let result = outcome { () throws(OSTDError) in try reader.readFallible(&writer) }
        let (remain, avail) = (reader.remain, writer.avail)
        _ = consume reader
        _ = consume writer
        #expect(result == .failure(.pageFault(address: base + 3 * pageSize, copied: pageSize)))
        #expect(remain == pageSize)
        #expect(avail == pageSize)
        #expect(try peek(space, base + 4 * pageSize, pageSize) == data)

        // A read-only destination faults like an unmapped one.
        let readOnly = try makeSpace(machine, [userRW, .user(.r)])
        var r = try readOnly.createReader(base, 16)
        var w = try readOnly.createWriter(base + pageSize, 16)
        let denied = outcome { () throws(OSTDError) in try r.readFallible(&w) }
        #expect(denied == .failure(.pageFault(address: base + pageSize, copied: 0)))
    }

    // MARK: Values and fills

    /// `readVal` / `writeVal` across a page boundary into an unmapped page fault and leave the
    /// cursor where it was. The write has stored the bytes before the fault (as OSTD's
    /// `__memcpy_fallible` does); the read reports how many it had read.
    @Test func valuesAcrossIntoAnUnmappedPageRewind() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [userRW, nil])
        let start = base + (pageSize - 2)
        try poke(space, start, [0xAA, 0xBB])

        var reader = try space.createReader(start, 8)
        let read = outcome { () throws(OSTDError) in try reader.readVal(UInt64.self) }
        let (readerCursor, remain) = (reader.cursor, reader.remain)
        let readerRange = reader.owner?.range
        _ = consume reader
        #expect(read == .failure(.pageFault(address: base + pageSize, copied: 2)))
        #expect(readerCursor == start.rawValue)
        #expect(remain == 8)
        #expect(readerRange == start..<(start + 8))

        var writer = try space.createWriter(start, 16)
        let write = attempt { () throws(OSTDError) in try writer.writeVal(UInt64(0x1122_3344_5566_7788)) }
        let (writerCursor, avail) = (writer.cursor, writer.avail)
        _ = consume writer
        #expect(write == .pageFault(address: base + pageSize, copied: 2))
        #expect(writerCursor == start.rawValue)
        #expect(avail == 16)
        #expect(try peek(space, start, 2) == [0x88, 0x77])

        // Inside the mapped page the same handles work and move.
        var inside = try space.createReader(base + (pageSize - 8), 8)
        let value = try inside.readVal(UInt64.self)
        let insideRemain = inside.remain
        #expect(value == 0x7788_0000_0000_0000)
        #expect(insideRemain == 0)
    }

    /// `fillZeros` on a writer that runs into an unmapped page zeroes up to the page and reports
    /// the fault; the cursor stops there.
    @Test func fillZerosStopsAtAnUnmappedPage() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [userRW, nil])
        try poke(space, base + (pageSize - 200), [UInt8](repeating: 0xFF, count: 200))

        var writer = try space.createWriter(base + (pageSize - 96), 200)
        let fill = outcome { () throws(OSTDError) in try writer.fillZeros(500) }
        let (cursor, avail) = (writer.cursor, writer.avail)
        _ = consume writer
        #expect(fill == .failure(.pageFault(address: base + pageSize, copied: 96)))
        #expect(cursor == (base + pageSize).rawValue)
        #expect(avail == 104)
        let tail = try peek(space, base + (pageSize - 200), 200)
        #expect(tail == [UInt8](repeating: 0xFF, count: 104) + [UInt8](repeating: 0, count: 96))

        // A fill that fits returns its count; one larger than the writer is capped.
        var small = try space.createWriter(base, 16)
        let filled = try small.fillZeros(100)
        #expect(filled == 16)
    }

    // MARK: Cursor moves and the registration

    /// `limit`, `skip` and `advance` shrink what a user writer holds, and the bytes given up can
    /// be taken by others; `split` hands out the front with a registration of its own.
    @Test func limitSkipSplitAndAdvanceOnUserHandles() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [userRW])
        var writer = try space.createWriter(base, 100)

        writer.limit(1000)
        #expect(writer.owner?.range == base..<(base + 100), "a larger limit changes nothing")
        writer.limit(40)
        let availAfterLimit = writer.avail
        #expect(availAfterLimit == 40)
        #expect(writer.owner?.range == base..<(base + 40))
        // The cut-off tail is free again.
        try poke(space, base + 40, pattern(60, seed: 6))

        writer.skip(10)
        writer.advance(5)
        let cursorAfterSkips = writer.cursor
        #expect(cursorAfterSkips == (base + 15).rawValue)
        #expect(writer.owner?.range == (base + 15)..<(base + 40))
        // The skipped front is free again.
        try poke(space, base, pattern(15, seed: 7))

        var front = writer.split(10)
        let (frontCursor, frontAvail, rest) = (front.cursor, front.avail, writer.avail)
        #expect(frontCursor == (base + 15).rawValue)
        #expect(frontAvail == 10)
        #expect(rest == 15)
        let frontRange = try #require(front.owner?.range)
        #expect(frontRange == (base + 15)..<(base + 25))
        #expect(writer.owner?.range == (base + 25)..<(base + 40))
        #expect(space.ownerSnapshot.writers.count == 2)
        #expect(space.ownerSnapshot.inv())

        // Both parts are held with the write view.
        #expect(throws: OSTDError.accessConflict(requested: (base + 20)..<(base + 21), conflicting: frontRange)) {
            _ = try space.createReader(base + 20, 1)
        }
        #expect(throws: OSTDError.accessConflict(requested: (base + 30)..<(base + 31),
                                                 conflicting: (base + 25)..<(base + 40))) {
            _ = try space.createReader(base + 30, 1)
        }

        // Both write.
        let (frontResult, _) = copyIn(pattern(10, seed: 8), to: &front)
        let (restResult, _) = copyIn(pattern(15, seed: 9), to: &writer)
        #expect(frontResult == .success(10))
        #expect(restResult == .success(15))
        _ = consume front
        _ = consume writer
        #expect(space.ownerSnapshot.writers.isEmpty)

        let all = try peek(space, base, 100)
        #expect(all == pattern(15, seed: 7) + pattern(10, seed: 8) + pattern(15, seed: 9) + pattern(60, seed: 6))

        // The same on a reader.
        var reader = try space.createReader(base, 100)
        reader.limit(50)
        reader.skip(15)
        var readerFront = reader.split(10)
        let head = try readerFront.readVal(UInt64.self)
        #expect(head == UInt64(littleEndian: pattern(10, seed: 8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }))
        let (readerRest, restBytes, _) = copyOut(&reader, count: 100)
        #expect(readerRest == .success(25))
        #expect(Array(restBytes[..<25]) == pattern(15, seed: 9) + Array(pattern(60, seed: 6)[..<10]))
        let readerRange = reader.owner?.range
        #expect(readerRange == (base + 50)..<(base + 50))
    }

    /// `writeToRead` turns a writer into a reader of the bytes it has not written, with a read
    /// view; the bytes it wrote are free again.
    @Test func writeToReadThenReadBack() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [userRW])
        let initial = pattern(16, seed: 10)
        try poke(space, base, initial)

        var writer = try space.createWriter(base, 16)
        try writer.writeVal(UInt64(0x0123_4567_89AB_CDEF))
        var reader = writer.writeToRead()
        let (cursor, remain) = (reader.cursor, reader.remain)
        #expect(cursor == (base + 8).rawValue)
        #expect(remain == 8)
        #expect(reader.owner?.memView == .readView)
        #expect(space.ownerSnapshot.writers.isEmpty)
        #expect(space.ownerSnapshot.readers.count == 1)

        // The reader reads what is there; a writer over it is refused, a reader of the written
        // front is not.
        let second = try reader.readVal(UInt64.self)
        #expect(second == initial[8...].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var again = try space.createWriter(base, 8)
        try again.writeVal(UInt64(1))
        _ = consume again
        let first = try space.withReader(at: base, count: 8) { r in try r.readVal(UInt64.self) }
        #expect(first == 1)
    }

    /// A reader converted from a writer still conflicts with writers over its bytes.
    @Test func writeToReadKeepsWritersOut() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [userRW])
        let writer = try space.createWriter(base, 16)
        let reader = writer.writeToRead()
        #expect(throws: OSTDError.accessConflict(requested: base..<(base + 4), conflicting: base..<(base + 16))) {
            _ = try space.createWriter(base, 4)
        }
        space.sharedReader = true
        let other = try space.createReader(base + 4, 4)
        #expect(space.ownerSnapshot.readers.count == 2)
        _ = consume other
        _ = consume reader
        #expect(space.ownerSnapshot.readers.isEmpty)
    }

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

    // MARK: Panics

    @Test func skipPastTheEndOfAUserReaderPanics() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let machine = makeMachine()
            let space = try! makeSpace(machine, [userRW])
            var reader = try! space.createReader(base, 16)
            reader.skip(17)
        }
        #expect(stderrContains(result, "skip(17) exceeds the 16 bytes left"))
    }

    @Test func splitPastTheEndOfAUserWriterPanics() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let machine = makeMachine()
            let space = try! makeSpace(machine, [userRW])
            var writer = try! space.createWriter(base, 16)
            _ = writer.split(17)
        }
        #expect(stderrContains(result, "split at 17 exceeds the 16 bytes left"))
    }

    // MARK: Property test

    /// Random accesses over a few pages of mixed kinds, against a flat byte-array model.
    @Test func randomAccessesMatchAFlatModel() async {
        await propertyCheck(count: 100, input: Gen.int(in: 0...Int.max).array(of: 1...40), Gen.int(in: 0...Int.max)) {
            codes, seed in
            let model = UserIoModel(seed: seed)
            for (step, code) in codes.enumerated() where !model.failed {
                model.run(code, step: step)
            }
            model.finish()
        }
    }
}

// MARK: - The model of the property test


/// What a page of the window is.
private enum PageKind: CustomStringConvertible {
    case readWrite, readOnly, kernelOnly, unmapped

    var readable: Bool { self == .readWrite || self == .readOnly }
    var writable: Bool { self == .readWrite }

    var property: PageProperty? {
        switch self {
        case .readWrite: return userRW
        case .readOnly: return .user(.r)
        case .kernelOnly: return kernelRW
        case .unmapped: return nil
        }
    }

    var description: String {
        switch self {
        case .readWrite: return "rw"
        case .readOnly: return "r-"
        case .kernelOnly: return "k"
        case .unmapped: return "--"
        }
    }
}

/// A window of `pages` pages straddling a 2 MiB boundary, each backed by a frame of one segment
/// (mapped or not), and the bytes every frame should hold.
private final class UserIoModel {
    static let pages = 6
    static let total = pages * pageSize
    /// Three pages before a 2 MiB boundary: walks cross a level-1 node.
    static let start = Vaddr(0x60_0000 - 3 * UInt64(pageSize))

    let machine: Machine
    let space: VmSpace
    let kinds: [PageKind]
    let frames: Segment<UntypedMeta>
    /// The expected bytes of every frame, in window order.
    var bytes: [UInt8]
    var trace: [String] = []
    var failed = false

    init(seed: Int) {
        var random = SplitMix64(seed)
        machine = makeMachine()
        var kinds: [PageKind] = []
        for _ in 0..<UserIoModel.pages {
            let roll = random.below(10)
            kinds.append(roll < 5 ? .readWrite : roll < 7 ? .readOnly : roll < 8 ? .kernelOnly : .unmapped)
        }
        self.kinds = kinds
        bytes = random.bytes(UserIoModel.total)
        var segment = try! FrameAllocOptions().allocSegment(UserIoModel.pages, in: machine)
        frames = segment.clone()
        bytes.withUnsafeBytes { raw in try! segment.writeBytes(at: 0, from: raw) }
        space = try! VmSpace(machine: machine)
        do {
            var cursor = try! space.cursorMut(UserIoModel.start..<(UserIoModel.start + UserIoModel.total))
            for (page, kind) in kinds.enumerated() {
                let frame = segment.next()!
                guard let property = kind.property else { continue }
                try! cursor.jump(UserIoModel.start + page * pageSize)
                cursor.map(frame, property)
            }
        }
        space.activate(on: 0)
        trace.append("pages \(kinds)")
    }

    // MARK: Expectations

    func va(_ offset: Int) -> Vaddr { UserIoModel.start + offset }

    /// The first byte of `offset ..< offset + count` that `ok` rejects, as an offset.
    func firstFault(_ offset: Int, _ count: Int, _ ok: (PageKind) -> Bool) -> Int? {
        var position = offset
        while position < offset + count {
            let page = position / pageSize
            if !ok(kinds[page]) { return position }
            position = (page + 1) * pageSize
        }
        return nil
    }

    /// The copied count and the fault of an access of `count` bytes at `offset`.
    func expect(_ offset: Int, _ count: Int, write: Bool) -> (Int, OSTDError?) {
        guard let fault = firstFault(offset, count, { write ? $0.writable : $0.readable }) else { return (count, nil) }
        return (fault - offset, .pageFault(address: va(fault), copied: fault - offset))
    }

    func check(_ condition: Bool, _ what: @autoclosure () -> String) {
        guard !condition, !failed else { return }
        failed = true
        Issue.record("\(what())\ntrace:\n\(trace.joined(separator: "\n"))")
    }

    // MARK: Steps

    /// An offset, biased towards page boundaries.
    func offset(_ random: inout SplitMix64) -> Int {
        if random.chance(50) {
            let boundary = random.below(UserIoModel.pages + 1) * pageSize
            return min(max(boundary + random.below(17) - 8, 0), UserIoModel.total - 1)
        }
        return random.below(UserIoModel.total)
    }

    /// A length that fits from `offset`, from tiny to several pages.
    func length(_ random: inout SplitMix64, from offset: Int, max limit: Int = UserIoModel.total) -> Int {
        let room = min(UserIoModel.total - offset, limit)
        let wanted: Int
        switch random.below(4) {
        case 0: wanted = 1 + random.below(16)
        case 1: wanted = pageSize - 8 + random.below(17)
        default: wanted = 1 + random.below(room)
        }
        return max(1, min(wanted, room))
    }

    func run(_ code: Int, step: Int) {
        var random = SplitMix64(code)
        switch random.below(8) {
        case 0, 1: write(&random)
        case 2, 3: read(&random)
        case 4: copy(&random)
        case 5: value(&random)
        case 6: fill(&random)
        default: atomicLoad(&random)
        }
    }

    /// Kernel bytes into a user writer.
    func write(_ random: inout SplitMix64) {
        let at = offset(&random)
        let count = length(&random, from: at)
        let data = random.bytes(count)
        trace.append("write \(count) at +\(at)")
        var writer = try! space.createWriter(va(at), count)
        let (result, sourceLeft) = copyIn(data, to: &writer)
        let (copied, fault) = expect(at, count, write: true)
        check(result == (fault.map { .failure($0) } ?? .success(count)), "write result \(result)")
        check(writer.cursor == va(at + copied).rawValue && writer.avail == count - copied, "writer cursor \(writer.cursor)")
        check(sourceLeft == count - copied, "source left \(sourceLeft)")
        bytes.replaceSubrange(at..<(at + copied), with: data[..<copied])
    }

    /// A user reader into kernel bytes.
    func read(_ random: inout SplitMix64) {
        let at = offset(&random)
        let count = length(&random, from: at)
        let extra = random.below(3) == 0 ? random.below(10) : 0
        trace.append("read \(count) at +\(at) into \(count + extra)")
        var reader = try! space.createReader(va(at), count)
        let (result, data, destinationLeft) = copyOut(&reader, count: count + extra)
        let (copied, fault) = expect(at, count, write: false)
        check(result == (fault.map { .failure($0) } ?? .success(count)), "read result \(result)")
        check(reader.cursor == va(at + copied).rawValue && reader.remain == count - copied, "reader cursor \(reader.cursor)")
        check(destinationLeft == count + extra - copied, "destination left \(destinationLeft)")
        check(Array(data[..<copied]) == Array(bytes[at..<(at + copied)]), "bytes read differ")
        check(data[copied...].allSatisfy { $0 == 0 }, "bytes past the copy were written")
    }

    /// A user-to-user copy between disjoint ranges.
    func copy(_ random: inout SplitMix64) {
        let count = length(&random, from: 0, max: UserIoModel.total / 2)
        let low = random.below(UserIoModel.total - 2 * count + 1)
        let high = low + count + random.below(UserIoModel.total - low - 2 * count + 1)
        let (source, destination) = random.chance(50) ? (low, high) : (high, low)
        let viaWriter = random.chance(50)
        trace.append("copy \(count) from +\(source) to +\(destination)\(viaWriter ? " (writeFallible)" : "")")
        var reader = try! space.createReader(va(source), count)
        var writer = try! space.createWriter(va(destination), count)
        let result = outcome { () throws(OSTDError) in
            viaWriter ? try writer.writeFallible(&reader) : try reader.readFallible(&writer)
        }
        var copied = count
        var fault: OSTDError? = nil
        for i in 0..<count {
            if !kinds[(source + i) / pageSize].readable {
                fault = .pageFault(address: va(source + i), copied: i)
            } else if !kinds[(destination + i) / pageSize].writable {
                fault = .pageFault(address: va(destination + i), copied: i)
            } else {
                continue
            }
            copied = i
            break
        }
        check(result == (fault.map { .failure($0) } ?? .success(count)), "copy result \(result), expected \(String(describing: fault))")
        check(reader.cursor == va(source + copied).rawValue && writer.cursor == va(destination + copied).rawValue,
              "copy cursors \(reader.cursor), \(writer.cursor)")
        bytes.replaceSubrange(destination..<(destination + copied), with: bytes[source..<(source + copied)])
    }

    /// `readVal` or `writeVal` of 2, 4 or 8 bytes; a fault rewinds.
    func value(_ random: inout SplitMix64) {
        let size = [2, 4, 8][random.below(3)]
        let at = min(offset(&random), UserIoModel.total - size)
        let room = size + random.below(3)
        let count = min(room, UserIoModel.total - at)
        let write = random.chance(50)
        trace.append("\(write ? "writeVal" : "readVal") \(size) at +\(at)")
        let (copied, fault) = expect(at, size, write: write)
        if write {
            let data = random.bytes(size)
            var writer = try! space.createWriter(va(at), count)
            let result: Result<Void, OSTDError>
            switch size {
            case 2: result = outcome { () throws(OSTDError) in try writer.writeVal(UInt16(data[0]) | UInt16(data[1]) << 8) }
            case 4: result = outcome { () throws(OSTDError) in try writer.writeVal(data.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }) }
            default: result = outcome { () throws(OSTDError) in try writer.writeVal(data.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }) }
            }
            check(result.map { _ in 0 } == (fault.map { .failure($0) } ?? .success(0)), "writeVal result \(result)")
            let moved = fault == nil ? size : 0
            check(writer.cursor == va(at + moved).rawValue && writer.avail == count - moved, "writeVal cursor \(writer.cursor)")
            bytes.replaceSubrange(at..<(at + copied), with: data[..<copied])
        } else {
            var reader = try! space.createReader(va(at), count)
            let result: Result<[UInt8], OSTDError>
            switch size {
            case 2: result = outcome { () throws(OSTDError) in withUnsafeBytes(of: try reader.readVal(UInt16.self)) { Array($0) } }
            case 4: result = outcome { () throws(OSTDError) in withUnsafeBytes(of: try reader.readVal(UInt32.self)) { Array($0) } }
            default: result = outcome { () throws(OSTDError) in withUnsafeBytes(of: try reader.readVal(UInt64.self)) { Array($0) } }
            }
            check(result == (fault.map { .failure($0) } ?? .success(Array(bytes[at..<(at + size)]))), "readVal result \(result)")
            let moved = fault == nil ? size : 0
            check(reader.cursor == va(at + moved).rawValue && reader.remain == count - moved, "readVal cursor \(reader.cursor)")
        }
    }

    /// `fillZeros` on a user writer, sometimes asked for more than the writer has.
    func fill(_ random: inout SplitMix64) {
        let at = offset(&random)
        let count = length(&random, from: at)
        let asked = random.chance(25) ? count + random.below(100) : count - random.below(count)
        trace.append("fillZeros \(asked) on \(count) at +\(at)")
        var writer = try! space.createWriter(va(at), count)
        let result = outcome { () throws(OSTDError) in try writer.fillZeros(asked) }
        let wanted = min(asked, count)
        let (filled, fault) = expect(at, wanted, write: true)
        check(result == (fault.map { .failure($0) } ?? .success(wanted)), "fill result \(result)")
        check(writer.cursor == va(at + filled).rawValue, "fill cursor \(writer.cursor)")
        bytes.replaceSubrange(at..<(at + filled), with: repeatElement(0, count: filled))
    }

    /// `atomicLoad` at an aligned offset; it never moves.
    func atomicLoad(_ random: inout SplitMix64) {
        let at = offset(&random) & ~3
        trace.append("atomicLoad at +\(at)")
        let reader = try! space.createReader(va(at), 4)
        let result = outcome { () throws(OSTDError) in try reader.atomicLoad() }
        let expected: Result<UInt32, OSTDError> = kinds[at / pageSize].readable
            ? .success(bytes[at..<(at + 4)].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
            : .failure(.pageFault(address: va(at), copied: 0))
        check(result == expected, "atomicLoad result \(result), expected \(expected)")
        check(reader.cursor == va(at).rawValue, "atomicLoad moved")
    }

    /// Every frame, mapped or not, holds the model's bytes; no handle is left registered.
    func finish() {
        guard !failed else { return }
        var actual = [UInt8](repeating: 0, count: UserIoModel.total)
        actual.withUnsafeMutableBytes { raw in try! frames.readBytes(at: 0, into: raw) }
        if let page = (0..<UserIoModel.pages).first(where: {
            actual[($0 * pageSize)..<(($0 + 1) * pageSize)] != bytes[($0 * pageSize)..<(($0 + 1) * pageSize)]
        }) {
            check(false, "frame \(page) (\(kinds[page])) holds other bytes than the model")
        }
        let owners = space.ownerSnapshot
        check(owners.readers.isEmpty && owners.writers.isEmpty, "handles left registered")
    }
}

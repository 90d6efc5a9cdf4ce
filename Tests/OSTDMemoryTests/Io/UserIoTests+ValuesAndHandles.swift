// Values, fills and the handles' moves on user memory: `readVal` / `writeVal` put the cursor back
// after a fault, `fillZeros` fills up to the fault, `limit`, `skip`, `split`, `advance` and
// `writeToRead` keep the space's registration in step with the handle, and skipping or splitting
// past the end panics.

import Testing
import PropertyBased
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost

extension UserIoTests {
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
}

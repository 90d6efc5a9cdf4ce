// User-space copies that fault part-way: a copy into or out of a space stops at the first byte it
// cannot access and reports `pageFault(address:copied:)` with both cursors moved by the bytes
// copied; in a user-to-user copy the byte reported is the first either side cannot access, the
// source's when both fail at the same byte.

import Testing
import PropertyBased
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost

extension UserIoTests {
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
}

extension UserIoTests {
    /// A leaf mapped without `R` keeps only the leaf bit of its entry, not P, so the hardware's
    /// walker finds it not present and faults on every access; the simulated MMU used to take
    /// the software's notion of presence (P or the leaf bit) and let a read return 0.
    @Test func aLeafWithoutReadPermissionFaultsOnEveryAccess() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [userRW, PageProperty.user([])])
        let page = base + pageSize
        #expect(throws: OSTDError.pageFault(address: page, copied: 0)) {
            _ = try space.withReader(at: page, count: 8) { try $0.readVal(UInt64.self) }
        }
        #expect(throws: OSTDError.pageFault(address: page, copied: 0)) {
            try space.withWriter(at: page, count: 8) { try $0.writeVal(UInt64(1)) }
        }
        // The readable page before it still reads, up to the unreadable one.
        var reader = try space.createReader(base + (pageSize - 8), 16)
        let (result, _, _) = copyOut(&reader, count: 16)
        #expect(result == .failure(.pageFault(address: page, copied: 8)))
    }
}

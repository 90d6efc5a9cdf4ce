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
//
// This file holds the helpers the user-I/O files share and the access-rights tests; the other
// concerns are in `UserIoTests+<Concern>.swift`.

import Testing
import PropertyBased
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost

// MARK: - Helpers

/// 2 MiB, the huge-page size of the user-I/O tests.
let huge = PagingConsts.pageSize(2)

/// A user read-write page.
let userRW = PageProperty.user(.rw)
/// A page without USER: present, but user-mode accesses fault.
let kernelRW = PageProperty(flags: .rw, cache: .writeback, privilegedFlags: [])

/// A space with one zeroed frame per page of `layout` mapped from `start` (`nil`: left unmapped),
/// active on `cpu`.
func makeSpace(
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
func attempt(_ body: () throws(OSTDError) -> Void) -> OSTDError? {
    do throws(OSTDError) { try body() } catch { return error }
    return nil
}

/// `count` bytes of a recognisable pattern.
func pattern(_ count: Int, seed: UInt8 = 1) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed) &* 31 &+ ($0 >> 8)) | 1 }
}

/// Copies `bytes` from a kernel buffer into `writer` (`writeFallible`): the outcome and the bytes
/// the kernel reader has left.
func copyIn(_ bytes: [UInt8], to writer: inout VmWriter<Fallible>) -> (Result<Int, OSTDError>, sourceLeft: Int) {
    bytes.withUnsafeBytes { raw in
        var source = unsafe VmReader<Infallible>(raw)
        let result = outcome { () throws(OSTDError) in try writer.writeFallible(&source) }
        return (result, source.remain)
    }
}

/// Reads `reader` into a kernel buffer of `count` bytes (`readFallible`): the outcome, the
/// buffer, and the bytes the kernel writer has left.
func copyOut(
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
func poke(_ space: VmSpace, _ va: Vaddr, _ bytes: [UInt8]) throws {
    var writer = try space.createWriter(va, bytes.count)
    let (result, _) = copyIn(bytes, to: &writer)
    _ = try result.get()
}

/// Reads `count` bytes at `va` through a reader of the space (which must succeed).
func peek(_ space: VmSpace, _ va: Vaddr, _ count: Int) throws -> [UInt8] {
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
}

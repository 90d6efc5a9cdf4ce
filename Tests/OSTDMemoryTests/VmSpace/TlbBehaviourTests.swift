// The TLB model seen from user-space accesses: translations are cached per CPU, a stale entry is
// usable until a flush reaches the CPU, and a frame is never reused before that flush.

import OSTDHost
@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec
import Testing

/// A space with `pages` fresh pages mapped read-write at `base`, active on CPU 0.
private func mappedSpace(_ machine: Machine, pages: Int = 1) throws -> VmSpace {
    let space = try VmSpace(machine: machine)
    var cursor = try space.cursorMut(base..<(base + pages * pageSize))
    for _ in 0..<pages { cursor.map(try FrameAllocOptions().allocFrame(in: machine), .user(.rw)) }
    _ = consume cursor
    space.activate(on: 0)
    return space
}

@Test func writeThenReadThroughTheTlb() throws {
    let machine = makeMachine()
    let space = try mappedSpace(machine, pages: 2)
    try space.withWriter(at: base + 4094, count: 4) { writer in try writer.writeVal(UInt32(0xdead_beef)) }
    let value = try space.withReader(at: base + 4094, count: 4) { reader in try reader.readVal(UInt32.self) }
    #expect(value == 0xdead_beef)
    let stats = space.tlbStatistics(cpu: 0)
    #expect(stats.misses >= 2)
    #expect(stats.hits >= 2)
}

@Test func staleTranslationSurvivesUntilTheFlushIsDispatched() throws {
    let machine = makeMachine()
    let space = try mappedSpace(machine)
    try space.withWriter(at: base, count: 8) { writer in try writer.writeVal(UInt64(0x1122_3344_5566_7788)) }
    let walked = space.pageTable.pageWalk(base)
    let oldPaddr = try #require(walked.map { $0.paddr })

    var cursor = try space.cursorMut(base..<(base + pageSize))
    guard let fragment = cursor.takeNext(pageSize) else {
        Issue.record("nothing to take")
        return
    }
    #expect(space.pageTable.pageWalk(base) == nil)

    // The page table no longer maps the page, but CPU 0's TLB still does: the old frame is read.
    let stale = try space.withReader(at: base, count: 8) { reader in try reader.readVal(UInt64.self) }
    #expect(stale == 0x1122_3344_5566_7788)

    // Kept by the flusher, the old frame cannot be handed out again before the flush.
    cursor.flusher.issueTlbFlushWith(.single(base), keeping: fragment)
    var grabbed: [Paddr] = []
    while let frame = try? FrameAllocOptions().zeroed(false).allocFrame(in: machine) { grabbed.append(frame.intoRaw()) }
    #expect(!grabbed.isEmpty && !grabbed.contains(oldPaddr))
    for paddr in grabbed { _ = Frame<UntypedMeta>.fromRaw(paddr, in: machine) }
    let outstandingBefore = machine.outstandingFrames

    cursor.flusher.dispatchTlbFlush()
    #expect(machine.outstandingFrames == outstandingBefore - 1)
    #expect(throws: OSTDError.pageFault(address: base, copied: 0)) {
        _ = try space.withReader(at: base, count: 8) { reader in try reader.readVal(UInt64.self) }
    }
    _ = consume cursor
}

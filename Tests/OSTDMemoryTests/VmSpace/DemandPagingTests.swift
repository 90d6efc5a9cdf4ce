// Demand paging through a space's page-fault handler: a fault in a user-space access asks the
// handler, which may map a frame (or upgrade a mapping) and have the access resume where it
// stopped; a handler that fails, or claims success without making the access possible, ends the
// access with `pageFault` and the bytes copied before the faulting one.

import Synchronization
import Testing
import OSTDHost
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

/// The first byte of the page holding `va`.
private func pageOf(_ va: Vaddr) -> Vaddr { Vaddr(va.rawValue & ~UInt64(pageSize - 1)) }

/// What the handlers were told, in order.
private final class FaultLog: Sendable {
    private let list = Mutex<[PageFaultInfo]>([])
    func append(_ info: PageFaultInfo) { list.withLock { $0.append(info) } }
    var all: [PageFaultInfo] { list.withLock { $0 } }
    var count: Int { list.withLock { $0.count } }
}

/// A demand pager: maps a zeroed frame with `property` at the faulting page when that page is in
/// `served` and nothing maps it yet; refuses every other fault.
private func demandPager(served: Range<Vaddr>, log: FaultLog,
                         property: PageProperty = .user(.rw)) -> PageFaultHandler {
    return { space, fault in
        log.append(fault)
        let page = pageOf(fault.address)
        guard served.contains(page) else { return false }
        do {
            var cursor = try space.cursorMut(page..<(page + pageSize))
            if try cursor.query().item != nil { return false }   // a protection fault: not ours
            cursor.map(try FrameAllocOptions().allocFrame(in: space.machine), property)
            return true
        } catch {
            return false
        }
    }
}

/// A handler that records the fault and answers `answer` without changing anything.
private func doNothing(answer: Bool, log: FaultLog) -> PageFaultHandler {
    return { _, fault in
        log.append(fault)
        return answer
    }
}

/// What a user-space read of `count` bytes at `va` on the calling CPU did: the destination
/// buffer (filled with 0xAA first), the reader's cursor afterwards, and the error, if any.
private struct ReadOutcome {
    var bytes: [UInt8]
    var cursorAfter: UInt64
    var error: OSTDError?
}

private func readUser(_ space: VmSpace, _ va: Vaddr, _ count: Int) -> ReadOutcome {
    var outcome = ReadOutcome(bytes: [UInt8](repeating: 0xAA, count: count), cursorAfter: 0, error: nil)
    var cursorAfter: UInt64 = 0
    var failure: OSTDError? = nil
    outcome.bytes.withUnsafeMutableBytes { buffer in
        do throws(OSTDError) {
            var writer = unsafe VmWriter<Infallible>(buffer)
            var reader = try space.createReader(va, count)
            defer { cursorAfter = reader.cursor }
            _ = try reader.readFallible(&writer)
        } catch {
            failure = error
        }
    }
    outcome.cursorAfter = cursorAfter
    outcome.error = failure
    return outcome
}

private func writeUser(_ space: VmSpace, _ va: Vaddr, _ value: UInt64) throws(OSTDError) {
    try space.withWriter(at: va, count: 8) { (writer: inout VmWriter<Fallible>) throws(OSTDError) in
        try writer.writeVal(value)
    }
}

private func readUser64(_ space: VmSpace, _ va: Vaddr) throws(OSTDError) -> UInt64 {
    try space.withReader(at: va, count: 8) { (reader: inout VmReader<Fallible>) throws(OSTDError) in
        try reader.readVal(UInt64.self)
    }
}

/// Unmaps `range`; returns the frames it held.
@discardableResult
private func unmapAll(_ space: VmSpace, _ range: Range<Vaddr>) throws -> Int {
    var cursor = try space.cursorMut(range)
    return cursor.unmap(range.upperBound - range.lowerBound)
}

/// Maps a fresh frame with `property` at `va`, its first word set to `tag`.
private func mapTagged(_ space: VmSpace, _ va: Vaddr, tag: UInt64, _ property: PageProperty) throws {
    let frame = try FrameAllocOptions().allocFrame(in: space.machine)
    try frame.writeVal(at: 0, tag)
    var cursor = try space.cursorMut(va..<(va + pageSize))
    cursor.map(frame, property)
}

/// Changes the flags of the page at `va`; flushes its TLB entry (on every CPU of the space) only
/// when `flush` is set.
private func protect(_ space: VmSpace, _ va: Vaddr, flush: Bool, _ op: (inout PageFlags) -> Void) throws {
    var cursor = try space.cursorMut(va..<(va + pageSize))
    let protected = cursor.protectNext(pageSize) { flags, _ in op(&flags) }
    #expect(protected == va..<(va + pageSize))
    let pending = cursor.flusher.hasPendingFlush
    #expect(!pending, "protectNext must leave flushing to the caller")
    if flush {
        cursor.flusher.issueTlbFlush(.single(va))
        cursor.flusher.dispatchTlbFlush()
    }
}

/// The setup most tests share: a one-CPU machine, a fresh space active on CPU 0, the frames
/// outstanding before anything is mapped (what the test checks it returns to), and an empty log
/// for the handlers.
private func spaceWithFaultLog() throws -> (machine: Machine, space: VmSpace, baseline: Int, log: FaultLog) {
    let machine = makeMachine()
    let space = try VmSpace(machine: machine)
    space.activate(on: 0)
    return (machine, space, machine.outstandingFrames, FaultLog())
}

@Suite struct DemandPagingTests {
    /// A fallible read of pages nobody touched yet: the handler maps a zeroed frame at each page
    /// as the read reaches it, once per page, and the read returns zeros.
    @Test func readOfUntouchedServedPagesReturnsZeros() throws {
        let (machine, space, baseline, log) = try spaceWithFaultLog()
        let served = pages(base, 4)
        space.pageFaultHandler = demandPager(served: served, log: log)

        let outcome = readUser(space, base, 3 * pageSize)
        #expect(outcome.error == nil)
        #expect(outcome.bytes.allSatisfy { $0 == 0 })
        #expect(outcome.cursorAfter == (base + 3 * pageSize).rawValue)
        #expect(log.all == (0..<3).map { PageFaultInfo(address: base + $0 * pageSize, isWrite: false, cpu: 0) })
        for i in 0..<3 {
            #expect(space.pageTable.pageWalk(base + i * pageSize)?.property.flags.contains(.rw) == true)
        }
        #expect(space.pageTable.pageWalk(base + 3 * pageSize) == nil)

        // Mapped now: no more faults.
        #expect(readUser(space, base + 10, 3 * pageSize - 10).error == nil)
        #expect(log.count == 3)

        // A value read in the middle of the fourth page faults it in too.
        #expect(try readUser64(space, base + 3 * pageSize + 128) == 0)
        #expect(log.count == 4)
        #expect(log.all.last == PageFaultInfo(address: base + 3 * pageSize + 128, isWrite: false, cpu: 0))

        // The pages are ordinary mappings: a write sticks.
        try writeUser(space, base + pageSize + 8, 0xfeed_f00d)
        #expect(try readUser64(space, base + pageSize + 8) == 0xfeed_f00d)
        #expect(log.count == 4)

        #expect(try unmapAll(space, served) == 4)
        #expect(machine.outstandingFrames == baseline)
    }

    /// A read running from served into unserved pages stops at the first unserved byte, having
    /// copied everything before it; the reader's cursor stops there too.
    @Test func readSpanningServedAndUnservedPagesFaultsAtTheFirstUnservedByte() throws {
        let (machine, space, baseline, log) = try spaceWithFaultLog()
        let served = pages(base, 2)
        space.pageFaultHandler = demandPager(served: served, log: log)

        let start = base + 100
        let count = 2 * pageSize + 200
        let boundary = base + 2 * pageSize
        let copied = boundary - start
        let outcome = readUser(space, start, count)
        #expect(outcome.error == .pageFault(address: boundary, copied: copied))
        #expect(outcome.cursorAfter == boundary.rawValue)
        #expect(outcome.bytes[..<copied].allSatisfy { $0 == 0 })
        #expect(outcome.bytes[copied...].allSatisfy { $0 == 0xAA })
        #expect(log.all.map(\.address) == [start, base + pageSize, boundary])
        #expect(log.all.allSatisfy { !$0.isWrite })

        // The same from a write: the served page is faulted in and written, the unserved one not.
        let writeStart = base + (2 * pageSize - 4)
        #expect(throws: OSTDError.pageFault(address: boundary, copied: 4)) {
            try writeUser(space, writeStart, 0x0102_0304_0506_0708)
        }
        #expect(log.all.last == PageFaultInfo(address: boundary, isWrite: true, cpu: 0))

        #expect(try unmapAll(space, pages(base, 4)) == 2)
        #expect(machine.outstandingFrames == baseline)
    }

    /// A write to a read-only page: the handler makes it writable (protect, then flush) and the
    /// write resumes and succeeds; the page keeps its contents.
    @Test func writeFaultHandlerUpgradesAReadOnlyPage() throws {
        let (machine, space, baseline, log) = try spaceWithFaultLog()
        try mapTagged(space, base, tag: 0x1234_5678, .user(.r))

        // Cached read-only now.
        #expect(try readUser64(space, base) == 0x1234_5678)
        // Without a handler the write fails.
        #expect(throws: OSTDError.pageFault(address: base + 8, copied: 0)) { try writeUser(space, base + 8, 1) }

        #expect(try readUser64(space, base) == 0x1234_5678)   // cached read-only again
        space.pageFaultHandler = { space, fault in
            log.append(fault)
            guard fault.isWrite else { return false }
            let page = pageOf(fault.address)
            do throws(OSTDError) {
                var cursor = try space.cursorMut(page..<(page + pageSize))
                guard cursor.protectNext(pageSize, { flags, _ in flags.insert(.w) }) != nil else { return false }
                cursor.flusher.issueTlbFlush(.single(page))
                cursor.flusher.dispatchTlbFlush()
                return true
            } catch {
                return false
            }
        }
        let before = space.tlbStatistics(cpu: 0)
        try writeUser(space, base + 8, 0xabcd)
        // A protection fault: P set in the error code.
        #expect(log.all == [PageFaultInfo(address: base + 8, isWrite: true, cpu: 0, errorCode: [.present, .write, .user])])
        #expect(space.tlbStatistics(cpu: 0).pageFlushes == before.pageFlushes + 1)
        #expect(space.pageTable.pageWalk(base)?.property.flags.contains(.w) == true)
        #expect(try readUser64(space, base) == 0x1234_5678)
        #expect(try readUser64(space, base + 8) == 0xabcd)

        // Writable now: no further fault.
        try writeUser(space, base + 16, 0xef)
        #expect(log.count == 1)

        #expect(try unmapAll(space, pages(base, 1)) == 1)
        #expect(machine.outstandingFrames == baseline)
    }

    /// A handler that says it resolved the fault but did not: the retry faults at the same
    /// address, and that fault is final. The access ends instead of looping.
    @Test func handlerReturningTrueWithoutMappingFailsOnce() throws {
        let (machine, space, baseline, log) = try spaceWithFaultLog()
        space.pageFaultHandler = doNothing(answer: true, log: log)

        #expect(readUser(space, base + 8, 64).error == .pageFault(address: base + 8, copied: 0))
        #expect(log.all == [PageFaultInfo(address: base + 8, isWrite: false, cpu: 0)])

        #expect(throws: OSTDError.pageFault(address: base + 24, copied: 0)) { try writeUser(space, base + 24, 5) }
        #expect(log.count == 2)
        #expect(log.all.last == PageFaultInfo(address: base + 24, isWrite: true, cpu: 0))

        // Mixed with a real resolution: the first page is faulted in (by another handler that
        // maps it), the lying handler then gets one call for the second page.
        let served = pages(base, 1)
        let pager = demandPager(served: served, log: log)
        space.pageFaultHandler = { space, fault in
            served.contains(pageOf(fault.address)) ? pager(space, fault) : doNothing(answer: true, log: log)(space, fault)
        }
        let outcome = readUser(space, base + (pageSize - 8), 16)
        #expect(outcome.error == .pageFault(address: base + pageSize, copied: 8))
        #expect(log.all.suffix(2).map(\.address) == [base + (pageSize - 8), base + pageSize])

        #expect(try unmapAll(space, pages(base, 2)) == 1)
        #expect(machine.outstandingFrames == baseline)
    }

    /// A handler that refuses: the access fails with `pageFault`, after one call.
    @Test func handlerReturningFalse() throws {
        let (machine, space, baseline, log) = try spaceWithFaultLog()
        space.pageFaultHandler = doNothing(answer: false, log: log)

        #expect(readUser(space, base, 8).error == .pageFault(address: base, copied: 0))
        #expect(log.all == [PageFaultInfo(address: base, isWrite: false, cpu: 0)])
        #expect(space.pageTable.pageWalk(base) == nil)
        #expect(throws: OSTDError.pageFault(address: base, copied: 0)) {
            try space.withWriter(at: base, count: 100) { (writer: inout VmWriter<Fallible>) throws(OSTDError) in
                try writer.fillZeros(100)
            }
        }
        #expect(log.count == 2 && log.all.last?.isWrite == true)
        #expect(machine.outstandingFrames == baseline)
    }

    /// The handler is told the exact faulting byte, whether the access was a write, the CPU it
    /// ran on, and the error code (a page not present: `U`, `W U`; a read-only one: `P W U`).
    @Test func handlerSeesAccessKindAndCpu() throws {
        let machine = makeMachine(cpus: 2)
        let space = try VmSpace(machine: machine)
        machine.withCpu(1) { space.activate(on: 1) }
        let baseline = machine.outstandingFrames
        let log = FaultLog()
        space.pageFaultHandler = demandPager(served: pages(base, 3), log: log, property: .user(.r))

        try machine.withCpu(1) { () throws(OSTDError) in
            #expect(try readUser64(space, base + 0x10) == 0)
            #expect(log.all.last == PageFaultInfo(address: base + 0x10, isWrite: false, cpu: 1))
            // Faulted in read-only: a write faults again, as a write, and the pager refuses it.
            #expect(throws: OSTDError.pageFault(address: base + 0x18, copied: 0)) { try writeUser(space, base + 0x18, 1) }
            #expect(log.all.last == PageFaultInfo(address: base + 0x18, isWrite: true, cpu: 1,
                                                  errorCode: [.present, .write, .user]))
            // A write to an untouched page: mapped (read-only) by the pager, then faults again
            // at the same address, which is final without asking the handler again.
            #expect(throws: OSTDError.pageFault(address: base + pageSize + 4, copied: 0)) {
                try writeUser(space, base + pageSize + 4, 1)
            }
            #expect(log.all.last == PageFaultInfo(address: base + pageSize + 4, isWrite: true, cpu: 1))
            #expect(space.pageTable.pageWalk(base + pageSize)?.property.flags.contains(.w) == false)
        }
        #expect(log.count == 3)

        // The same space on CPU 0.
        machine.withCpu(0) { space.activate(on: 0) }
        try machine.withCpu(0) { () throws(OSTDError) in
            let value = try space.withReader(at: base + 2 * pageSize + 0x40, count: 4) {
                (reader: inout VmReader<Fallible>) throws(OSTDError) in try reader.atomicLoad()
            }
            #expect(value == 0)
        }
        #expect(log.all.last == PageFaultInfo(address: base + 2 * pageSize + 0x40, isWrite: false, cpu: 0))
        #expect(log.count == 4)

        #expect(try unmapAll(space, pages(base, 3)) == 3)
        #expect(machine.outstandingFrames == baseline)
    }

    /// A spurious fault: the page was read-only and cached so; it is made writable again without
    /// a flush. The stale read-only entry does not make the write fail: a permission fault
    /// re-walks the table first, which now allows the write. The handler is not asked.
    @Test func spuriousFaultFromAStaleReadOnlyEntryIsNotAFault() throws {
        let (machine, space, baseline, log) = try spaceWithFaultLog()
        try mapTagged(space, base, tag: 0x77, .user(.rw))
        space.pageFaultHandler = doNothing(answer: false, log: log)

        try protect(space, base, flush: true) { $0.remove(.w) }
        #expect(throws: OSTDError.pageFault(address: base, copied: 0)) { try writeUser(space, base, 1) }
        #expect(log.all == [PageFaultInfo(address: base, isWrite: true, cpu: 0, errorCode: [.present, .write, .user])])
        #expect(try readUser64(space, base) == 0x77)   // cached read-only

        let beforeProtect = space.tlbStatistics(cpu: 0)
        try protect(space, base, flush: false) { $0.insert(.w) }
        let afterProtect = space.tlbStatistics(cpu: 0)
        #expect(afterProtect.pageFlushes == beforeProtect.pageFlushes)
        #expect(afterProtect.fullFlushes == beforeProtect.fullFlushes)
        // The read-only entry is still cached: a read hits it.
        #expect(try readUser64(space, base) == 0x77)
        #expect(space.tlbStatistics(cpu: 0).hits > afterProtect.hits)
        #expect(space.tlbStatistics(cpu: 0).misses == afterProtect.misses)

        try writeUser(space, base, 0x88)
        #expect(log.count == 1, "a spurious fault reached the handler")
        #expect(try readUser64(space, base) == 0x88)
        try writeUser(space, base + 8, 0x99)
        #expect(log.count == 1)

        #expect(try unmapAll(space, pages(base, 1)) == 1)
        #expect(machine.outstandingFrames == baseline)
    }
}

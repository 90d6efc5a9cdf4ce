// The I/O audit (checks 25–27): every operation of a user reader or writer of an audited space is
// checked by `SpecAuditor.auditIo`. A clean run of every operation finds nothing; each check
// function reports a hand-made bad state and accepts a good one; each I/O mutant of the core
// (`CoreMutants`, debug builds) is caught by the predicate meant for it, and the same run without
// it is clean. Kernel readers and writers are not audited.

@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost
import Testing

/// A user handle's state at `cursor` with `remain` bytes, registered exactly over them.
private func handle(_ cursor: Vaddr, _ remain: Int, space: VmSpace? = nil) -> VmIoHandleState {
    VmIoHandleState(space: space, cursor: cursor.rawValue, remain: remain, registration: cursor..<(cursor + remain))
}

@Suite struct IoAuditTests {
    // MARK: Audited runs

    /// Reads, copies (both ways, user to user, and through a page-fault handler that maps the
    /// page), values, atomics, fills, limit, skip and split on user handles, and faults: no
    /// violation, and every operation was checked.
    @Test func aCleanRunOfEveryOperationViolatesNothing() throws {
        let audited = try AuditedSpace()
        let space = audited.space
        try audited.mapPages(at: base, 4)
        space.activate(on: 0)
        let checkedBefore = audited.auditor.operationsChecked

        var writer = try space.createWriter(base, 3 * pageSize)
        try writer.writeVal(UInt64(0x1122_3344_5566_7788))
        _ = try copyIn(pattern(300), to: &writer).0.get()
        writer.skip(4)
        #expect(try writer.fillZeros(12) == 12)
        var front = writer.split(100)
        try front.writeVal(UInt16(7))
        writer.limit(pageSize)
        writer.limit(-1)
        _ = consume front
        _ = consume writer

        var reader = try space.createReader(base, 2 * pageSize)
        #expect(try reader.atomicLoad() == 0x5566_7788)
        #expect(try reader.readVal(UInt64.self) == 0x1122_3344_5566_7788)
        let (copied, bytes, _) = copyOut(&reader, count: 300)
        #expect(try copied.get() == 300 && bytes == pattern(300))
        reader.skip(3)
        var readerFront = reader.split(10)
        _ = try readerFront.readVal(UInt8.self)
        reader.limit(64)
        var target = try space.createWriter(base + 3 * pageSize, 64)   // a user-to-user copy
        #expect(try reader.readFallible(&target) == 64)
        _ = consume target
        _ = consume readerFront
        _ = consume reader

        var exchangeReader = try space.createReader(base + 2 * pageSize, 4)
        space.disposeReader(&exchangeReader)
        let exchanger = try space.createWriter(base + 2 * pageSize, 4)
        let first = try exchanger.atomicCompareExchange(exchangeReader, old: 0, new: 9)
        let second = try exchanger.atomicCompareExchange(exchangeReader, old: 0, new: 5)
        #expect(first.previous == 0 && first.exchanged && second.previous == 9 && !second.exchanged)
        _ = consume exchanger
        _ = consume exchangeReader

        #expect(audited.violatedPredicates().isEmpty, "\(audited.auditor.violations)")
        #expect(audited.auditor.operationsChecked - checkedBefore >= 22)
    }

    /// Faults: a copy stopped by an unmapped page, a value read and written there, a fill that
    /// stops at it, and a read through a page-fault handler that maps the page during the copy.
    @Test func faultingOperationsViolateNothing() throws {
        let audited = try AuditedSpace()
        let space = audited.space
        try audited.mapPages(at: base, 1)
        space.activate(on: 0)
        var writer = try space.createWriter(base + (pageSize - 8), 16)
        #expect(throws: OSTDError.pageFault(address: base + pageSize, copied: 8)) { try copyIn(pattern(16), to: &writer).0.get() }
        #expect(throws: OSTDError.self) { try writer.writeVal(UInt32(1)) }
        _ = consume writer
        var filler = try space.createWriter(base + (pageSize - 8), 16)
        #expect(throws: OSTDError.pageFault(address: base + pageSize, copied: 8)) { try filler.fillZeros(16) }
        _ = consume filler
        var reader = try space.createReader(base + pageSize, 8)
        #expect(throws: OSTDError.self) { try reader.readVal(UInt64.self) }
        #expect(throws: OSTDError.self) { try reader.atomicLoad() }

        space.pageFaultHandler = { space, fault in
            let page = Vaddr(fault.address.rawValue & ~UInt64(pageSize - 1))
            guard let frame = try? FrameAllocOptions().allocFrame(in: space.machine),
                  var cursor = try? space.cursorMut(page..<(page + pageSize)) else { return false }
            cursor.map(frame, .user(.rw))
            return true
        }
        let (paged, bytes, _) = copyOut(&reader, count: 8)
        #expect(try paged.get() == 8 && bytes == [UInt8](repeating: 0, count: 8))
        _ = consume reader
        #expect(audited.violatedPredicates().isEmpty, "\(audited.auditor.violations)")
    }

    /// Until a removal's flush is dispatched the CPU may still read the old frame through its TLB,
    /// as the MMU does; the audit reads what the CPU sees, so this is no violation (the audited
    /// property test's `takeWithoutDispatch` found the audit reading the page table instead).
    @Test func aReadThroughAStaleTlbEntryViolatesNothing() throws {
        let audited = try AuditedSpace()
        try audited.mapPages(at: base, 1)
        audited.space.activate(on: 0)
        try audited.space.withWriter(at: base, count: 1) { try $0.writeVal(UInt8(5)) }   // fills the TLB
        var cursor = try audited.space.cursorMut(pages(base, 1))
        guard let fragment = cursor.takeNext(pageSize) else {
            Issue.record("nothing to take")
            return
        }
        cursor.flusher.issueTlbFlushWith(.single(fragment.va), keeping: fragment)
        #expect(try audited.space.withReader(at: base, count: 1) { try $0.readVal(UInt8.self) } == 5)
        cursor.flusher.dispatchTlbFlush()
        _ = consume cursor
        #expect(audited.violatedPredicates().isEmpty, "\(audited.auditor.violations)")
    }

    /// Kernel readers and writers have no space: nothing is shown to any auditor.
    @Test func kernelHandlesAreNotAudited() throws {
        let audited = try AuditedSpace()
        let segment = try FrameAllocOptions().zeroed(true).allocSegment(1, in: audited.machine)
        let checked = audited.auditor.operationsChecked
        try segment.writeVal(at: 8, UInt64(3))
        #expect(try segment.readVal(at: 8, as: UInt64.self) == 3)
        // Only the frame layer saw something: each kernel window took and gave back a reference
        // on the segment's frame (a segment clone and a segment drop).
        #expect(audited.auditor.operationsChecked == checked + 4)
        #expect(audited.auditor.violations.isEmpty)
    }

    /// A `VmIo` helper with a kernel end and a user end is audited through the user end.
    @Test func aVmIoHelperIntoAUserWriterIsAudited() throws {
        let audited = try AuditedSpace(mutants: .writeFallibleCopiesOneByteShort)
        try audited.mapPages(at: base, 1)
        audited.space.activate(on: 0)
        let segment = try FrameAllocOptions().zeroed(true).allocSegment(1, in: audited.machine)
        try segment.writeSlice(at: 0, [UInt8(9), 8, 7, 6])
        var writer = try audited.space.createWriter(base, 4)
        try segment.read(at: 0, into: &writer)
        _ = consume writer
        #expect(audited.auditor.violations.map(\.predicate) == ["transferSpec"])
    }

    // MARK: Mutants

    /// With `writeFallibleCopiesOneByteShort` a copy into user memory misses its last byte:
    /// `transferSpec` sees the destination differ from the source; without it, nothing.
    @Test(arguments: [true, false]) func aCopyOneByteShortIsCaught(_ mutated: Bool) throws {
        let audited = try AuditedSpace(mutants: mutated ? .writeFallibleCopiesOneByteShort : [])
        try audited.mapPages(at: base, 1)
        audited.space.activate(on: 0)
        var writer = try audited.space.createWriter(base, 32)
        #expect(try copyIn(pattern(32), to: &writer).0.get() == 32)
        _ = consume writer
        let found = Set(audited.auditor.violations.map(\.predicate))
        #expect(found == (mutated ? ["transferSpec"] : []), "\(audited.auditor.violations)")
    }

    /// With `readValAdvancesOnFault` a faulting `readVal` moves its cursor: `onceSpec` sees it;
    /// without it, nothing.
    @Test(arguments: [true, false]) func aReadValAdvancingOnAFaultIsCaught(_ mutated: Bool) throws {
        let audited = try AuditedSpace(mutants: mutated ? .readValAdvancesOnFault : [])
        audited.space.activate(on: 0)
        var reader = try audited.space.createReader(base, 16)
        #expect(throws: OSTDError.pageFault(address: base, copied: 0)) { try reader.readVal(UInt64.self) }
        _ = consume reader
        let found = Set(audited.auditor.violations.map(\.predicate))
        #expect(found == (mutated ? ["onceSpec"] : []), "\(audited.auditor.violations)")
    }

    // MARK: The check functions on hand-made states

    @Test func cursorBoundsAcceptsAndRejects() {
        let before = handle(base, 64)
        #expect(IoRefinement.cursorBounds(.skip(count: 8), before: before, after: handle(base + 8, 56)).isEmpty)
        #expect(IoRefinement.cursorBounds(.limit(max: 10), before: before, after: handle(base, 10)).isEmpty)
        // A limit that kept more than asked, one that moved the cursor, a skip that moved the end.
        #expect(!IoRefinement.cursorBounds(.limit(max: 10), before: before, after: handle(base, 11)).isEmpty)
        #expect(!IoRefinement.cursorBounds(.limit(max: 10), before: before, after: handle(base + 1, 10)).isEmpty)
        #expect(!IoRefinement.cursorBounds(.skip(count: 8), before: before, after: handle(base + 8, 60)).isEmpty)
        // A registration that did not follow the cursor (the seeds' `wf`).
        var stale = handle(base + 8, 56)
        stale.registration = base..<(base + 64)
        #expect(!IoRefinement.cursorBounds(.skip(count: 8), before: before, after: stale).isEmpty)
        // A window that grew past the range.
        #expect(!IoRefinement.cursorBounds(.transfer, before: before, after: handle(base + 8, 64)).isEmpty)
        // A split: the front must be the first bytes.
        #expect(IoRefinement.cursorBounds(.split(count: 16), before: before, after: handle(base + 16, 48),
                                          front: handle(base, 16)).isEmpty)
        #expect(!IoRefinement.cursorBounds(.split(count: 16), before: before, after: handle(base + 16, 48),
                                           front: handle(base, 15)).isEmpty)
    }

    @Test func transferSpecAcceptsAndRejects() {
        let before = VmIoAuditState(reader: handle(base, 8), writer: handle(base + 100, 4))
        let after = VmIoAuditState(reader: handle(base + 4, 4), writer: handle(base + 104, 0))
        let source: [UInt8?] = [1, 2, 3, 4]
        #expect(IoRefinement.transferSpec(before: before, after: after, outcome: .count(4), source: source,
                                          destination: [1, 2, 3, 4]).isEmpty)
        // The last byte not copied; a count that is not min(remain, avail); cursors not moved by r.
        #expect(!IoRefinement.transferSpec(before: before, after: after, outcome: .count(4), source: source,
                                           destination: [1, 2, 3, 0]).isEmpty)
        #expect(!IoRefinement.transferSpec(before: before, after: after, outcome: .count(3), source: source,
                                           destination: [1, 2, 3]).isEmpty)
        let stuck = VmIoAuditState(reader: handle(base, 8), writer: handle(base + 104, 0))
        #expect(!IoRefinement.transferSpec(before: before, after: stuck, outcome: .count(4), source: source,
                                           destination: [1, 2, 3, 4]).isEmpty)
        // A fault after 2 bytes, with the cursors moved by 2, is fine; one reporting all 4 is not.
        let partial = VmIoAuditState(reader: handle(base + 2, 6), writer: handle(base + 102, 2))
        #expect(IoRefinement.transferSpec(before: before, after: partial, outcome: .failed(.pageFault(address: base + 102, copied: 2)),
                                          source: source, destination: [1, 2]).isEmpty)
        #expect(!IoRefinement.transferSpec(before: before, after: after, outcome: .failed(.pageFault(address: base + 104, copied: 4)),
                                           source: source, destination: [1, 2, 3, 4]).isEmpty)
    }

    @Test func onceSpecAcceptsAndRejects() {
        let before = handle(base, 16)
        let read = VmIoOperation.readVal(size: 4)
        #expect(IoRefinement.onceSpec(read, before: before, after: handle(base + 4, 12), outcome: .value([1, 2, 3, 4]),
                                      memory: [1, 2, 3, 4]).isEmpty)
        // A value that is not the memory at the cursor; a cursor not moved by the size.
        #expect(!IoRefinement.onceSpec(read, before: before, after: handle(base + 4, 12), outcome: .value([1, 2, 3, 5]),
                                       memory: [1, 2, 3, 4]).isEmpty)
        #expect(!IoRefinement.onceSpec(read, before: before, after: handle(base + 2, 14), outcome: .value([1, 2, 3, 4]),
                                       memory: [1, 2, 3, 4]).isEmpty)
        // A fault must leave the cursor; too few bytes must fail.
        let fault = VmIoOutcome.failed(.pageFault(address: base, copied: 0))
        #expect(IoRefinement.onceSpec(read, before: before, after: before, outcome: fault, memory: []).isEmpty)
        #expect(!IoRefinement.onceSpec(read, before: before, after: handle(base + 4, 12), outcome: fault, memory: []).isEmpty)
        #expect(!IoRefinement.onceSpec(read, before: handle(base, 2), after: handle(base + 4, 0), outcome: .value([0, 0, 0, 0]),
                                       memory: [0, 0]).isEmpty)
        // A write that did not land; an exchange that reports the wrong flag; a fill leaving a byte.
        #expect(!IoRefinement.onceSpec(.writeVal(bytes: [7, 7]), before: before, after: handle(base + 2, 14), outcome: .done,
                                       memory: [7, 0]).isEmpty)
        #expect(!IoRefinement.onceSpec(.atomicCompareExchange(old: 0, new: 9), before: before, after: before,
                                       outcome: .exchanged(previous: 1, exchanged: true), memory: [9, 0, 0, 0]).isEmpty)
        #expect(IoRefinement.onceSpec(.fillZeros(count: 3), before: before, after: handle(base + 3, 13), outcome: .count(3),
                                      memory: [0, 0, 0]).isEmpty)
        #expect(!IoRefinement.onceSpec(.fillZeros(count: 3), before: before, after: handle(base + 3, 13), outcome: .count(3),
                                       memory: [0, 1, 0]).isEmpty)
    }
}

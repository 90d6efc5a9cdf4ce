// The TLB flusher on its own (OSTD `mm/tlb.rs`, `TlbFlusher`): how it batches operations (page
// by page up to 31 pages; the 32nd page, or a flush of everything, collapses the batch into one
// full flush), that what it keeps outlives the flush and no longer, that a flusher dropped with
// pending operations still performs them (a deliberate difference from OSTD), and that
// `syncTlbFlush` has nothing to wait for.
//
// The flushes performed are observed through the TLB statistics of the CPUs where the space is
// active.

import Testing
import OSTDHost
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

/// The flushes `cpu` performed while `body` ran.
private func flushes(_ space: VmSpace, cpu: Int = 0, _ body: () throws -> Void) rethrows -> Flushes {
    let before = space.tlbStatistics(cpu: cpu)
    try body()
    let after = space.tlbStatistics(cpu: cpu)
    return delta(after, before)
}

/// A space active on CPU 0 (and on CPU 1 when the machine has it).
private func activeSpace(_ machine: Machine) throws -> VmSpace {
    let space = try VmSpace(machine: machine)
    for cpu in 0..<machine.cpuCount { space.activate(on: cpu) }
    return space
}

/// Reads the `UInt64` at `va` on CPU 0.
private func read64(_ space: VmSpace, _ va: Vaddr) throws(OSTDError) -> UInt64 {
    try space.withReader(at: va, count: 8) { (reader: inout VmReader<Fallible>) throws(OSTDError) in
        try reader.readVal(UInt64.self)
    }
}

@Suite struct TlbFlusherTests {
    // MARK: Batching

    /// Up to 31 pages, the batch is performed page by page.
    @Test func upToThirtyOnePagesStayPerPage() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        var cursor = try space.cursorMut(pages(base, 64))
        let pendingAtFirst = cursor.flusher.hasPendingFlush
        #expect(!pendingAtFirst)
        let singles = flushes(space) {
            for i in 0..<31 { cursor.flusher.issueTlbFlush(.single(base + i * pageSize)) }
            let pending = cursor.flusher.hasPendingFlush
            #expect(pending)
            cursor.flusher.dispatchTlbFlush()
        }
        #expect(singles == Flushes(31, 0))
        let pendingAfter = cursor.flusher.hasPendingFlush
        #expect(!pendingAfter)

        // Ranges count their pages: 20 + 11 = 31.
        let ranges = flushes(space) {
            cursor.flusher.issueTlbFlush(.range(pages(base, 20)))
            cursor.flusher.issueTlbFlush(.range(pages(base + 32 * pageSize, 11)))
            cursor.flusher.dispatchTlbFlush()
        }
        #expect(ranges == Flushes(31, 0))
        _ = consume cursor
    }

    /// The 32nd page turns the batch into one flush of everything, whether it comes as a single
    /// page or as part of a range; further operations add nothing to it.
    @Test func theThirtySecondPageCollapsesTheBatch() throws {
        let machine = makeMachine(cpus: 2)
        let space = try activeSpace(machine)
        var cursor = try space.cursorMut(pages(base, 64))

        for cpu in [0, 1] {
            // Measure each CPU in turn; both are flushed.
            let singles = flushes(space, cpu: cpu) {
                for i in 0..<32 { cursor.flusher.issueTlbFlush(.single(base + i * pageSize)) }
                cursor.flusher.dispatchTlbFlush()
            }
            #expect(singles == Flushes(0, 1), "cpu \(cpu)")
        }

        let ranges = flushes(space) {
            cursor.flusher.issueTlbFlush(.range(pages(base, 20)))
            cursor.flusher.issueTlbFlush(.range(pages(base + 20 * pageSize, 12)))
            cursor.flusher.dispatchTlbFlush()
        }
        #expect(ranges == Flushes(0, 1))

        let many = flushes(space) {
            for i in 0..<64 { cursor.flusher.issueTlbFlush(.single(base + i * pageSize)) }
            cursor.flusher.issueTlbFlush(.range(pages(base, 5)))
            cursor.flusher.dispatchTlbFlush()
        }
        #expect(many == Flushes(0, 1))

        // A 32-page range is a flush of everything by itself.
        let wide = flushes(space) {
            cursor.flusher.issueTlbFlush(.range(pages(base, 32)))
            cursor.flusher.dispatchTlbFlush()
        }
        #expect(wide == Flushes(0, 1))
        _ = consume cursor
    }

    /// `.all` collapses the batch whatever was pending before it, and after a dispatch the next
    /// batch starts page by page again.
    @Test func flushAllCollapsesAndTheNextBatchStartsAfresh() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        var cursor = try space.cursorMut(pages(base, 64))

        let all = flushes(space) {
            cursor.flusher.issueTlbFlush(.single(base))
            cursor.flusher.issueTlbFlush(.all)
            cursor.flusher.issueTlbFlush(.single(base + pageSize))
            let pending = cursor.flusher.hasPendingFlush
            #expect(pending)
            cursor.flusher.dispatchTlbFlush()
        }
        #expect(all == Flushes(0, 1))

        let next = flushes(space) {
            cursor.flusher.issueTlbFlush(.single(base))
            cursor.flusher.issueTlbFlush(.range(pages(base + 4 * pageSize, 3)))
            cursor.flusher.dispatchTlbFlush()
        }
        #expect(next == Flushes(4, 0))

        // Dispatching nothing flushes nothing.
        let nothing = flushes(space) { cursor.flusher.dispatchTlbFlush() }
        #expect(nothing == Flushes(0, 0))
        _ = consume cursor
    }

    /// A flush reaches the CPUs where the space is active, and only those.
    @Test func onlyTheSpacesCpusAreFlushed() throws {
        let machine = makeMachine(cpus: 3)
        let space = try VmSpace(machine: machine)
        space.activate(on: 1)
        var cursor = try space.cursorMut(pages(base, 64))
        let before = (0..<3).map { space.tlbStatistics(cpu: $0) }
        cursor.flusher.issueTlbFlush(.single(base))
        cursor.flusher.dispatchTlbFlush()
        let after = (0..<3).map { space.tlbStatistics(cpu: $0) }
        #expect(after[0] == before[0])
        #expect(after[1].pageFlushes == before[1].pageFlushes + 1)
        #expect(after[2] == before[2])
        _ = consume cursor
    }

    // MARK: Keeping frames until the flush

    /// A frame handed to `issueTlbFlushWith(_:keeping:)` stays allocated, with the flusher's
    /// reference, until the dispatch; then that reference is dropped.
    @Test func keptFrameLivesUntilTheDispatch() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        var cursor = try space.cursorMut(pages(base, 64))
        let frame = try FrameAllocOptions().allocFrame(in: machine)
        let paddr = frame.paddr
        let observer = frame.clone()
        #expect(observer.referenceCount == 2)
        let outstanding = machine.outstandingFrames

        cursor.flusher.issueTlbFlushWith(.single(base), keeping: frame)
        #expect(observer.referenceCount == 2, "the flusher holds the reference it was given")
        #expect(machine.outstandingFrames == outstanding)

        let performed = flushes(space) { cursor.flusher.dispatchTlbFlush() }
        #expect(performed == Flushes(1, 0))
        #expect(observer.referenceCount == 1, "the flusher's reference went with the dispatch")
        #expect(machine.outstandingFrames == outstanding)
        _ = consume observer
        #expect(machine.outstandingFrames == outstanding - 1)
        #expect(machine.metaSlot(of: paddr).isFree)

        // The sole reference: the frame is freed by the dispatch itself.
        let lone = try FrameAllocOptions().allocFrame(in: machine)
        let lonePaddr = lone.paddr
        let withLone = machine.outstandingFrames
        cursor.flusher.issueTlbFlushWith(.single(base), keeping: lone)
        #expect(machine.outstandingFrames == withLone)
        #expect(machine.metaSlot(of: lonePaddr).referenceCount == 1)
        cursor.flusher.dispatchTlbFlush()
        #expect(machine.outstandingFrames == withLone - 1)
        #expect(machine.metaSlot(of: lonePaddr).isFree)
        _ = consume cursor
        #expect(machine.cleanInv())
    }

    /// Segments are kept the same way, also when the batch collapsed, and also when the space is
    /// active nowhere (nothing to flush, but the frames still go at the dispatch).
    @Test func keptSegmentsGoAtTheDispatchWhateverItFlushes() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        var cursor = try space.cursorMut(pages(base, 64))
        let outstanding = machine.outstandingFrames   // with whatever nodes the cursor made
        let segment = try FrameAllocOptions().allocSegment(4, in: machine)
        let first = segment.paddr
        cursor.flusher.issueTlbFlushWith(.all, keeping: segment)
        let frame = try FrameAllocOptions().allocFrame(in: machine)
        cursor.flusher.issueTlbFlushWith(.single(base), keeping: frame)
        #expect(machine.outstandingFrames == outstanding + 5)
        #expect(machine.metaSlot(of: first + 3 * pageSize).referenceCount == 1)
        let performed = flushes(space) { cursor.flusher.dispatchTlbFlush() }
        #expect(performed == Flushes(0, 1))
        #expect(machine.outstandingFrames == outstanding)
        _ = consume cursor

        let idle = try VmSpace(machine: machine)   // active nowhere
        var idleCursor = try idle.cursorMut(pages(base, 8))
        let idleBaseline = machine.outstandingFrames
        idleCursor.flusher.issueTlbFlushWith(.single(base), keeping: try FrameAllocOptions().allocSegment(2, in: machine))
        #expect(machine.outstandingFrames == idleBaseline + 2)
        let idleFlushes = flushes(space) { idleCursor.flusher.dispatchTlbFlush() }
        #expect(idleFlushes == Flushes(0, 0))
        #expect(machine.outstandingFrames == idleBaseline)
        _ = consume idleCursor
    }

    // MARK: Dropping a flusher

    /// A `CursorMut` dropped with flushes pending performs them (OSTD would only defer the
    /// frames): the stale translation goes, and so does the frame kept for it.
    @Test func droppingACursorWithPendingFlushesDispatchesThem() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        let baseline = machine.outstandingFrames
        let frame = try FrameAllocOptions().allocFrame(in: machine)
        try frame.writeVal(at: 0, UInt64(0x5eed))
        do {
            var cursor = try space.cursorMut(pages(base, 1))
            cursor.map(frame, .user(.rw))
        }
        #expect(try read64(space, base) == 0x5eed)   // cached on CPU 0
        let withPage = machine.outstandingFrames

        let dropped = try flushes(space) {
            var cursor = try space.cursorMut(pages(base, 1))
            guard let fragment = cursor.takeNext(pageSize) else {
                Issue.record("nothing to take at \(base)")
                return
            }
            cursor.flusher.issueTlbFlushWith(.single(base), keeping: fragment)
            // Not yet flushed: the stale entry still reads the (kept) frame.
            #expect(try read64(space, base) == 0x5eed)
            #expect(machine.outstandingFrames == withPage)
            let pending = cursor.flusher.hasPendingFlush
            #expect(pending)
            _ = consume cursor   // no dispatch
        }
        #expect(dropped == Flushes(1, 0))
        #expect(throws: OSTDError.pageFault(address: base, copied: 0)) { try read64(space, base) }
        #expect(machine.outstandingFrames < withPage)
        #expect(machine.outstandingFrames == baseline)
    }

    /// The same for a flusher on its own.
    @Test func droppingABareFlusherDispatches() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        let outstanding = machine.outstandingFrames
        let performed = try flushes(space) {
            var flusher = TlbFlusher(space: space)
            flusher.issueTlbFlush(.range(pages(base, 3)))
            flusher.issueTlbFlushWith(.single(base), keeping: try FrameAllocOptions().allocFrame(in: machine))
            #expect(machine.outstandingFrames == outstanding + 1)
            _ = consume flusher
        }
        #expect(performed == Flushes(4, 0))
        #expect(machine.outstandingFrames == outstanding)

        // Dropped with nothing pending: nothing is flushed.
        let idle = flushes(space) {
            let flusher = TlbFlusher(space: space)
            _ = consume flusher
        }
        #expect(idle == Flushes(0, 0))
    }

    // MARK: syncTlbFlush

    /// Dispatch is synchronous, so `syncTlbFlush` has nothing to do: it neither performs pending
    /// operations nor waits.
    @Test func syncTlbFlushIsANoOp() throws {
        let machine = makeMachine(cpus: 2)
        let space = try activeSpace(machine)
        var cursor = try space.cursorMut(pages(base, 8))
        let kept = try FrameAllocOptions().allocFrame(in: machine)
        let outstanding = machine.outstandingFrames

        let before = space.tlbStatistics(cpu: 1)
        cursor.flusher.issueTlbFlushWith(.single(base), keeping: kept)
        cursor.flusher.syncTlbFlush()
        #expect(space.tlbStatistics(cpu: 1) == before)
        let stillPending = cursor.flusher.hasPendingFlush
        #expect(stillPending)
        #expect(machine.outstandingFrames == outstanding)

        let dispatched = flushes(space, cpu: 1) {
            cursor.flusher.dispatchTlbFlush()
            cursor.flusher.syncTlbFlush()
        }
        #expect(dispatched == Flushes(1, 0))
        #expect(machine.outstandingFrames == outstanding - 1)
        let afterSync = flushes(space, cpu: 1) { cursor.flusher.syncTlbFlush() }
        #expect(afterSync == Flushes(0, 0))
        _ = consume cursor
    }
}

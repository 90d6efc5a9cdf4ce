// TLB shootdowns across simulated CPUs: a space's flushes reach every CPU in its `cpus` set and
// no other; a stale entry on a remote CPU stays usable until a flush reaches it; switching and
// dropping spaces keep the set and the CPUs' CR3 honest; and under concurrent unmapping, readers
// on other CPUs only ever see a frame that was mapped at the address they read, never a freed
// or reused one.

import Foundation
import Synchronization
import Testing
import OSTDHost
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

/// Makes `space` current on each of `cpus`, from that CPU.
private func activate(_ space: VmSpace, on cpus: [Int]) {
    for cpu in cpus { space.machine.withCpu(cpu) { space.activate(on: cpu) } }
}

/// Maps fresh read-write frames over `count` pages from `start`; the first word of page `i`
/// holds `tag + i`.
private func mapTagged(_ space: VmSpace, _ start: Vaddr, count: Int, tag: UInt64) throws {
    var cursor = try space.cursorMut(pages(start, count))
    for i in 0..<count {
        let frame = try FrameAllocOptions().allocFrame(in: space.machine)
        try frame.writeVal(at: 0, tag + UInt64(i))
        cursor.map(frame, .user(.rw))
    }
}

/// Reads the `UInt64` at `va` on `cpu`.
private func read64(_ space: VmSpace, _ va: Vaddr, on cpu: Int) throws(OSTDError) -> UInt64 {
    try space.machine.withCpu(cpu) { () throws(OSTDError) in
        try space.withReader(at: va, count: 8) { (reader: inout VmReader<Fallible>) throws(OSTDError) in
            try reader.readVal(UInt64.self)
        }
    }
}

/// Writes `value` at `va` on `cpu`.
private func write64(_ space: VmSpace, _ va: Vaddr, _ value: UInt64, on cpu: Int) throws(OSTDError) {
    try space.machine.withCpu(cpu) { () throws(OSTDError) in
        try space.withWriter(at: va, count: 8) { (writer: inout VmWriter<Fallible>) throws(OSTDError) in
            try writer.writeVal(value)
        }
    }
}

/// Unmaps `range` from CPU 0; returns the frames it held.
@discardableResult
private func unmap(_ space: VmSpace, _ range: Range<Vaddr>) throws -> Int {
    try space.machine.withCpu(0) { () throws in
        var cursor = try space.cursorMut(range)
        return cursor.unmap(range.upperBound - range.lowerBound)
    }
}

// Threads: `runThreads`, `Failures` and `SharedInt` are in Threads.swift.

/// Every tag ever mapped at each page, recorded before the mapping was made. Guarded by an
/// `NSLock` (pthread-based, so ThreadSanitizer sees it; it does not see `Mutex`'s futex).
private final class TagHistory: @unchecked Sendable {
    private let lock = NSLock()
    private var tags: [Set<UInt64>]
    init(pages: Int) { tags = Array(repeating: [], count: pages) }
    func add(_ tag: UInt64, page: Int) { lock.withLock { _ = tags[page].insert(tag) } }
    func contains(_ tag: UInt64, page: Int) -> Bool { lock.withLock { tags[page].contains(tag) } }
}

@Suite struct TlbShootdownTests {
    /// CPU 1 caches a writable translation; CPU 0 write-protects the page without flushing. CPU 1
    /// can still write through its stale entry (CPU 0, which cached nothing, cannot); once CPU 0
    /// dispatches a flush of the page, CPU 1's write faults.
    @Test func staleWritableEntryOnAnotherCpuLastsUntilTheFlush() throws {
        let machine = makeMachine(cpus: 2)
        let space = try VmSpace(machine: machine)
        activate(space, on: [0, 1])
        #expect(space.cpus.load() == CpuSet(bits: 0b11))
        let baseline = machine.outstandingFrames
        try mapTagged(space, base, count: 1, tag: 0x100)

        #expect(try read64(space, base, on: 1) == 0x100)
        // CPU 1 caches base writable and dirty: a write through an entry cached clean walks
        // again to set D, and would find the page read-only.
        try write64(space, base, 0x100, on: 1)
        let before0 = space.tlbStatistics(cpu: 0), before1 = space.tlbStatistics(cpu: 1)

        try machine.withCpu(0) { () throws in
            var cursor = try space.cursorMut(pages(base, 1))
            #expect(cursor.protectNext(pageSize, { flags, _ in flags.remove(.w) }) == pages(base, 1))
            let pendingAfterProtect = cursor.flusher.hasPendingFlush
            #expect(!pendingAfterProtect)

            // Stale on CPU 1: the write goes through.
            try write64(space, base + 8, 0xaaaa, on: 1)
            // CPU 0 walks the table and faults.
            #expect(throws: OSTDError.pageFault(address: base + 8, copied: 0)) {
                try write64(space, base + 8, 0xbbbb, on: 0)
            }
            #expect(space.tlbStatistics(cpu: 1).pageFlushes == before1.pageFlushes)

            cursor.flusher.issueTlbFlush(.single(base))
            cursor.flusher.dispatchTlbFlush()
            let pendingAfterDispatch = cursor.flusher.hasPendingFlush
            #expect(!pendingAfterDispatch)
        }
        #expect(delta(space.tlbStatistics(cpu: 0), before0) == Flushes(1, 0))
        #expect(delta(space.tlbStatistics(cpu: 1), before1) == Flushes(1, 0))

        #expect(throws: OSTDError.pageFault(address: base + 8, copied: 0)) { try write64(space, base + 8, 0xcccc, on: 1) }
        #expect(try read64(space, base + 8, on: 1) == 0xaaaa)   // the stale write landed in the frame
        #expect(try read64(space, base + 8, on: 0) == 0xaaaa)

        try unmap(space, pages(base, 1))
        #expect(machine.outstandingFrames == baseline)
    }

    /// `unmap` flushes every CPU in the space's set, and only those: afterwards no CPU of the set
    /// can reach the page.
    @Test func unmapFlushesEveryCpuOfTheSpace() throws {
        let machine = makeMachine(cpus: 4)
        let space = try VmSpace(machine: machine)
        activate(space, on: [0, 1])
        let other = try VmSpace(machine: machine)
        activate(other, on: [2])
        let baseline = machine.outstandingFrames
        try mapTagged(space, base, count: 2, tag: 0x200)
        for cpu in [0, 1] {
            #expect(try read64(space, base, on: cpu) == 0x200)
            #expect(try read64(space, base + pageSize, on: cpu) == 0x201)
        }
        let before = (0..<4).map { space.tlbStatistics(cpu: $0) }

        #expect(try unmap(space, pages(base, 1)) == 1)
        let after = (0..<4).map { space.tlbStatistics(cpu: $0) }
        #expect(delta(after[0], before[0]) == Flushes(1, 0))
        #expect(delta(after[1], before[1]) == Flushes(1, 0))
        #expect(after[2] == before[2], "CPU 2 runs another space")
        #expect(after[3] == before[3], "CPU 3 runs no space")
        for cpu in [0, 1] {
            #expect(throws: OSTDError.pageFault(address: base, copied: 0)) { try read64(space, base, on: cpu) }
            #expect(try read64(space, base + pageSize, on: cpu) == 0x201, "only the unmapped page was flushed")
        }

        try unmap(space, pages(base, 2))
        for cpu in [0, 1] {
            #expect(throws: OSTDError.pageFault(address: base + pageSize, copied: 0)) {
                try read64(space, base + pageSize, on: cpu)
            }
        }
        #expect(machine.outstandingFrames == baseline)
    }

    /// Activating another space on CPU 1 takes CPU 1 out of the first space's set: the first
    /// space's unmaps no longer flush CPU 1 (whose CR3 no longer points at it). Activating the
    /// first space again brings CPU 1 back.
    @Test func activatingAnotherSpaceLeavesTheSet() throws {
        let machine = makeMachine(cpus: 2)
        let first = try VmSpace(machine: machine)
        let second = try VmSpace(machine: machine)
        activate(first, on: [0, 1])
        let baseline = machine.outstandingFrames
        try mapTagged(first, base, count: 3, tag: 0x300)
        #expect(try read64(first, base, on: 1) == 0x300)

        let beforeSwitch = first.tlbStatistics(cpu: 1)
        activate(second, on: [1])
        #expect(first.cpus.load() == CpuSet(bits: 0b01))
        #expect(second.cpus.load() == CpuSet(bits: 0b10))
        #expect(!first.isActive(on: 1) && second.isActive(on: 1) && first.isActive(on: 0))
        #expect(delta(first.tlbStatistics(cpu: 1), beforeSwitch) == Flushes(0, 1), "a CR3 write flushes the TLB")
        #expect(throws: OSTDError.notActive(cpu: 1)) { try read64(first, base, on: 1) }

        let before0 = first.tlbStatistics(cpu: 0), before1 = first.tlbStatistics(cpu: 1)
        #expect(try unmap(first, pages(base, 1)) == 1)
        #expect(delta(first.tlbStatistics(cpu: 0), before0) == Flushes(1, 0))
        #expect(first.tlbStatistics(cpu: 1) == before1, "CPU 1 left the space: it is not flushed")

        // Back on CPU 1: the set has it again, and the second space lost it.
        activate(first, on: [1])
        #expect(first.cpus.load() == CpuSet(bits: 0b11))
        #expect(second.cpus.load().isEmpty)
        #expect(try read64(first, base + pageSize, on: 1) == 0x301)
        let again1 = first.tlbStatistics(cpu: 1)
        #expect(try unmap(first, pages(base + pageSize, 1)) == 1)
        #expect(delta(first.tlbStatistics(cpu: 1), again1) == Flushes(1, 0))

        try unmap(first, pages(base, 3))
        #expect(machine.outstandingFrames == baseline)
    }

    /// A space that goes away while active deactivates itself: no CPU keeps its CR3 (whose frame
    /// is freed and may come back as another space's root), and other spaces activate normally.
    @Test func droppingAnActiveSpaceDeactivatesIt() throws {
        let machine = makeMachine(cpus: 2)
        let first = try VmSpace(machine: machine)
        activate(first, on: [0])
        let baseline = machine.outstandingFrames
        do {
            let doomed = try VmSpace(machine: machine)
            activate(doomed, on: [0, 1])
            try mapTagged(doomed, base, count: 1, tag: 0x400)
            #expect(try read64(doomed, base, on: 1) == 0x400)
            #expect(doomed.isActive(on: 0) && doomed.isActive(on: 1))
            #expect(!first.isActive(on: 0))
            #expect(first.cpus.load().isEmpty)
        }
        // Its page table, kernel half and mapped frame are gone with it.
        #expect(machine.outstandingFrames == baseline)
        #expect(!first.isActive(on: 0) && !first.isActive(on: 1))

        // A new space, which may well reuse the old root frame, is active nowhere.
        let fresh = try VmSpace(machine: machine)
        #expect(!fresh.isActive(on: 0) && !fresh.isActive(on: 1))
        #expect(throws: OSTDError.notActive(cpu: 1)) { try read64(fresh, base, on: 1) }
        #expect(throws: OSTDError.notActive(cpu: 0)) { try read64(fresh, base, on: 0) }

        activate(fresh, on: [1])
        activate(first, on: [0])
        #expect(fresh.isActive(on: 1) && first.isActive(on: 0))
        #expect(fresh.cpus.load() == CpuSet(bits: 0b10))
        #expect(first.cpus.load() == CpuSet(bits: 0b01))
        try mapTagged(fresh, base, count: 1, tag: 0x500)
        #expect(try read64(fresh, base, on: 1) == 0x500)
        try unmap(fresh, pages(base, 1))
    }

    /// OSTD's threshold: a batch of 31 single-page flushes stays page by page; a 32nd page turns
    /// it into one flush of everything, on every CPU of the space.
    @Test func thirtyTwoPendingPagesCollapseIntoOneFullFlush() throws {
        let machine = makeMachine(cpus: 2)
        let space = try VmSpace(machine: machine)
        activate(space, on: [0, 1])
        let baseline = machine.outstandingFrames
        try mapTagged(space, base, count: 64, tag: 0x600)
        for cpu in [0, 1] { #expect(try read64(space, base, on: cpu) == 0x600) }

        var before = [space.tlbStatistics(cpu: 0), space.tlbStatistics(cpu: 1)]
        #expect(try unmap(space, pages(base, 31)) == 31)
        for cpu in [0, 1] { #expect(delta(space.tlbStatistics(cpu: cpu), before[cpu]) == Flushes(31, 0)) }

        before = [space.tlbStatistics(cpu: 0), space.tlbStatistics(cpu: 1)]
        #expect(try unmap(space, pages(base + 31 * pageSize, 32)) == 32)
        for cpu in [0, 1] { #expect(delta(space.tlbStatistics(cpu: cpu), before[cpu]) == Flushes(0, 1)) }

        // The same with flushes issued by hand.
        before = [space.tlbStatistics(cpu: 0), space.tlbStatistics(cpu: 1)]
        try machine.withCpu(0) { () throws in
            var cursor = try space.cursorMut(pages(base, 64))
            for i in 0..<40 { cursor.flusher.issueTlbFlush(.single(base + i * pageSize)) }
            cursor.flusher.dispatchTlbFlush()
        }
        for cpu in [0, 1] { #expect(delta(space.tlbStatistics(cpu: cpu), before[cpu]) == Flushes(0, 1)) }
        for cpu in [0, 1] {
            #expect(try read64(space, base + 63 * pageSize, on: cpu) == 0x600 + 63)
        }

        try unmap(space, pages(base, 64))
        #expect(machine.outstandingFrames == baseline)
    }

    /// Unmapping a range that holds whole page-table nodes detaches them as subtrees (a cursor
    /// over two level-1 nodes locks their parent, so it can take them): one flush of everything
    /// (512 pages each) on every CPU of the space, then the subtrees and their frames go.
    @Test func unmappingWholeNodesFlushesEverythingAndFreesThem() throws {
        let machine = makeMachine(cpus: 2)
        let space = try VmSpace(machine: machine)
        activate(space, on: [0, 1])
        let baseline = machine.outstandingFrames
        let nodes = pages(base, 1024)   // two level-1 nodes (base is 4 MiB aligned)
        try mapTagged(space, base + 5 * pageSize, count: 3, tag: 0x700)
        try mapTagged(space, base + 600 * pageSize, count: 1, tag: 0x800)
        for cpu in [0, 1] {
            #expect(try read64(space, base + 6 * pageSize, on: cpu) == 0x701)
            #expect(try read64(space, base + 600 * pageSize, on: cpu) == 0x800)
        }
        let before = [space.tlbStatistics(cpu: 0), space.tlbStatistics(cpu: 1)]
        #expect(try unmap(space, nodes) == 4)
        for cpu in [0, 1] {
            #expect(delta(space.tlbStatistics(cpu: cpu), before[cpu]) == Flushes(0, 1))
            #expect(throws: OSTDError.pageFault(address: base + 6 * pageSize, copied: 0)) {
                try read64(space, base + 6 * pageSize, on: cpu)
            }
            #expect(throws: OSTDError.pageFault(address: base + 600 * pageSize, copied: 0)) {
                try read64(space, base + 600 * pageSize, on: cpu)
            }
        }
        #expect(machine.outstandingFrames == baseline)
    }

    /// A 2 MiB mapping is cached as one entry; a stale one lets CPU 1 write anywhere in the huge
    /// page until a flush of any address inside it reaches CPU 1.
    @Test func hugePageEntriesAreShotDownToo() throws {
        let machine = makeMachine(cpus: 2)
        let space = try VmSpace(machine: machine)
        activate(space, on: [0, 1])
        let baseline = machine.outstandingFrames
        let huge = base..<(base + 512 * pageSize)
        let segment = try FrameAllocOptions().allocSegment(512, in: machine)
        try segment.writeVal(at: 0x12340, UInt64(0x900))
        do {
            var cursor = try space.cursorMut(huge)
            cursor.map(MappedItem(hugePage: segment, property: .user(.rw)))
        }
        #expect(try read64(space, base + 0x12340, on: 1) == 0x900)
        try write64(space, base + 0x12340, 0x900, on: 1)   // cached dirty, as a stale write needs
        let cached = space.tlbStatistics(cpu: 1)
        #expect(try read64(space, base + (1 << 20), on: 1) == 0)
        #expect(space.tlbStatistics(cpu: 1).misses == cached.misses, "one entry covers the huge page")

        try machine.withCpu(0) { () throws in
            var cursor = try space.cursorMut(huge)
            #expect(cursor.protectNext(512 * pageSize, { flags, _ in flags.remove(.w) }) == huge)
            try write64(space, base + (1 << 20) + 8, 0xa, on: 1)   // through the stale entry
            #expect(throws: OSTDError.pageFault(address: base + 8, copied: 0)) { try write64(space, base + 8, 0xb, on: 0) }
            cursor.flusher.issueTlbFlush(.single(base + 77 * pageSize))
            cursor.flusher.dispatchTlbFlush()
        }
        #expect(throws: OSTDError.pageFault(address: base + 8, copied: 0)) { try write64(space, base + 8, 0xc, on: 1) }
        #expect(try read64(space, base + (1 << 20) + 8, on: 1) == 0xa)

        let before = [space.tlbStatistics(cpu: 0), space.tlbStatistics(cpu: 1)]
        #expect(try unmap(space, huge) == 512)
        for cpu in [0, 1] {
            #expect(delta(space.tlbStatistics(cpu: cpu), before[cpu]).pages + delta(space.tlbStatistics(cpu: cpu), before[cpu]).full >= 1)
            #expect(throws: OSTDError.pageFault(address: base + (1 << 20), copied: 0)) {
                try read64(space, base + (1 << 20), on: cpu)
            }
        }
        #expect(machine.outstandingFrames == baseline)
    }

    /// CPU 0 unmaps and remaps a set of pages over and over (page by page, all of them in one
    /// cursor, or by detaching their whole page-table node), each time with fresh frames tagged
    /// with the page and the round, while CPUs 1 to 3 keep reading them. Every read either
    /// faults or returns a whole page holding one tag that was mapped at that address: never a
    /// frame that was freed (with little memory free, freed frames are soon reused for other
    /// pages).
    @Test func concurrentReadersNeverSeeFreedFrames() throws {
        let machine = makeMachine(memory: 16 << 20, cpus: 4)
        let space = try VmSpace(machine: machine, sharedReader: true)
        activate(space, on: [0, 1, 2, 3])
        let baseline = machine.outstandingFrames
        let pageCount = 8
        let region = pages(base, pageCount)
        let nodes = pages(base, 1024)   // two level-1 nodes, the first holding the region
        let rounds = 200
        let history = TagHistory(pages: pageCount)
        let words = pageSize / 8

        /// A page's tag in a round: the page, the round and a marker.
        @Sendable func tag(_ page: Int, _ round: Int) -> UInt64 {
            0x7a60_0000_0000_0000 | UInt64(page) << 32 | UInt64(round)
        }
        /// Maps a fresh frame filled with `tag(page, round)` at the cursor (at `page`).
        @Sendable func mapFresh(_ cursor: inout VmSpace.CursorMut, page: Int, round: Int) throws {
            let frame = try FrameAllocOptions().zeroed(false).allocFrame(in: machine)
            let t = tag(page, round)
            try frame.writeSlice(at: 0, [UInt64](repeating: t, count: words))
            history.add(t, page: page)
            cursor.map(frame, .user(.rw))
        }

        try machine.withCpu(0) { () throws in
            var cursor = try space.cursorMut(region)
            for page in 0..<pageCount { try mapFresh(&cursor, page: page, round: 0) }
        }

        // Leave only a few frames free, so that frames freed by an unmap are soon handed out
        // again for other pages: a read through a stale translation would then see another
        // page's tag (with plenty of memory the allocator would not reuse them in this run).
        var hog: [Paddr] = []
        while machine.freeFrames > 40 { hog.append(try FrameAllocOptions().zeroed(false).allocFrame(in: machine).intoRaw()) }
        defer { for paddr in hog { _ = Frame<UntypedMeta>.fromRaw(paddr, in: machine) } }

        let failures = Failures()
        let done = SharedInt(), started = SharedInt()
        let reads = SharedInt(), faults = SharedInt()
        let finished = runThreads(4) { thread in
            machine.withCpu(thread) {
                if thread == 0 {
                    guard waitUntil(.seconds(5), { started.load() == 3 }) else {
                        failures.record("the readers never started")
                        done.store(1)
                        return
                    }
                    do {
                        for round in 1...rounds {
                            if round % 3 == 2 {
                                // The whole level-1 node: it goes as a detached subtree, after a
                                // flush of everything; the new pages come in a new node.
                                var cursor = try space.cursorMut(nodes)
                                let freed = cursor.unmap(1024 * pageSize)
                                if freed != pageCount { failures.record("round \(round): unmapped \(freed) frames with the node") }
                                try cursor.jump(base)
                                for page in 0..<pageCount { try mapFresh(&cursor, page: page, round: round) }
                            } else if round % 3 == 1 {
                                // All pages in one cursor: one batch of flushes, then new frames.
                                var cursor = try space.cursorMut(region)
                                let freed = cursor.unmap(pageCount * pageSize)
                                if freed != pageCount { failures.record("round \(round): unmapped \(freed) frames") }
                                try cursor.jump(base)
                                for page in 0..<pageCount { try mapFresh(&cursor, page: page, round: round) }
                            } else {
                                // Page by page, each replaced at once.
                                for page in 0..<pageCount {
                                    let va = base + page * pageSize
                                    var cursor = try space.cursorMut(pages(va, 1))
                                    let freed = cursor.unmap(pageSize)
                                    if freed != 1 { failures.record("round \(round): unmapped \(freed) frames at \(va)") }
                                    try cursor.jump(va)
                                    try mapFresh(&cursor, page: page, round: round)
                                }
                            }
                            sched_yield()   // let the readers in between rounds
                        }
                    } catch {
                        failures.record("mapper: \(error)")
                    }
                    done.store(1)
                } else {
                    started.add(1)
                    var buffer = [UInt64](repeating: 0, count: words)
                    var page = thread
                    while done.load() == 0 {
                        page = (page * 5 + 3) % pageCount
                        let va = base + page * pageSize
                        let error: OSTDError? = buffer.withUnsafeMutableBytes { bytes in
                            do throws(OSTDError) {
                                var writer = unsafe VmWriter<Infallible>(bytes)
                                var reader = try space.createReader(va, pageSize)
                                _ = try reader.readFallible(&writer)
                                return nil
                            } catch {
                                return error
                            }
                        }
                        switch error {
                        case nil:
                            reads.add(1)
                            let first = buffer[0]
                            if !history.contains(first, page: page) {
                                failures.record("CPU \(thread) read 0x\(String(first, radix: 16)) at \(va), never mapped there")
                            } else if let other = buffer.firstIndex(where: { $0 != first }) {
                                failures.record("CPU \(thread) read a torn page at \(va): word \(other) is 0x\(String(buffer[other], radix: 16)), word 0 is 0x\(String(first, radix: 16))")
                            }
                        case .pageFault(let address, let copied)?:
                            faults.add(1)
                            if address != va || copied != 0 {
                                failures.record("CPU \(thread): fault at \(address) after \(copied) bytes reading \(va)")
                            }
                        case let other?:
                            failures.record("CPU \(thread): \(other)")
                        }
                        sched_yield()
                    }
                }
            }
        }
        failures.report()
        try #require(finished, "the threads did not finish")
        #expect(reads.load() > 0)
        #expect(space.cpus.load() == CpuSet(bits: 0b1111))

        // Each page holds its last round's tag.
        for page in 0..<pageCount {
            #expect(try read64(space, base + page * pageSize, on: 2) == tag(page, rounds))
        }
        #expect(try unmap(space, region) == pageCount)
        for paddr in hog { _ = Frame<UntypedMeta>.fromRaw(paddr, in: machine) }
        hog = []
        #expect(machine.outstandingFrames == baseline)
    }
}

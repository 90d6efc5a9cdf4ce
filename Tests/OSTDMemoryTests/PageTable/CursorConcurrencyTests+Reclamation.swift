// Node reclamation with several threads: threads map and unmap pages next to each other so the
// nodes on their paths are allocated and reclaimed over and over; with `defersReclamation`,
// detached nodes wait in the table until `reclaimRetired()`, or until the table goes.

import Foundation
import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

extension CursorConcurrencyTests {
    // MARK: 3. Reclamation under concurrency

    /// One thread's page, and a wider range around it that holds no other thread's page.
    struct Lane: Sendable {
        let page: UInt64
        let wide: Range<Vaddr>
        init(_ page: UInt64, _ wide: Range<UInt64>) {
            self.page = page
            self.wide = Vaddr(wide.lowerBound)..<Vaddr(wide.upperBound)
        }
    }

    struct ReclaimSetup: Sendable, CustomTestStringConvertible {
        let name: String
        let lanes: [Lane]
        let deferred: Bool
        var testDescription: String { name + (deferred ? ", deferred reclamation" : "") }
    }

    static let reclaimSetups = [
        ReclaimSetup(name: "same level-3 node, different level-2 nodes",
                     lanes: [Lane(0x1000, 0..<gib1), Lane(gib1 + 0x1000, (gib1 - mib2)..<(gib1 + mib2))],
                     deferred: false),
        ReclaimSetup(name: "same level-2 node, different level-1 nodes",
                     lanes: [Lane(0x1000, 0..<mib2), Lane(mib2 + 0x1000, (mib2 - 0x10000)..<(mib2 + 0x2000))],
                     deferred: false),
        ReclaimSetup(name: "three threads sharing level-3 and level-2 nodes",
                     lanes: [Lane(gib1 + 0x1000, gib1..<(gib1 + mib2)),
                             Lane(gib1 + mib2 + 0x1000, (gib1 + mib2 - 0x4000)..<(gib1 + 2 * mib2)),
                             Lane(2 * gib1 + 0x1000, (2 * gib1 - mib2)..<(2 * gib1 + mib2))],
                     deferred: false),
        ReclaimSetup(name: "same level-3 node, different level-2 nodes",
                     lanes: [Lane(0x1000, 0..<gib1), Lane(gib1 + 0x1000, (gib1 - mib2)..<(gib1 + mib2))],
                     deferred: true),
    ]

    /// Each thread maps then unmaps one page again and again, so the nodes on its path are
    /// allocated and reclaimed over and over while the other threads do the same next to it, in
    /// three styles: unmapping in a fresh one-page cursor (reclaimed when it is dropped),
    /// mapping and unmapping in one cursor, and in a cursor over a wider range (nodes below its
    /// locked root go at once, the rest when the cursor is dropped).
    @Test(arguments: reclaimSetups)
    func reclamationUnderConcurrency(setup: ReclaimSetup) throws {
        let (machine, table) = try machineWithEmptyTable(memory: 64 << 20)
        table.defersReclamation = setup.deferred
        let failures = Failures()
        let rounds = setup.deferred ? 300 : 600
        let property = rw
        let finished = runThreads(setup.lanes.count) { thread in
            let va = Vaddr(setup.lanes[thread].page)
            let one = pages(va.rawValue, 1)
            let region = setup.lanes[thread].wide
            for round in 0..<rounds {
                do {
                    let frame = try FrameAllocOptions().zeroed(false).allocFrame(in: machine)
                    let paddr = frame.paddr
                    switch round % 3 {
                    case 0:
                        do {
                            var cursor = try table.cursorMut(one)
                            cursor.map(MappedItem(frame: frame, property: property))
                            _ = consume cursor
                        }
                        var cursor = try table.cursorMut(one)
                        if case .mapped(_, let item)? = cursor.takeNext(pageSize) {
                            failures.check(item.paddr == paddr, "thread \(thread): took a foreign page")
                        } else {
                            failures.record("thread \(thread): its page vanished")
                        }
                        _ = consume cursor
                    case 1:
                        var cursor = try table.cursorMut(one)
                        cursor.map(MappedItem(frame: frame, property: property))
                        try cursor.jump(va)
                        failures.check(try cursor.query().item?.paddr == paddr, "thread \(thread): map lost")
                        try cursor.jump(va)
                        failures.check(takeAll(&cursor, upTo: one.upperBound) == 1, "thread \(thread): take failed")
                        _ = consume cursor
                    default:
                        var cursor = try table.cursorMut(region)
                        try cursor.jump(va)
                        cursor.map(MappedItem(frame: frame, property: property))
                        try cursor.jump(region.lowerBound)
                        failures.check(cursor.findNext(region.upperBound - region.lowerBound) == va, "thread \(thread): map lost")
                        failures.check(takeAll(&cursor, upTo: region.upperBound) == 1, "thread \(thread): take failed")
                        _ = consume cursor
                    }
                } catch {
                    failures.record("thread \(thread) round \(round): \(error)")
                }
            }
        }
        try requireThreadsDone(finished, failures, table, deadlock: "threads deadlocked")
        #expect(table.structuralViolations() == [])
        #expect(table.nodes().count == 1)
        if setup.deferred {
            let retired = table.retiredCount
            #expect(retired > 0)
            #expect(machine.outstandingFrames == 1 + retired)
            #expect(table.reclaimRetired() == retired)
            #expect(table.retiredCount == 0)
        }
        #expect(machine.outstandingFrames == 1)
        #expect(machine.cleanInv())
    }

    // MARK: 4. Deferred reclamation

    /// With `defersReclamation`, unmapping the last page detaches the three nodes of its path but
    /// does not free them: they wait in the table, still counted as outstanding frames, until
    /// `reclaimRetired()`.
    @Test func deferredReclamationWaitsForReclaimRetired() throws {
        let (machine, table) = try machineWithEmptyTable()
        table.defersReclamation = true
        let va = Vaddr(gib1 + 0x5000)
        let paddr = try mapFresh(table, va)
        #expect(table.nodes().count == 4)
        #expect(machine.outstandingFrames == 5)   // root, 3 nodes, the frame
        do {
            var cursor = try table.cursorMut(va..<(va + pageSize))
            if case .mapped(_, let item)? = cursor.takeNext(pageSize) {
                #expect(item.paddr == paddr)
            } else {
                Issue.record("nothing taken")
            }
            _ = consume cursor
        }
        // Detached (the tree is back to its root) but not freed.
        #expect(table.nodes().count == 1)
        #expect(table.structuralViolations() == [])
        #expect(table.retiredCount == 3)
        #expect(machine.outstandingFrames == 4)
        #expect(table.reclaimRetired() == 3)
        #expect(table.retiredCount == 0)
        #expect(machine.outstandingFrames == 1)
        #expect(table.reclaimRetired() == 0)
        #expect(machine.cleanInv())
    }

    /// The same when the nodes go while the cursor lives (below its locked subtree root): they
    /// are handed to the table only when the cursor is dropped, and wait there.
    @Test func deferredReclamationOfNodesBelowTheCursorRoot() throws {
        let (machine, table) = try machineWithEmptyTable()
        table.defersReclamation = true
        for round in 0..<3 {
            let va = Vaddr(UInt64(round) * gib512 + gib1 + 0x5000)
            try mapFresh(table, va)
            do {
                // Spans two root entries: the cursor locks the root.
                var cursor = try table.cursorMut(Vaddr(0)..<Vaddr(4 * gib512))
                #expect(cursor.lockedLevel == 4)
                try cursor.jump(va)
                #expect(takeAll(&cursor, upTo: va + pageSize) == 1)
                #expect(table.nodes().count == 1)
                #expect(table.retiredCount == 3 * round)   // not yet handed over
                _ = consume cursor
            }
            #expect(table.retiredCount == 3 * (round + 1))
            #expect(machine.outstandingFrames == 1 + 3 * (round + 1))
        }
        #expect(table.structuralViolations() == [])
        #expect(table.reclaimRetired() == 9)
        #expect(machine.outstandingFrames == 1)
    }

    /// Retired nodes still waiting when the table goes are freed with it.
    @Test func droppingTheTableFreesRetiredNodes() throws {
        let machine = makeMachine()
        do {
            let table = try PageTable<UserPtConfig>(empty: machine)
            table.defersReclamation = true
            let va = Vaddr(0x7000)
            try mapFresh(table, va)
            var cursor = try table.cursorMut(va..<(va + pageSize))
            #expect(takeAll(&cursor, upTo: va + pageSize) == 1)
            _ = consume cursor
            #expect(table.retiredCount == 3)
            #expect(machine.outstandingFrames == 4)
        }
        #expect(machine.outstandingFrames == 0)
        #expect(machine.cleanInv())
    }
}

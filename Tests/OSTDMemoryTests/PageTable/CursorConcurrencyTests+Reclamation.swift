// Node reclamation with several threads: threads map and unmap pages next to each other so the
// nodes on their paths are allocated and reclaimed over and over; and grace periods: a detached
// node waits while a read-side section that started before it was detached is open.

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
        var testDescription: String { name }
    }

    static let reclaimSetups = [
        ReclaimSetup(name: "same level-3 node, different level-2 nodes",
                     lanes: [Lane(0x1000, 0..<gib1), Lane(gib1 + 0x1000, (gib1 - mib2)..<(gib1 + mib2))]),
        ReclaimSetup(name: "same level-2 node, different level-1 nodes",
                     lanes: [Lane(0x1000, 0..<mib2), Lane(mib2 + 0x1000, (mib2 - 0x10000)..<(mib2 + 0x2000))]),
        ReclaimSetup(name: "three threads sharing level-3 and level-2 nodes",
                     lanes: [Lane(gib1 + 0x1000, gib1..<(gib1 + mib2)),
                             Lane(gib1 + mib2 + 0x1000, (gib1 + mib2 - 0x4000)..<(gib1 + 2 * mib2)),
                             Lane(2 * gib1 + 0x1000, (2 * gib1 - mib2)..<(2 * gib1 + mib2))]),
    ]

    /// Each thread maps then unmaps one page again and again, so the nodes on its path are
    /// allocated and reclaimed over and over while the other threads do the same next to it, in
    /// three styles: unmapping in a fresh one-page cursor (reclaimed when it is dropped),
    /// mapping and unmapping in one cursor, and in a cursor over a wider range (nodes below its
    /// locked root go at once, the rest when the cursor is dropped).
    @Test(arguments: reclaimSetups)
    func reclamationUnderConcurrency(setup: ReclaimSetup) throws {
        let (machine, table) = try machineWithEmptyTable(memory: 64 << 20)
        let failures = Failures()
        let rounds = 600
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
        machine.reclaimRetired()
        #expect(machine.retiredCount == 0)
        #expect(machine.outstandingFrames == 1)
        #expect(machine.cleanInv())
    }

    // MARK: 4. Grace periods

    /// Unmapping the last page detaches the three nodes of its path; while a read-side section
    /// that was open before is still open, they are not freed: they wait, still counted as
    /// outstanding frames, until the section ends and `reclaimRetired()` runs.
    @Test func detachedNodesWaitForOpenReadSections() throws {
        let (machine, table) = try machineWithEmptyTable()
        let va = Vaddr(gib1 + 0x5000)
        let paddr = try mapFresh(table, va)
        #expect(table.nodes().count == 4)
        #expect(machine.outstandingFrames == 5)   // root, 3 nodes, the frame
        table.withReadSection { section in
            #expect(table.pageWalk(va, in: section)?.paddr == paddr)
            var cursor = try! table.cursorMut(va..<(va + pageSize))
            if case .mapped(_, let item)? = cursor.takeNext(pageSize) {
                #expect(item.paddr == paddr)
            } else {
                Issue.record("nothing taken")
            }
            _ = consume cursor
            // Detached (the tree is back to its root) but not freed: this section may be in them.
            #expect(table.nodes().count == 1)
            #expect(table.structuralViolations() == [])
            #expect(machine.retiredCount == 3)
            #expect(machine.outstandingFrames == 4)
            #expect(machine.reclaimRetired(waiting: false) == 0)
            #expect(table.pageWalk(va, in: section) == nil)
        }
        #expect(machine.reclaimRetired(waiting: false) == 3)
        #expect(machine.retiredCount == 0)
        #expect(machine.outstandingFrames == 1)
        #expect(machine.reclaimRetired() == 0)
        #expect(machine.cleanInv())
    }

    /// Nodes that go while the cursor lives (below its locked subtree root) are handed over when
    /// the cursor is dropped, and wait for the open section like the others; the next cursor
    /// dropped frees those whose grace period is over. With no section open, nodes are freed as
    /// the cursor is dropped.
    @Test func nodesBelowTheCursorRootWaitForOpenReadSections() throws {
        let (machine, table) = try machineWithEmptyTable()
        for round in 0..<2 {
            let va = Vaddr(UInt64(round) * gib512 + gib1 + 0x5000)
            try mapFresh(table, va)   // its cursor's drop freed the last round's nodes
            #expect(machine.retiredCount == 0)
            table.withReadSection { _ in
                // Spans two root entries: the cursor locks the root.
                var cursor = try! table.cursorMut(Vaddr(0)..<Vaddr(4 * gib512))
                #expect(cursor.lockedLevel == 4)
                try! cursor.jump(va)
                #expect(takeAll(&cursor, upTo: va + pageSize) == 1)
                #expect(table.nodes().count == 1)
                #expect(machine.retiredCount == 0)   // not yet handed over
                _ = consume cursor
                #expect(machine.retiredCount == 3)
                #expect(machine.outstandingFrames == 1 + 3)
            }
        }
        #expect(table.structuralViolations() == [])
        #expect(machine.reclaimRetired() == 3)
        #expect(machine.outstandingFrames == 1)
        // No section open: the nodes go with the cursor.
        let va = Vaddr(gib1 + 0x5000)
        try mapFresh(table, va)
        var cursor = try table.cursorMut(va..<(va + pageSize))
        #expect(takeAll(&cursor, upTo: va + pageSize) == 1)
        _ = consume cursor
        #expect(machine.retiredCount == 0)
        #expect(machine.outstandingFrames == 1)
    }

    /// Nodes still waiting when their table goes wait in the machine, and are freed by the next
    /// reclamation after the section ends.
    @Test func nodesOutliveTheirTableUntilTheGracePeriodEnds() throws {
        let machine = makeMachine()
        let holder = try PageTable<UserPtConfig>(empty: machine)
        holder.withReadSection { _ in
            let table = try! PageTable<UserPtConfig>(empty: machine)
            let va = Vaddr(0x7000)
            try! mapFresh(table, va)
            var cursor = try! table.cursorMut(va..<(va + pageSize))
            #expect(takeAll(&cursor, upTo: va + pageSize) == 1)
            _ = consume cursor
            #expect(machine.retiredCount == 3)
        }
        #expect(machine.outstandingFrames == 1 + 3)   // `holder`'s root and the three nodes
        #expect(machine.reclaimRetired() == 3)
        #expect(machine.outstandingFrames == 1)
    }
}

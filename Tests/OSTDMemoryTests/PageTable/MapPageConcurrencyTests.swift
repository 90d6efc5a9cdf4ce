// The one-page map's fast path (`PageTable.tryMapPage`) against a thread that empties the same
// 2 MiB region again and again, so that the level-1 node the fast path walks to is detached (and
// marked stray) under it, or is missing and built again by the fast path's allocating descent:
// every page it reports mapped must be taken exactly once, with its own frame, and nothing may be
// left over or leaked.

import Synchronization
import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

@Suite struct MapPageConcurrencyTests {
    @Test func fastMapsRaceWithANodeBeingDetached() throws {
        let (machine, table) = try machineWithEmptyTable(memory: 32 << 20)
        let region = pages(gib1, 512)
        let failures = Failures()
        let mapped = Atomic<Int>(0)
        let taken = Atomic<Int>(0)
        let declined = Atomic<Int>(0)
        let done = Atomic<Bool>(false)
        let finished = runThreads(2) { thread in
            if thread == 0 {
                for round in 0..<50_000 {
                    let va = region.lowerBound + (round % 8) * pageSize
                    do {
                        let item = MappedItem(frame: try FrameAllocOptions().zeroed(false).allocFrame(in: machine),
                                              property: .user(.rw))
                        // SAFETY: a table no CPU uses; the item owns its frame.
                        switch unsafe table.tryMapPage(item, at: va) {
                        case .mapped: mapped.add(1, ordering: .relaxed)
                        case .alreadyMapped: break
                        case .declined(let item):
                            declined.add(1, ordering: .relaxed)
                            var cursor = try table.cursorMut(va..<(va + pageSize))
                            // SAFETY: as above.
                            if unsafe cursor.tryMap(item) == nil { mapped.add(1, ordering: .relaxed) }
                        }
                    } catch {
                        failures.record("round \(round): \(error)")
                    }
                }
                done.store(true, ordering: .releasing)
            } else {
                repeat {
                    do {
                        var cursor = try table.cursorMut(region)
                        taken.add(takeAll(&cursor, upTo: region.upperBound), ordering: .relaxed)
                    } catch {
                        failures.record("take: \(error)")
                    }
                } while !done.load(ordering: .acquiring)
            }
        }
        try requireThreadsDone(finished, failures, table, deadlock: "threads deadlocked")
        var cursor = try table.cursorMut(region)
        taken.add(takeAll(&cursor, upTo: region.upperBound), ordering: .relaxed)
        _ = consume cursor
        #expect(mapped.load(ordering: .relaxed) == taken.load(ordering: .relaxed))
        #expect(declined.load(ordering: .relaxed) > 0)
        #expect(table.structuralViolations() == [])
        #expect(table.nodes().count == 1)
        machine.reclaimRetired()
        #expect(machine.outstandingFrames == 1)
        #expect(machine.cleanInv())
    }
}

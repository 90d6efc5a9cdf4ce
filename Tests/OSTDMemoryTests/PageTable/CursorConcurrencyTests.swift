// Cursors from several threads: overlapping cursors serialize, cursors over disjoint subtrees run
// at the same time, and mapping, unmapping and node reclamation from several threads keep the
// tree sound and leak nothing. Threads are Foundation threads; every wait has a deadline, so a
// deadlock shows up as a failed expectation rather than a hung test run.
//
// This file holds the suite and its mutual-exclusion and parallelism tests; the shared helpers
// are in `CursorConcurrencyTests+Helpers.swift`, the stress test and reclamation in
// `CursorConcurrencyTests+<Concern>.swift`.

import Foundation
import Synchronization
import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

// MARK: - Tests

@Suite(.serialized) struct CursorConcurrencyTests {
    let rw = PageProperty.user(.rw)

    // MARK: 1. Mutual exclusion

    static let overlapping: [CursorPair] = [
        CursorPair("same page", pages(0x1000, 1), pages(0x1000, 1)),
        CursorPair("partial overlap across a 2 MiB boundary", pages(mib2 - 4 * kib4, 6), pages(mib2, 6)),
        CursorPair("small inside large (large first)", Vaddr(0)..<Vaddr(2 * gib1), pages(gib1 + 0x5000, 1)),
        CursorPair("large around small (small first)", pages(gib1 + 0x5000, 1), Vaddr(0)..<Vaddr(2 * gib1)),
        CursorPair("across a 512 GiB boundary", pages(gib512 - 2 * kib4, 4), pages(gib512, 1)),
        CursorPair("root-locking cursor against a deep one", pages(gib512 - kib4, 2), pages(gib512 - kib4, 1)),
        CursorPair("mutable, then read-only", pages(0x1000, 2), pages(0x2000, 1), bKind: .readOnly),
        CursorPair("read-only, then mutable", pages(0x1000, 2), pages(0x2000, 1), aKind: .readOnly),
    ]

    /// A holds a cursor and changes the mapping at an address both ranges cover; B, asking for an
    /// overlapping cursor meanwhile, gets it only after A dropped its own, and then sees A's change.
    @Test(arguments: overlapping)
    func overlappingCursorsSerialize(pair: CursorPair) throws {
        let (machine, table) = try machineWithEmptyTable()
        let shared = max(pair.a.lowerBound, pair.b.lowerBound)
        #expect(pair.a.contains(shared) && pair.b.contains(shared))
        let original = try mapFresh(table, shared)
        let expected = SharedInt()   // the paddr B must find at `shared`
        expected.store(Int(original.rawValue))

        let holders = SharedInt()    // cursors alive now; never more than one
        let aHolding = SharedInt(), bStarting = SharedInt(), aReleasing = SharedInt()
        let bSawRelease = SharedInt()
        let failures = Failures()

        let finished = runThreads(2) { thread in
            do {
                if thread == 0 {
                    // A
                    func hold() {
                        failures.check(holders.add(1) == 1, "A: another cursor is alive")
                        aHolding.store(1)
                        failures.check(waitUntil(.seconds(5)) { bStarting.load() == 1 }, "A: B never started")
                        Thread.sleep(forTimeInterval: 0.05)   // B is now spinning on a lock
                        aReleasing.store(1)
                        holders.add(-1)
                    }
                    switch pair.aKind {
                    case .mutable:
                        var cursor = try table.cursorMut(pair.a)
                        try cursor.jump(shared)
                        if case .mapped(let va, let item)? = cursor.takeNext(pageSize) {
                            failures.check(va == shared && item.paddr == original, "A: took the wrong page")
                        } else {
                            failures.record("A: nothing to take at \(shared)")
                        }
                        let frame = try FrameAllocOptions().zeroed(false).allocFrame(in: machine)
                        expected.store(Int(frame.paddr.rawValue))
                        try cursor.jump(shared)
                        cursor.map(MappedItem(frame: frame, property: rw))
                        hold()
                        _ = consume cursor
                    case .readOnly:
                        let cursor = try table.cursor(pair.a)
                        hold()
                        _ = consume cursor
                    }
                } else {
                    // B
                    guard waitUntil(.seconds(5), { aHolding.load() == 1 }) else {
                        failures.record("B: A never got its cursor")
                        return
                    }
                    func check(_ item: MappedItemRef?) {
                        failures.check(aReleasing.load() == 1, "B got its cursor while A still held one")
                        failures.check(holders.add(1) == 1, "B: another cursor is alive")
                        failures.check(item?.paddr.rawValue == UInt64(expected.load()),
                                       "B does not see A's mapping: \(String(describing: item))")
                        holders.add(-1)
                    }
                    bStarting.store(1)
                    switch pair.bKind {
                    case .mutable:
                        var cursor = try table.cursorMut(pair.b)
                        bSawRelease.store(aReleasing.load())
                        try cursor.jump(shared)
                        check(try cursor.query().item)
                        _ = consume cursor
                    case .readOnly:
                        var cursor = try table.cursor(pair.b)
                        bSawRelease.store(aReleasing.load())
                        try cursor.jump(shared)
                        check(try cursor.query().item)
                        _ = consume cursor
                    }
                }
            } catch {
                failures.record("thread \(thread): \(error)")
            }
        }
        try requireThreadsDone(finished, failures, table, deadlock: "the two cursors deadlocked")
        // B asked for its cursor 50 ms before A let go, and got it only after.
        #expect(bSawRelease.load() == 1)

        #expect(try unmapEverything(table) == 1)
        expectOnlyTheRoot(table, machine)
        #expect(machine.cleanInv())
    }

    /// Many threads take cursors over one page and count how many are inside at once: never more
    /// than one, and no increment is lost (the counter is plain memory guarded by the cursor).
    @Test func sameRangeIsACriticalSection() throws {
        let (machine, table) = try machineWithEmptyTable()
        let range = pages(gib1 + 0x7000, 1)
        let inside = SharedInt()
        let failures = Failures()
        // A non-atomic counter, incremented only under the cursor.
        let plain = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        plain.initialize(to: 0)
        defer { plain.deallocate() }
        let address = Int(bitPattern: plain)
        let rounds = 300
        let finished = runThreads(2) { thread in
            let counter = UnsafeMutablePointer<Int>(bitPattern: address)!
            for _ in 0..<rounds {
                do {
                    var cursor = try table.cursorMut(range)
                    failures.check(inside.add(1) == 1, "two cursors over \(range) at once")
                    let value = counter.pointee
                    if try cursor.query().item == nil {
                        cursor.map(MappedItem(frame: try FrameAllocOptions().zeroed(false).allocFrame(in: machine),
                                              property: rw))
                    } else {
                        _ = takeAll(&cursor, upTo: range.upperBound)
                    }
                    counter.pointee = value + 1
                    inside.add(-1)
                    _ = consume cursor
                } catch {
                    failures.record("thread \(thread): \(error)")
                }
            }
        }
        try requireThreadsDone(finished, failures, table, deadlock: "cursors deadlocked")
        #expect(plain.pointee == 2 * rounds)
        _ = try unmapEverything(table)
        expectOnlyTheRoot(table, machine)
    }

    // MARK: 1b. Parallelism

    static let disjoint: [CursorPair] = [
        CursorPair("same level-2 node, different level-1 nodes", pages(0x1000, 1), pages(mib2 + 0x1000, 1)),
        CursorPair("same level-3 node, different 1 GiB regions", pages(0x1000, 1), pages(gib1 + 0x1000, 1)),
        CursorPair("different 512 GiB regions", pages(0x1000, 1), pages(gib512 + 0x1000, 1)),
        CursorPair("level-2 subtree against another 1 GiB region", pages(mib2 - kib4, 2), pages(gib1 + 0x3000, 4)),
        CursorPair("level-3 subtree against another 512 GiB region", pages(gib1 - kib4, 2), pages(gib512 + 0x1000, 1)),
        CursorPair("large range against another 512 GiB region", Vaddr(0)..<Vaddr(4 * gib1), pages(3 * gib512, 8)),
        CursorPair("read-only A, mutable B", pages(0x1000, 1), pages(gib1 + 0x1000, 1), aKind: .readOnly),
        CursorPair("mutable A, read-only B", pages(0x1000, 1), pages(gib1 + 0x1000, 1), bKind: .readOnly),
    ]

    /// A holds a cursor; meanwhile B creates its own over a disjoint subtree, maps, unmaps (so its
    /// nodes are reclaimed, re-locking from the root) and drops it. A must see B finish before
    /// dropping its cursor.
    @Test(arguments: disjoint)
    func disjointCursorsProceedInParallel(pair: CursorPair) throws {
        let (machine, table) = try machineWithEmptyTable()
        // Read-only cursors do not allocate: give them a path to lock.
        let aPage = pair.a.lowerBound, bPage = pair.b.lowerBound
        let aOriginal = try mapFresh(table, aPage)
        let bOriginal = try mapFresh(table, bPage)
        let nodesBefore = table.nodes().count

        let aHolding = SharedInt(), bDone = SharedInt(), aSawB = SharedInt()
        let aLocked = SharedInt()
        let failures = Failures()
        let finished = runThreads(2) { thread in
            do {
                if thread == 0 {
                    func hold() {
                        aHolding.store(1)
                        aSawB.store(waitUntil(.seconds(5)) { bDone.load() == 1 } ? 1 : 0)
                    }
                    switch pair.aKind {
                    case .mutable:
                        var cursor = try table.cursorMut(pair.a)
                        aLocked.store(Int(cursor.lockedLevel))
                        if case .mapped(_, let item)? = cursor.takeNext(pageSize) {
                            failures.check(item.paddr == aOriginal, "A: took the wrong page")
                        } else {
                            failures.record("A: nothing to take")
                        }
                        try cursor.jump(aPage)
                        cursor.map(MappedItem(frame: try FrameAllocOptions().zeroed(false).allocFrame(in: machine),
                                              property: rw))
                        hold()
                        _ = consume cursor
                    case .readOnly:
                        var cursor = try table.cursor(pair.a)
                        aLocked.store(Int(cursor.lockedLevel))
                        failures.check(try cursor.query().item?.paddr == aOriginal, "A: wrong mapping")
                        hold()
                        _ = consume cursor
                    }
                } else {
                    guard waitUntil(.seconds(5), { aHolding.load() == 1 }) else {
                        failures.record("B: A never got its cursor")
                        return
                    }
                    switch pair.bKind {
                    case .mutable:
                        do {
                            var cursor = try table.cursorMut(pair.b)
                            let taken = takeAll(&cursor, upTo: pair.b.upperBound)
                            failures.check(taken == 1, "B took \(taken) pages, not 1")
                            try cursor.jump(bPage)
                            let frame = try FrameAllocOptions().zeroed(false).allocFrame(in: machine)
                            let paddr = frame.paddr
                            cursor.map(MappedItem(frame: frame, property: rw))
                            try cursor.jump(bPage)
                            failures.check(try cursor.query().item?.paddr == paddr, "B: its mapping is not there")
                            _ = consume cursor
                        }
                        // Unmap the last page in a fresh cursor: its drop reclaims the nodes of
                        // B's path, locking from the root down while A still holds its cursor.
                        var cursor = try table.cursorMut(pair.b)
                        let taken = takeAll(&cursor, upTo: pair.b.upperBound)
                        failures.check(taken == 1, "B took \(taken) pages, not 1")
                        _ = consume cursor
                    case .readOnly:
                        var cursor = try table.cursor(pair.b)
                        failures.check(try cursor.query().item?.paddr == bOriginal, "B: wrong mapping")
                        _ = consume cursor
                    }
                    bDone.store(1)
                }
            } catch {
                failures.record("thread \(thread): \(error)")
            }
        }
        try requireThreadsDone(finished, failures, table, deadlock: "the two cursors deadlocked")
        #expect(aSawB.load() == 1, "B could not work while A held a cursor over a disjoint subtree (A locked level \(aLocked.load()))")
        #expect(table.structuralViolations() == [])
        if pair.bKind == .mutable {
            // B's pages and every node only they needed are gone.
            #expect(table.pageWalk(bPage) == nil)
            #expect(table.nodes().count < nodesBefore)
        }
        #expect(try unmapEverything(table) == (pair.bKind == .mutable ? 1 : 2))
        expectOnlyTheRoot(table, machine)
        #expect(machine.cleanInv())
    }
}

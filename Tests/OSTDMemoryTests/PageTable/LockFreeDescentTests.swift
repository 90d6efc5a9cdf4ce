// The lock-free descent, seen from one thread with `tryCursorMut`, which gives up instead of
// waiting: a cursor whose subtree exists is created while another cursor holds the root; one that
// must allocate under a locked node, or whose range overlaps a held one, is refused at once,
// having taken and changed nothing. And the audit's mutual-exclusion check (`locksExclusive`),
// shown catching two live cursors over overlapping ranges.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

@Suite struct LockFreeDescentTests {
    /// A cursor over two root entries locks the root and both subtrees. A cursor in a third root
    /// entry whose nodes exist finds its subtree without touching the root's lock (the old
    /// hand-over-hand descent took it, and would have waited).
    @Test func aCursorElsewhereDoesNotNeedTheRootsLock() throws {
        let (machine, table) = try machineWithEmptyTable()
        try mapFresh(table, Vaddr(0x5000))
        try mapFresh(table, Vaddr(2 * gib512 + 0x5000))
        let holder = try table.cursorMut(Vaddr(0)..<Vaddr(2 * gib512))
        #expect(holder.lockedLevel == 4)
        #expect(NodeRef(table.rootPaddr, table.context).isLocked)
        do {
            let other = try table.tryCursorMut(pages(2 * gib512 + 0x5000, 1))
            #expect(other?.lockedLevel == 1)
        }
        let frames = machine.outstandingFrames
        // Root entry 3 is absent: the cursor would have to lock the root to add a node.
        #expect(try table.tryCursorMut(pages(3 * gib512, 1)) == nil)
        // Overlapping the holder's range.
        #expect(try table.tryCursorMut(pages(0x5000, 1)) == nil)
        #expect(try table.tryCursorMut(Vaddr(gib512 - 0x1000)..<Vaddr(3 * gib512)) == nil)
        #expect(machine.outstandingFrames == frames, "a refused cursor allocated nodes")
        _ = consume holder
        #expect(lockedNodes(table) == [])
        #expect(try table.tryCursorMut(pages(3 * gib512, 1)) != nil)
        #expect(table.structuralViolations() == [])
    }

    /// A refusal partway through the subtree (a child node locked by another cursor) releases
    /// the nodes already taken.
    @Test func aRefusalInsideTheSubtreeReleasesWhatItTook() throws {
        let (_, table) = try machineWithEmptyTable()
        try mapFresh(table, Vaddr(0x5000))
        try mapFresh(table, Vaddr(mib2 + 0x5000))
        let holder = try table.cursorMut(pages(mib2 + 0x5000, 1))   // the second level-1 node
        #expect(holder.lockedLevel == 1)
        // Locks the level-2 node and the first level-1 node, then finds the second one held.
        #expect(try table.tryCursorMut(Vaddr(0)..<Vaddr(2 * mib2)) == nil)
        #expect(lockedNodes(table).count == 1)
        _ = consume holder
        #expect(try table.tryCursorMut(Vaddr(0)..<Vaddr(2 * mib2))?.lockedLevel == 2)
        #expect(lockedNodes(table) == [])
    }

    /// `withCursorMut` / `withCursor`: cursors that borrow the table for a scope map and query
    /// like the others, release their locks at the scope's end, and tell a refused range from an
    /// error of the body.
    @Test func scopedCursorsBorrowTheTable() throws {
        struct Stop: Error {}
        let (machine, table) = try machineWithEmptyTable()
        let frame = try FrameAllocOptions().allocFrame(in: machine)
        let paddr = frame.paddr
        var item = Optional(MappedItem(frame: frame, property: .user(.rw)))
        let range = pages(gib1, 1)
        try table.withCursorMut(range) { (cursor: inout CursorMut<UserPtConfig>) in
            // SAFETY: a tracked frame in a table no CPU uses.
            unsafe cursor.map(item.take()!)
        }
        #expect(lockedNodes(table) == [])
        let found = try table.withCursor(range) { (cursor: inout Cursor<UserPtConfig>) in try cursor.query().item?.paddr }
        #expect(found == paddr)
        #expect(throws: WithCursorError<Stop>.self) {
            try table.withCursor(Vaddr(0x1001)..<Vaddr(0x2000)) { (_: inout Cursor<UserPtConfig>) throws(Stop) in }
        }
        do {
            try table.withCursor(range) { (_: inout Cursor<UserPtConfig>) throws(Stop) in throw Stop() }
            Issue.record("the body's error was lost")
        } catch {
            guard case .body = error else { Issue.record("got \(error)"); return }
        }
        #expect(lockedNodes(table) == [])
        _ = try unmapEverything(table)
        expectOnlyTheRoot(table, machine)
    }

    /// A space's `tryCursorMut`: refused while a cursor of the space holds the range.
    @Test func spaceTryCursorMut() throws {
        let space = try VmSpace(machine: makeMachine())
        let range = Vaddr(0x40_0000)..<Vaddr(0x40_1000)
        let holder = try space.cursorMut(range)
        #expect(try space.tryCursorMut(range) == nil)
        #expect(try space.tryCursorMut(Vaddr(0x80_0000)..<Vaddr(0x80_1000)) != nil)
        _ = consume holder
        #expect(try space.tryCursorMut(range) != nil)
    }

    /// `locksExclusive` holds for cursors that come and go, and fails when the auditor is told of
    /// a second live cursor over an overlapping range (as two threads that both got the same
    /// lock would report).
    @Test func theAuditCatchesOverlappingLiveCursors() throws {
        let audited = try AuditedSpace()
        do {
            var cursor = try audited.space.cursorMut(Vaddr(0x40_0000)..<Vaddr(0x40_4000))
            _ = cursor.findNext(0x4000)
        }
        let other = try audited.space.cursor(Vaddr(0x40_2000)..<Vaddr(0x40_3000))
        #expect(audited.auditor.violations.isEmpty)
        let forged = CursorAuditState(va: Vaddr(0x40_2000), barrierVa: Vaddr(0x40_2000)..<Vaddr(0x40_8000),
                                      level: 1, guardLevel: 1, path: [audited.space.rootPaddr, nil, nil, nil])
        audited.auditor.didCreateCursor(over: forged.barrierVa, mutable: true, result: .success(forged), in: audited.space)
        #expect(audited.auditor.violations.map(\.predicate).contains("locksExclusive"))
        _ = consume other
    }
}

// Refinement of the real page-table cursor against `CursorView`: the view before an operation,
// the real `CursorMut` operation, the view after, and `after == spec(before)` as exact leaf sets
// with the cursor's position (map of 4 KiB, 2 MiB and 1 GiB leaves, take and protect loops that
// split huge leaves at either end, find, query, jump). The random walk is in
// `CursorViewTests+Random.swift`; the specs rejecting wrong results in `CursorViewTests+Mutants.swift`.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost

/// The leaf sizes, as `Int`.
let cvPage4K = PagingConsts.pageSize(1)
let cvPage2M = PagingConsts.pageSize(2)
let cvPage1G = PagingConsts.pageSize(3)

struct CursorViewTests {
    static let rw = PageProperty.user(.rw)

    /// The view of `cursor`: every leaf of `table` under the cursor's locked subtree.
    static func view(_ table: PageTable<UserPtConfig>, _ cursor: borrowing CursorMut<UserPtConfig>) -> CursorView {
        CursorView(curVa: cursor.virtAddr, view: table.view(),
                   range: CursorView.lockedRange(barrier: cursor.barrierVa, guardLevel: cursor.lockedLevel))
    }

    /// What a real `takeNext` took (the fragment is dropped: no TLB to flush here).
    static func taken(_ fragment: consuming PageTableFrag<UserPtConfig>?) -> CursorView.Taken? {
        switch consume fragment {
        case .some(var fragment): return CursorView.Taken(&fragment)
        case .none: return nil
        }
    }

    /// An untracked item of `level` at `pa`.
    static func item(_ pa: UInt64, level: PagingLevel, _ property: PageProperty = rw) -> MappedItem {
        MappedItem(untracked: Paddr(pa), level: level, property: property)
    }

    /// A table with a 1 GiB leaf at 1 GiB, a 2 MiB leaf at 2 GiB + 2 MiB and 4 KiB leaves at
    /// 2 GiB + 8 MiB + 4 KiB·{0, 1, 2}.
    static func populated(_ machine: Machine) throws -> PageTable<UserPtConfig> {
        let table = try PageTable<UserPtConfig>(empty: machine)
        var cursor = try table.cursorMut(Vaddr(0)..<Vaddr(UInt64(4 * cvPage1G)))
        try cursor.jump(Vaddr(UInt64(cvPage1G)))
        cursor.map(item(0x4000_0000, level: 3))
        try cursor.jump(Vaddr(UInt64(2 * cvPage1G + cvPage2M)))
        cursor.map(item(0x8000_0000, level: 2))
        try cursor.jump(Vaddr(UInt64(2 * cvPage1G + 4 * cvPage2M)))
        for i in 0..<3 { cursor.map(item(0x9000_0000 + UInt64(i * cvPage4K), level: 1, .user(.r))) }
        return table
    }

    @Test func mapOfEachLeafSizeIsMapSpec() throws {
        let machine = makeMachine(memory: 64 << 20, audit: false)
        let table = try PageTable<UserPtConfig>(empty: machine)
        var cursor = try table.cursorMut(Vaddr(0)..<Vaddr(UInt64(4 * cvPage1G)))
        for (va, pa, level) in [(UInt64(cvPage1G), UInt64(0xc000_0000), PagingLevel(3)),
                                (UInt64(2 * cvPage1G + cvPage2M), 0x20_0000, 2), (UInt64(2 * cvPage1G), 0x5000, 1)] {
            try cursor.jump(Vaddr(va))
            let before = Self.view(table, cursor)
            #expect(before.canMapSpec(level: level))
            cursor.map(Self.item(pa, level: level))
            let after = Self.view(table, cursor)
            #expect(after == before.mapSpec(pa: Paddr(pa), level: level, property: Self.rw, isTracked: false))
            #expect(after.curVa == Vaddr(va) + PagingConsts.pageSize(level))
            #expect(after.inv(UserPtConfig.self))
        }
        // A tracked frame: the view says tracked.
        try cursor.jump(Vaddr(UInt64(3 * cvPage1G)))
        let before = Self.view(table, cursor)
        let frame = try FrameAllocOptions().allocFrame(in: machine)
        let pa = frame.paddr
        cursor.map(MappedItem(frame: frame, property: Self.rw))
        #expect(Self.view(table, cursor) == before.mapSpec(pa: pa, level: 1, property: Self.rw))
    }

    @Test func aFailedMapOverAHugeLeafChangesNothing() throws {
        let machine = makeMachine(memory: 64 << 20, audit: false)
        let table = try Self.populated(machine)
        var cursor = try table.cursorMut(Vaddr(0)..<Vaddr(UInt64(4 * cvPage1G)))
        try cursor.jump(Vaddr(UInt64(cvPage1G + 3 * cvPage2M + 5 * cvPage4K)))
        let before = Self.view(table, cursor)
        #expect(!before.canMapSpec(level: 1))
        switch cursor.tryMap(Self.item(0x1000, level: 1)) {
        case .some(let failure): #expect(failure.error == PageTableError.alreadyMapped(before.curVa))
        case .none: Issue.record("mapped over a huge leaf")
        }
        #expect(Self.view(table, cursor) == before)   // the huge leaf is not split (OSTD splits it)
    }

    @Test func takeNextLoopsSplittingBothEndsAreTakeNextSpecAndUnmapResult() throws {
        let machine = makeMachine(memory: 64 << 20, audit: false)
        let table = try Self.populated(machine)
        // From inside the 1 GiB leaf to inside the 2 MiB leaf: both ends split.
        let start = Vaddr(UInt64(2 * cvPage1G - cvPage2M - 3 * cvPage4K))
        let end = Vaddr(UInt64(2 * cvPage1G + cvPage2M + 7 * cvPage4K))
        var cursor = try table.cursorMut(Vaddr(0)..<Vaddr(UInt64(4 * cvPage1G)))
        try cursor.jump(start)
        let first = Self.view(table, cursor)
        var steps = 0
        while cursor.virtAddr < end {
            let before = Self.view(table, cursor)
            let (level, guardLevel) = (cursor.currentLevel, cursor.lockedLevel)
            let expected = before.takeNextSpec(end - cursor.virtAddr, level: level, guardLevel: guardLevel)
            let taken = Self.taken(cursor.takeNext(end - cursor.virtAddr))
            #expect(taken == expected.taken)
            #expect(Self.view(table, cursor) == expected.view)
            steps += 1
            if taken == nil { break }
        }
        #expect(steps == 3 + 1 + 7)   // 4 KiB pieces, a 2 MiB piece, then 4 KiB pieces of the 2 MiB leaf
        let last = Self.view(table, cursor)
        #expect(last.curVa == end)
        #expect(last == first.unmapResult(end - start))
        #expect(first.unmapSpec(len: end - start, new: last))
    }

    @Test func aCoveredNodeIsTakenWholeOnlyFromAboveIt() throws {
        let machine = makeMachine(memory: 64 << 20, audit: false)
        let table = try Self.populated(machine)
        let node = Vaddr(UInt64(2 * cvPage1G + 4 * cvPage2M))   // the 2 MiB slot of the three 4 KiB leaves
        do {
            var cursor = try table.cursorMut(node..<(node + 2 * cvPage2M))   // locked at level 2
            let before = Self.view(table, cursor)
            let expected = before.takeNextSpec(cvPage2M, level: cursor.currentLevel, guardLevel: cursor.lockedLevel)
            #expect(expected.taken == .strayPageTable(va: node..<(node + cvPage2M), numFrames: 3))
            #expect(Self.taken(cursor.takeNext(cvPage2M)) == expected.taken)
            #expect(Self.view(table, cursor) == expected.view)
        }
        let table2 = try Self.populated(machine)
        var cursor = try table2.cursorMut(Vaddr(0)..<Vaddr(UInt64(4 * cvPage1G)))
        try cursor.jump(node + cvPage4K)
        _ = try cursor.query()           // down to level 1
        try cursor.jump(node)            // stays at level 1
        #expect(cursor.currentLevel == 1)
        let before = Self.view(table2, cursor)
        let expected = before.takeNextSpec(cvPage2M, level: 1, guardLevel: cursor.lockedLevel)
        #expect(expected.taken == .mapped(before.mappings.first { $0.va.lowerBound == node }!))
        #expect(Self.taken(cursor.takeNext(cvPage2M)) == expected.taken)
        #expect(Self.view(table2, cursor) == expected.view)
    }

    @Test func protectNextLoopIsProtectSpec() throws {
        let machine = makeMachine(memory: 64 << 20, audit: false)
        let table = try Self.populated(machine)
        let start = Vaddr(UInt64(cvPage1G + 5 * cvPage2M + 2 * cvPage4K))
        let end = Vaddr(UInt64(2 * cvPage1G + 4 * cvPage2M + 2 * cvPage4K))
        var cursor = try table.cursorMut(Vaddr(0)..<Vaddr(UInt64(4 * cvPage1G)))
        try cursor.jump(start)
        let op: (PageProperty) -> PageProperty = { var p = $0; p.flags.remove(.w); p.cache = .uncacheable; return p }
        var protected: [Range<Vaddr>] = []
        while true {
            let before = Self.view(table, cursor)
            let expected = before.protectSpec(end - cursor.virtAddr, op)
            let done = cursor.protectNext(end - cursor.virtAddr) { $0 = op($0) }
            #expect(done == expected.protected)
            #expect(Self.view(table, cursor) == expected.view)
            guard let done else { break }
            protected.append(done)
        }
        #expect(protected.first == start..<(start + cvPage4K))
        #expect(protected.last == Vaddr(end.rawValue - UInt64(cvPage4K))..<end)
        #expect(cursor.virtAddr == end)
    }

    @Test func findNextQueryAndJumpAreTheirSpecs() throws {
        let machine = makeMachine(memory: 64 << 20, audit: false)
        let table = try Self.populated(machine)
        let barrier = Vaddr(0)..<Vaddr(UInt64(4 * cvPage1G))
        var cursor = try table.cursorMut(barrier)
        for (va, len) in [(UInt64(0), 4 * cvPage1G), (UInt64(cvPage1G + 7 * cvPage4K), cvPage4K), (UInt64(2 * cvPage1G), cvPage2M),
                          (UInt64(2 * cvPage1G + cvPage2M), 3 * cvPage2M + cvPage4K), (UInt64(3 * cvPage1G), cvPage1G)] {
            try cursor.jump(Vaddr(va))
            var before = Self.view(table, cursor)
            let spec = before.querySpec(level: cursor.currentLevel)
            let query = try cursor.query()
            #expect(query.range == spec.range)
            #expect(query.item.map { Mapping(va: query.range.lowerBound, item: $0) } == spec.mapping)
            before = Self.view(table, cursor)
            let found = cursor.findNext(len)
            let expected = before.findNextSpec(len)
            #expect(found == expected.found)
            #expect(Self.view(table, cursor) == expected.view)
        }
        // An absent slot's range is the deepest node's slot: the cursor's level matters.
        try cursor.jump(Vaddr(UInt64(2 * cvPage1G + 4 * cvPage2M + 3 * cvPage4K)))
        let atLevel = cursor.currentLevel
        let before = Self.view(table, cursor)
        let query = try cursor.query()
        #expect(query.range == before.querySpec(level: atLevel).range)
        #expect(query.range.upperBound - query.range.lowerBound == cvPage4K)
        // Jump: inside the barrier, to its end (refused), unaligned (a panic in the core: nil).
        for target in [Vaddr(UInt64(cvPage1G + cvPage2M)), barrier.upperBound] {
            let start = Self.view(table, cursor)
            let moved = (try? cursor.jump(target)) != nil
            #expect(moved == (start.jumpSpec(target, barrier: barrier) != nil))
            #expect(Self.view(table, cursor) == (start.jumpSpec(target, barrier: barrier) ?? start))
        }
        #expect(Self.view(table, cursor).jumpSpec(Vaddr(0x1234), barrier: barrier) == nil)
    }

    @Test func aBarrierRestrictedViewComparesAfterRestriction() throws {
        let machine = makeMachine(memory: 64 << 20, audit: false)
        let table = try Self.populated(machine)
        let barrier = Vaddr(UInt64(cvPage1G + cvPage2M))..<Vaddr(UInt64(cvPage1G + 2 * cvPage2M))
        var cursor = try table.cursorMut(barrier)
        let before = CursorView(curVa: cursor.virtAddr, view: table.view(), range: barrier)
        #expect(before.mappings.count == 1)   // the whole 1 GiB leaf overlaps
        let expected = before.takeNextSpec(cvPage4K, level: cursor.currentLevel, guardLevel: cursor.lockedLevel)
        _ = cursor.takeNext(cvPage4K)
        let after = CursorView(curVa: cursor.virtAddr, view: table.view(), range: barrier)
        #expect(after != expected.view)                         // the spec keeps every piece
        #expect(after == expected.view.restricted(to: barrier))
    }
}

// OSTD's navigation and unmap page-table ktests: `jump` (also from the end, near the guard level
// and the end of the address space), `findNext` around barriers and with bad lengths, and
// `takeNext` taking one leaf or a whole subtree.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

// MARK: - navigation

extension OSTDPageTableTests {
    @Suite struct Navigation {
        static let firstMapAddr = Vaddr(UInt64(pageSize * 7))
        static let secondMapAddr = Vaddr(UInt64(pageSize * 512 * 512))

        /// A table with one untracked page at each of the two addresses (OSTD
        /// `setup_pt_with_two_mappings`).
        static func setupPtWithTwoMappings(_ machine: Machine) -> (PageTable<UserPtConfig>, Paddr, Paddr) {
            let table = try! PageTable<UserPtConfig>(empty: machine)
            let pa1 = Paddr(0x1000_0000)
            let pa2 = Paddr(0x20_0000)
            mapUntracked(table, firstMapAddr..<(firstMapAddr + pageSize), pa1, rw)
            mapUntracked(table, secondMapAddr..<(secondMapAddr + pageSize), pa2, rw)
            return (table, pa1, pa2)
        }

        // OSTD: navigation::jump
        @Test func jump() throws {
            let machine = makeMachine()
            let (table, firstFrame, _) = Self.setupPtWithTwoMappings(machine)
            var cursor = try table.cursorMut(Vaddr(0)..<(Self.secondMapAddr + pageSize))

            #expect(cursor.virtAddr == Vaddr(0))
            let atStart = try cursor.query().item
            #expect(atStart == nil)

            try cursor.jump(Self.firstMapAddr)
            #expect(cursor.virtAddr == Self.firstMapAddr)
            let (range, item) = try cursor.query()
            #expect(range == Self.firstMapAddr..<(Self.firstMapAddr + pageSize))
            #expect(item?.paddr == firstFrame)
            #expect(item?.property == rw)
        }

        // OSTD: navigation::jump_from_end_and_query_huge_middle
        @Test func jumpFromEndAndQueryHugeMiddle() throws {
            let machine = makeMachine()
            let table = try PageTable<UserPtConfig>(empty: machine)
            let range = Vaddr(0)..<Vaddr(UInt64(2 * hugePageSize))   // lock at level 2
            let mapVa = Vaddr(UInt64(hugePageSize))
            var cursor = try table.cursorMut(range)

            try cursor.jump(mapVa)
            cursor.map(MappedItem(untracked: Paddr(0), level: 2, property: rw))

            // The cursor is now at the end of the range, at level 2.
            #expect(cursor.virtAddr == range.upperBound)
            do {
                _ = try cursor.query()
                Issue.record("query at the end of the range succeeded")
            } catch {
                #expect(error == .invalidVaddr(range.upperBound))
            }

            // Jump from the end.
            try cursor.jump(range.lowerBound)
            let atStart = try cursor.query().item
            #expect(atStart == nil)

            // Query in the middle of the huge page.
            try cursor.jump(Vaddr(range.upperBound.rawValue - UInt64(hugePageSize / 2)))
            let (queried, item) = try cursor.query()
            #expect(queried == mapVa..<range.upperBound)
            #expect(item?.level == 2)
        }

        // OSTD: navigation::jump_from_guard_level_end
        @Test func jumpFromGuardLevelEnd() throws {
            let machine = makeMachine()
            let table = try PageTable<UserPtConfig>(empty: machine)
            let range = Vaddr(UInt64(hugePageSize - pageSize))..<Vaddr(UInt64(hugePageSize))
            var cursor = try table.cursorMut(range)

            cursor.map(MappedItem(untracked: Paddr(0), level: 1, property: rw))

            #expect(cursor.virtAddr == range.upperBound)
            try cursor.jump(range.lowerBound)
            #expect(cursor.virtAddr == range.lowerBound)
        }

        // OSTD: navigation::jump_near_address_space_end
        @Test func jumpNearAddressSpaceEnd() throws {
            let machine = makeMachine()
            let table = try PageTable<KernelPtConfig>(empty: machine)
            let huge = UInt64(hugePageSize)
            let page = UInt64(pageSize)
            let range = Vaddr(0 &- huge)..<Vaddr(0 &- page)
            var cursor = try table.cursorMut(range)

            // Map a page near the address-space end.
            #expect(cursor.virtAddr == Vaddr(0 &- huge))
            cursor.map(MappedItem(untracked: Paddr(0), level: 1, property: rw))
            #expect(cursor.virtAddr == Vaddr(0 &- (huge - page)))

            // Jump near the address-space end.
            try cursor.jump(Vaddr(0 &- huge / 2))
            #expect(cursor.virtAddr == Vaddr(0 &- huge / 2))
            try cursor.jump(Vaddr(0 &- page * 2))
            #expect(cursor.virtAddr == Vaddr(0 &- page * 2))
        }

        // OSTD: navigation::find_next
        @Test func findNext() throws {
            let machine = makeMachine()
            let (table, _, _) = Self.setupPtWithTwoMappings(machine)
            var cursor = try table.cursorMut(Vaddr(0)..<(Self.secondMapAddr + pageSize))

            #expect(cursor.virtAddr == Vaddr(0))

            let first = cursor.findNext(Int(Self.firstMapAddr.rawValue) + pageSize)
            #expect(first == Self.firstMapAddr)
            #expect(cursor.virtAddr == Self.firstMapAddr)

            try cursor.jump(Self.firstMapAddr + pageSize)

            let second = cursor.findNext(Self.secondMapAddr - Self.firstMapAddr)
            #expect(second == Self.secondMapAddr)
            #expect(cursor.virtAddr == Self.secondMapAddr)
        }

        // OSTD: navigation::find_next_keeps_va_around_barrier
        @Test func findNextKeepsVaAroundBarrier() throws {
            let machine = makeMachine()
            let table = try PageTable<UserPtConfig>(empty: machine)
            let barrierStart = Vaddr(UInt64(hugePageSize - pageSize))
            let barrierEnd = Vaddr(UInt64(hugePageSize + pageSize))
            let outside = Vaddr(UInt64(hugePageSize * 2))

            mapUntracked(table, outside..<(outside + pageSize), Paddr(0), rw)

            var cursor = try table.cursor(barrierStart..<barrierEnd)
            // The entry spans 2 MiB ..< 4 MiB, but `findNext` still stops at the barrier's end.
            let found = cursor.findNext(barrierEnd - barrierStart)
            #expect(found == nil)
            #expect(cursor.virtAddr == barrierEnd)
        }

        // OSTD: navigation::find_next_rejects_overflowing_len
        @Test func findNextRejectsOverflowingLen() async {
            let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let machine = makeMachine()
                let (table, _, _) = Navigation.setupPtWithTwoMappings(machine)
                let second = Navigation.secondMapAddr
                var cursor = try! table.cursor(Vaddr(0)..<(second + pageSize))
                try! cursor.jump(second)
                // `0usize.wrapping_sub(SECOND_MAP_ADDR)`: as an `Int`, negative.
                let overflowLen = Int(truncatingIfNeeded: 0 &- second.rawValue)
                _ = cursor.findNext(overflowLen)
            }
            #expect(stderrContains(result, "len exceeds remaining cursor range"))
        }

        @Test func findNextRejectsTooLargeLen() async {
            let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let machine = makeMachine()
                let (table, _, _) = Navigation.setupPtWithTwoMappings(machine)
                let second = Navigation.secondMapAddr
                var cursor = try! table.cursor(Vaddr(0)..<(second + pageSize))
                try! cursor.jump(second)
                _ = cursor.findNext(Int.max & ~(pageSize - 1))
            }
            #expect(stderrContains(result, "len exceeds remaining cursor range"))
        }
    }
}

// MARK: - unmap

extension OSTDPageTableTests {
    @Suite struct Unmap {
        // OSTD: unmap::take_next_takes_something
        @Test func takeNextTakesSomething() throws {
            let machine = makeMachine()
            let table = try PageTable<UserPtConfig>(empty: machine)
            let range = Vaddr(UInt64(pageSize))..<Vaddr(UInt64(2 * pageSize))
            let paddr = Paddr(UInt64(100 * pageSize))
            mapUntracked(table, range, paddr, rw)

            var cursor = try table.cursorMut(range)
            guard case .mapped(let va, let item)? = cursor.takeNext(pageSize) else {
                Issue.record("expected to take a mapped item"); return
            }
            #expect(va == range.lowerBound)
            #expect(item.paddr == paddr)
            #expect(item.level == 1)
            #expect(item.property == rw)
            #expect(item.isTracked == false)
        }

        // OSTD: unmap::take_large_takes_subtree
        @Test func takeLargeTakesSubtree() throws {
            let machine = makeMachine()
            let table = try PageTable<UserPtConfig>(empty: machine)
            let range = Vaddr(UInt64(pageSize * 513))..<Vaddr(UInt64(pageSize * 514))
            mapUntracked(table, range, Paddr(UInt64(pageSize)), rw)

            do {
                var cursor = try table.cursorMut(Vaddr(0)..<Vaddr(UInt64(gigaPageSize)))
                guard case .strayPageTable(let node, let va, let len, let numFrames)? = cursor.takeNext(gigaPageSize) else {
                    Issue.record("expected to take a stray page table"); return
                }
                // A level-1 node with one entry, covering 2 MiB.
                #expect(va == Vaddr(UInt64(pageSize * 512)))
                #expect(len == pageSize * 512)
                #expect(numFrames == 1)
                #expect(node.level == 1)
                #expect(node.isStray == true)
                #expect(node.nrChildren == 1)
            }
            #expect(table.pageWalk(range.lowerBound) == nil)
            #expect(table.structuralViolations() == [])
            #expect(table.nodes().count == 1)
            #expect(machine.outstandingFrames == 1)
        }
    }
}

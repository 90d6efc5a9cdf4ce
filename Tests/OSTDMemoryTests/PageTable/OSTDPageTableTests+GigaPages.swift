// 1 GiB leaves, beyond OSTD (whose x86 configuration stops at 2 MiB): a tracked 1 GiB page mapped
// and queried, protect and take inside one (each splits it twice, to 2 MiB and then 4 KiB), and
// an untracked 1 GiB page.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

// MARK: - 1 GiB leaves (beyond OSTD, whose x86 configuration stops at 2 MiB)

extension OSTDPageTableTests {
    @Suite struct GigaPages {
        /// A 3 GiB machine (reserved, not committed) and a tracked 1 GiB page mapped RW at VA
        /// 1 GiB through a cursor over `0 ..< 2 GiB` (so the cursor is locked at level 3).
        static func mapTrackedGigaPage() throws -> (Machine, PageTable<UserPtConfig>, Paddr) {
            let machine = makeMachine(memory: 3 << 30, audit: false)
            let table = try PageTable<UserPtConfig>(empty: machine)
            let segment = try FrameAllocOptions().zeroed(false).allocSegment(512 * 512, in: machine)
            let base = segment.paddr
            #expect(base.isAligned(to: gigaPageSize))
            var cursor = try table.cursorMut(Vaddr(0)..<Vaddr(UInt64(2 * gigaPageSize)))
            #expect(cursor.lockedLevel == 3)
            try cursor.jump(Vaddr(UInt64(gigaPageSize)))
            cursor.map(MappedItem(hugePage: segment, property: rw))
            #expect(cursor.virtAddr == Vaddr(UInt64(2 * gigaPageSize)))
            return (machine, table, base)
        }

        @Test func trackedGigaPageMapAndQuery() throws {
            let (machine, table, base) = try Self.mapTrackedGigaPage()
            let giga = Vaddr(UInt64(gigaPageSize))
            let inside = giga + 5 * hugePageSize + 3 * pageSize

            do {
                var cursor = try table.cursor(Vaddr(0)..<Vaddr(UInt64(2 * gigaPageSize)))
                try cursor.jump(inside)
                let (range, item) = try cursor.query()
                #expect(range == giga..<(giga + gigaPageSize))
                #expect(item?.paddr == base)
                #expect(item?.level == 3)
                #expect(item?.isTracked == true)
                #expect(item?.property == rw)
                #expect(cursor.virtAddr == inside)   // query does not move
                let found = cursor.findNext(pageSize)
                #expect(found == inside)
            }
            #expect(table.pageWalk(inside + 0x123)?.paddr == base + (inside - giga) + 0x123)
            #expect(table.pageWalk(giga + (gigaPageSize - 1))?.paddr == base + (gigaPageSize - 1))
            #expect(table.pageWalk(Vaddr(giga.rawValue - 1)) == nil)
            #expect(table.pageWalk(giga + gigaPageSize) == nil)

            let view = table.view()
            #expect(view.mappings.count == 1)
            #expect(view.mappings.first?.level == 3)
            #expect(view.mappings.first?.pa == base..<(base + gigaPageSize))
            let wellFormed = view.inv()
            #expect(wellFormed)
            #expect(table.structuralViolations() == [])
            #expect(table.nodes().count == 2)   // the root and the level-3 node
            // Every frame of the page: one reference, the leaf's.
            for offset in [0, pageSize, hugePageSize + 7 * pageSize, gigaPageSize - pageSize] {
                #expect(machine.metaSlot(of: base + offset).referenceCount == 1)
            }
            #expect(machine.outstandingFrames == 512 * 512 + 2)
        }

        @Test func protectInsideGigaPageSplitsTwice() throws {
            let (machine, table, base) = try Self.mapTrackedGigaPage()
            let giga = Vaddr(UInt64(gigaPageSize))
            let target = giga + 5 * hugePageSize + 3 * pageSize
            let paOf = { (va: Vaddr) in base + (va - giga) }

            do {
                var cursor = try table.cursorMut(Vaddr(0)..<Vaddr(UInt64(2 * gigaPageSize)))
                try cursor.jump(target)
                let protected = cursor.protectNext(pageSize) { $0.flags.remove(.w) }
                #expect(protected == target..<(target + pageSize))
            }

            let mappings = table.view().mappings
            #expect(mappings.count == 511 + 511 + 1)
            #expect(mappings.filter { $0.level == 2 }.count == 511)
            #expect(mappings.filter { $0.level == 1 }.count == 512)
            #expect(mappings.filter { $0.property == .user(.r) }.map(\.va) == [target..<(target + pageSize)])
            #expect(mappings.allSatisfy { $0.pa.lowerBound == paOf($0.va.lowerBound) && $0.isTracked })
            let inOrder = table.view().inv()
            #expect(inOrder)   // leaves in address order (see `viewIsInAddressOrder`)

            #expect(table.pageWalk(target + 9)?.paddr == paOf(target) + 9)
            #expect(table.pageWalk(target + 9)?.property == .user(.r))
            for va in [giga, target + pageSize, Vaddr(target.rawValue - UInt64(pageSize)),
                       giga + 5 * hugePageSize, giga + 6 * hugePageSize, giga + (gigaPageSize - pageSize)] {
                #expect(table.pageWalk(va)?.paddr == paOf(va), "at \(va)")
                #expect(table.pageWalk(va)?.property == rw, "at \(va)")
            }
            #expect(table.translate(giga + 6 * hugePageSize)?.leaf.level == 2)
            #expect(table.translate(giga + 5 * hugePageSize)?.leaf.level == 1)
            #expect(table.structuralViolations() == [])
            #expect(table.nodes().count == 4)   // root, level 3, the split level-2 and level-1 nodes
            // The splits moved references and created none.
            #expect(machine.metaSlot(of: paOf(target)).referenceCount == 1)
            #expect(machine.metaSlot(of: base).referenceCount == 1)
            #expect(machine.outstandingFrames == 512 * 512 + 4)

            // Taking everything takes the split subtree in one piece.
            do {
                var cursor = try table.cursorMut(Vaddr(0)..<Vaddr(UInt64(2 * gigaPageSize)))
                guard case .strayPageTable(let node, let va, let len, let numFrames)? =
                    cursor.takeNext(2 * gigaPageSize) else {
                    Issue.record("expected to take the split subtree"); return
                }
                #expect(va == giga)
                #expect(len == gigaPageSize)
                #expect(numFrames == 1023)   // every leaf of the subtree
                #expect(node.level == 2)
                let nothingLeft = isNone(cursor.takeNext(2 * gigaPageSize - (cursor.virtAddr - Vaddr(0))))
                #expect(nothingLeft)
            }
            #expect(table.view().mappings.isEmpty)
            #expect(table.nodes().count == 1)
            #expect(machine.outstandingFrames == 1)   // the root
        }

        @Test func takeInsideGigaPageSplitsTwice() throws {
            let (machine, table, base) = try Self.mapTrackedGigaPage()
            let giga = Vaddr(UInt64(gigaPageSize))
            let target = giga + 300 * hugePageSize + 17 * pageSize
            let paOf = { (va: Vaddr) in base + (va - giga) }

            do {
                var cursor = try table.cursorMut(Vaddr(0)..<Vaddr(UInt64(2 * gigaPageSize)))
                try cursor.jump(target)
                guard case .mapped(let va, let item)? = cursor.takeNext(pageSize) else {
                    Issue.record("expected to take one page"); return
                }
                #expect(va == target)
                #expect(item.level == 1)
                #expect(item.paddr == paOf(target))
                #expect(item.isTracked == true)
                #expect(item.property == rw)
                #expect(cursor.virtAddr == target + pageSize)
                let frame = item.intoFrame()
                #expect(frame.referenceCount == 1)   // the reference the leaf held
            }
            // The taken frame went back to the allocator; its neighbours stay mapped.
            #expect(machine.outstandingFrames == 512 * 512 - 1 + 4)
            #expect(table.pageWalk(target) == nil)
            let mappings = table.view().mappings
            #expect(mappings.count == 511 + 511)
            #expect(mappings.filter { $0.level == 2 }.count == 511)
            #expect(mappings.allSatisfy { $0.pa.lowerBound == paOf($0.va.lowerBound) && $0.property == rw })
            #expect(table.pageWalk(target + pageSize)?.paddr == paOf(target + pageSize))
            #expect(table.pageWalk(Vaddr(target.rawValue - 1))?.paddr == Paddr(paOf(target).rawValue - 1))
            #expect(table.structuralViolations() == [])

            // Take the rest, leaf by leaf from the split level-1 node, and subtree by subtree.
            do {
                var cursor = try table.cursorMut(Vaddr(0)..<Vaddr(UInt64(2 * gigaPageSize)))
                var fragments = 0
                while let frag = cursor.takeNext(2 * gigaPageSize - (cursor.virtAddr - Vaddr(0))) {
                    _ = consume frag
                    fragments += 1
                }
                #expect(fragments == 1)   // the whole split level-2 subtree
            }
            #expect(table.nodes().count == 1)
            #expect(machine.outstandingFrames == 1)
        }

        /// Maps `item` at `va` through a cursor over `range`.
        static func mapGigaPage(
            _ table: PageTable<UserPtConfig>, _ range: Range<Vaddr>, at va: Vaddr, _ item: consuming MappedItem
        ) {
            var cursor = try! table.cursorMut(range)
            try! cursor.jump(va)
            cursor.map(item)
        }

        @Test func untrackedGigaPage() throws {
            let machine = makeMachine()
            let table = try PageTable<UserPtConfig>(empty: machine)
            let giga = Vaddr(UInt64(gigaPageSize))
            let pa = Paddr(UInt64(4 * gigaPageSize))   // I/O memory far outside RAM
            let whole = Vaddr(0)..<Vaddr(UInt64(2 * gigaPageSize))
            let prop = PageProperty.user(.rw, cache: .uncacheable)

            // A cursor over exactly one 1 GiB slot is locked below level 3 and cannot map a
            // 1 GiB page (as in OSTD): map through a cursor over two slots.
            Self.mapGigaPage(table, whole, at: giga, MappedItem(untracked: pa, level: 3, property: prop))
            let mapped = table.view().mappings
            #expect(mapped.count == 1)
            #expect(mapped.first?.level == 3)
            #expect(mapped.first?.isTracked == false)
            #expect(table.pageWalk(giga + 0x1234_5678)?.paddr == pa + 0x1234_5678)
            #expect(table.pageWalk(giga + 0x1234_5678)?.property == prop)

            // Protecting the whole page does not split it.
            do {
                var cursor = try table.cursorMut(whole)
                try cursor.jump(giga)
                let protected = cursor.protectNext(gigaPageSize) { $0.flags = .r }
                #expect(protected == giga..<(giga + gigaPageSize))
            }
            #expect(table.view().mappings.count == 1)
            #expect(table.pageWalk(giga)?.property == .user(.r, cache: .uncacheable))

            // Taking the whole page returns it as one item.
            do {
                var cursor = try table.cursorMut(whole)
                try cursor.jump(giga)
                guard case .mapped(let va, let item)? = cursor.takeNext(gigaPageSize) else {
                    Issue.record("expected the 1 GiB item"); return
                }
                #expect(va == giga)
                #expect(item.level == 3)
                #expect(item.paddr == pa)
                #expect(item.isTracked == false)
            }
            #expect(table.nodes().count == 1)

            // Map it again; protecting one page inside splits it twice.
            Self.mapGigaPage(table, whole, at: giga, MappedItem(untracked: pa, level: 3, property: prop))
            let target = giga + (gigaPageSize - pageSize)   // the very last page
            OSTDPageTableTests.protectRange(table, target..<(target + pageSize)) { $0.flags.remove(.w) }
            let split = table.view().mappings
            #expect(split.count == 511 + 511 + 1)
            #expect(split.allSatisfy { $0.pa.lowerBound == pa + ($0.va.lowerBound - giga) && !$0.isTracked })
            #expect(split.last?.va == target..<(target + pageSize))
            #expect(split.last?.property == .user(.r, cache: .uncacheable))
            #expect(table.structuralViolations() == [])
            #expect(machine.outstandingFrames == 4)

            do {
                var cursor = try table.cursorMut(whole)
                guard case .strayPageTable(_, let va, let len, let numFrames)? = cursor.takeNext(2 * gigaPageSize) else {
                    Issue.record("expected the split subtree"); return
                }
                #expect(va == giga)
                #expect(len == gigaPageSize)
                #expect(numFrames == 1023)
            }
            #expect(table.nodes().count == 1)
            #expect(machine.outstandingFrames == 1)
        }
    }
}

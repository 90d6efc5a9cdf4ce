// OSTD's mapping and protection_and_query page-table ktests: the abstract view in address order,
// maps and unmaps of mixed page sizes, protecting and querying them, and `protectNext` over
// empty entries and ranges.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

// MARK: - mapping

extension OSTDPageTableTests {
    @Suite struct Mappings {
        // Beyond OSTD: the abstract view lists leaves in address order, also when a node holds
        // both leaves and child nodes (a 4 KiB page at 0 and a 2 MiB page at 2 MiB).
        @Test func viewIsInAddressOrder() throws {
            let machine = makeMachine()
            let table = try PageTable<UserPtConfig>(empty: machine)
            let huge = Vaddr(UInt64(hugePageSize))
            do {
                var cursor = try table.cursorMut(Vaddr(0)..<(huge + hugePageSize))
                cursor.map(MappedItem(untracked: Paddr(0x1000), level: 1, property: rw))
                try cursor.jump(huge)
                cursor.map(MappedItem(untracked: Paddr(UInt64(hugePageSize)), level: 2, property: rw))
            }
            let view = table.view()
            #expect(view.mappings.map(\.va.lowerBound) == [Vaddr(0), huge])
            let wellFormed = view.inv()
            #expect(wellFormed)
            #expect(view.mapping(covering: Vaddr(0x10))?.pa.lowerBound == Paddr(0x1000))
            #expect(view.mapping(covering: huge + 0x10)?.level == 2)
            #expect(table.structuralViolations() == [])
        }

        // OSTD: mapping::mixed_granularity_map_unmap
        //
        // OSTD's VA-to-PA offset of 11010 pages is not a multiple of 512, so it maps 4 KiB pages
        // only. Here the offset is 20 × 512 pages: 67 leading 4 KiB pages, 531 × 2 MiB, 416
        // trailing 4 KiB pages; the page unmapped lies inside a 2 MiB page, which must split.
        @Test func mixedGranularityMapUnmap() throws {
            let machine = makeMachine()
            let table = try PageTable<UserPtConfig>(empty: machine)
            let page = pageSize
            let fromPpn = 13245..<(512 * 512 + 23456)
            let toPpn = fromPpn.lowerBound - 20 * 512
            let virtualRange = Vaddr(UInt64(page * fromPpn.lowerBound))..<Vaddr(UInt64(page * fromPpn.upperBound))
            let physicalAddr = Paddr(UInt64(page * toPpn))
            let paOf = { (va: Vaddr) in physicalAddr + (va - virtualRange.lowerBound) }

            mapUntracked(table, virtualRange, physicalAddr, rw)
            let before = table.view().mappings
            #expect(before.count == 67 + 531 + 416)
            #expect(before.filter { $0.level == 2 }.count == 531)
            #expect(before.filter { $0.level == 1 }.count == 67 + 416)
            #expect(before.allSatisfy { $0.pa.lowerBound == paOf($0.va.lowerBound) && !$0.isTracked })

            // Initial mappings at various offsets.
            for i in 0..<100 {
                let offset = i * (page + 1000)   // a stride larger than a page
                #expect(table.pageWalk(virtualRange.lowerBound + offset)?.paddr == physicalAddr + offset)
            }

            // Unmap one page, inside the 2 MiB page 13312 ..< 13824.
            let unmapVa = Vaddr(UInt64(page * 13456))
            #expect(table.translate(unmapVa)?.leaf.level == 2)
            do {
                var cursor = try table.cursorMut(unmapVa..<(unmapVa + page))
                #expect(cursor.virtAddr == unmapVa)
                guard case .mapped(let fragVa, let item)? = cursor.takeNext(page) else {
                    Issue.record("expected to unmap a page, but got nil"); return
                }
                #expect(fragVa == unmapVa)
                #expect(item.paddr == physicalAddr + page * (13456 - fromPpn.lowerBound))
                #expect(item.level == 1)
                #expect(item.property == rw)
            }

            // The page is unmapped.
            #expect(table.pageWalk(unmapVa) == nil)
            #expect(table.pageWalk(unmapVa + (page - 1)) == nil)

            // Its neighbours are still mapped, now by 4 KiB leaves.
            let low = Vaddr(unmapVa.rawValue - UInt64(page))
            let high = unmapVa + page
            #expect(table.pageWalk(low)?.paddr == paOf(low))
            #expect(table.pageWalk(high)?.paddr == paOf(high))
            #expect(table.translate(low)?.leaf.level == 1)
            #expect(table.translate(high)?.leaf.level == 1)
            // The next 2 MiB page is untouched.
            let nextHuge = Vaddr(UInt64(page * 13824))
            #expect(table.translate(nextHuge)?.leaf.level == 2)
            #expect(table.pageWalk(nextHuge + 0x1234)?.paddr == paOf(nextHuge) + 0x1234)

            let after = table.view().mappings
            #expect(after.filter { $0.level == 2 }.count == 530)
            #expect(after.filter { $0.level == 1 }.count == 67 + 416 + 511)
            #expect(table.structuralViolations() == [])
            // Only nodes hold frames: every leaf is untracked.
            #expect(machine.outstandingFrames == table.nodes().count)
        }

        // OSTD: mapping::mixed_granularity_protect_query
        @Test func mixedGranularityProtectQuery() throws {
            let machine = makeMachine()
            let table = try PageTable<UserPtConfig>(empty: machine)
            let page = pageSize
            let fourKbPpn = 1
            let twoMbPpn = 512
            let oneGbPpn = 512 * 512

            let fromPpn = (oneGbPpn - twoMbPpn)..<(oneGbPpn + oneGbPpn + twoMbPpn + 2 * fourKbPpn)
            let toPpn = fromPpn.lowerBound - twoMbPpn
            let from = Vaddr(UInt64(page * fromPpn.lowerBound))..<Vaddr(UInt64(page * fromPpn.upperBound))
            let to = Paddr(UInt64(page * toPpn))
            let mappedPaOfVa = { (va: Vaddr) in to + (va - from.lowerBound) }

            mapUntracked(table, from, to, rw)

            // Mapped at 2 MiB granularity (× 514) plus two 4 KiB pages.
            do {
                var cursor = try table.cursor(from)
                var frameI = 0
                while true {
                    let (va, item) = try cursor.query()
                    guard let item else {
                        Issue.record("expected a mapped untracked physical address at \(va.lowerBound)"); return
                    }
                    #expect(item.paddr == mappedPaOfVa(va.lowerBound))
                    #expect(item.level == (frameI < 514 ? 2 : 1))
                    #expect(item.property.flags == .rw)
                    #expect(item.property.cache == .writeback)
                    if frameI < 514 {
                        #expect(va.lowerBound == from.lowerBound + frameI * page * twoMbPpn)
                        #expect(va.upperBound - va.lowerBound == page * twoMbPpn)
                    } else {
                        #expect(va.lowerBound == from.lowerBound + 514 * page * twoMbPpn + (frameI - 514) * page)
                        #expect(va.upperBound - va.lowerBound == page)
                    }
                    do { try cursor.jump(va.upperBound) } catch { break }
                    #expect(frameI < 516)
                    frameI += 1
                }
                #expect(frameI == 515)
            }

            let protectPpn = (fromPpn.lowerBound + 18)..<(fromPpn.lowerBound + 20)
            let protectRange = Vaddr(UInt64(page * protectPpn.lowerBound))..<Vaddr(UInt64(page * protectPpn.upperBound))
            OSTDPageTableTests.protectRange(table, protectRange) { $0.flags.remove(.w) }

            // The page below the protected range.
            let low = Vaddr(protectRange.lowerBound.rawValue - UInt64(page))
            let (lowPa, lowProp) = try #require(table.pageWalk(low), "page should be mapped before protection")
            #expect(lowPa == mappedPaOfVa(low))
            #expect(lowProp == rw)

            // The pages inside it.
            do {
                var cursor = try table.cursor(protectRange)
                while true {
                    let (va, item) = try cursor.query()
                    guard let item else {
                        Issue.record("expected a mapped untracked physical address at \(va.lowerBound)"); return
                    }
                    #expect(item.paddr == mappedPaOfVa(va.lowerBound))
                    #expect(item.level == 1)
                    #expect(item.property.flags == .r)
                    #expect(item.property.cache == .writeback)
                    do { try cursor.jump(va.upperBound) } catch { break }
                }
            }

            // The page above it.
            let high = protectRange.upperBound
            let (highPa, highProp) = try #require(table.pageWalk(high), "page should be mapped after protection")
            #expect(highPa == mappedPaOfVa(high))
            #expect(highProp == rw)

            // The first 2 MiB page was split; the others were not.
            let mappings = table.view().mappings
            #expect(mappings.filter { $0.level == 2 }.count == 513)
            #expect(mappings.filter { $0.level == 1 }.count == 512 + 2)
            #expect(table.structuralViolations() == [])
        }
    }
}

// MARK: - protection_and_query

extension OSTDPageTableTests {
    @Suite struct ProtectionAndQuery {
        // OSTD: protection_and_query::base_protect_query
        @Test func baseProtectQuery() throws {
            let machine = makeMachine()
            let table = try PageTable<UserPtConfig>(empty: machine)
            let page = pageSize
            let fromPpn = 1..<1000
            let virtualRange = Vaddr(UInt64(page * fromPpn.lowerBound))..<Vaddr(UInt64(page * fromPpn.upperBound))

            mapUntracked(table, virtualRange, Paddr(0), rw)

            // Initial mappings are RW.
            for i in fromPpn {
                let prop = try #require(table.pageWalk(Vaddr(UInt64(page * i))), "mapping should exist").property
                #expect(prop.flags == .rw)
                #expect(prop.cache == .writeback)
            }

            // Remove W from pages 18 and 19.
            let protectedRange = Vaddr(UInt64(page * 18))..<Vaddr(UInt64(page * 20))
            protectRange(table, protectedRange) { $0.flags.remove(.w) }

            for i in 18..<20 {
                let prop = try #require(table.pageWalk(Vaddr(UInt64(page * i))), "mapping should exist").property
                #expect(prop.flags == .r)
                #expect(prop.cache == .writeback)
            }

            // The pages just before and after still have RW.
            #expect(table.pageWalk(Vaddr(UInt64(page * 17)))?.property.flags == .rw)
            #expect(table.pageWalk(Vaddr(UInt64(page * 20)))?.property.flags == .rw)
        }

        // OSTD: protection_and_query::protect_next_empty_entry
        @Test func protectNextEmptyEntry() throws {
            let machine = makeMachine()
            let table = try PageTable<UserPtConfig>(empty: machine)
            let range = Vaddr(0x1000)..<Vaddr(0x2000)

            var cursor = try table.cursorMut(range)
            let result = cursor.protectNext(range.upperBound - range.lowerBound) { $0.flags = .r }
            #expect(result == nil)
        }

        // OSTD: protection_and_query::protect_next_touches_empty_range
        @Test func protectNextTouchesEmptyRange() throws {
            let machine = makeMachine()
            let table = try PageTable<UserPtConfig>(empty: machine)
            let range = Vaddr(0x1000)..<Vaddr(0x3000)   // spans several pages
            let subRange = Vaddr(0x1000)..<Vaddr(0x2000)
            mapUntracked(table, subRange, Paddr(0x2000), rw)

            do {
                var cursor = try table.cursorMut(range)
                let result = cursor.protectNext(range.upperBound - range.lowerBound) { $0.flags = .r }
                #expect(result == subRange)
            }
            #expect(table.pageWalk(Vaddr(0x1000))?.property.flags == .r)
        }
    }
}

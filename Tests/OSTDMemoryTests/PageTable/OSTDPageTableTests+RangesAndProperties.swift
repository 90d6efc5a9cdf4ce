// OSTD's range_checks, page_properties, arch_pte_impls and overlapping_mappings page-table
// ktests: which virtual ranges a cursor accepts (and the panics at the edges), that a mapping
// keeps every page property (all 1024 of them), how raw PTEs cast, and that overlapping or
// unaligned maps panic.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

// MARK: - range_checks

extension OSTDPageTableTests {
    @Suite struct RangeChecks {
        // OSTD: range_checks::range_check
        @Test func rangeCheck() throws {
            let machine = makeMachine()
            let table = try PageTable<UserPtConfig>(empty: machine)
            let kernelVa = Vaddr(0xffff_8000_0000_0000)   // LINEAR_MAPPING_BASE_VADDR

            // A valid range succeeds.
            #expect(throws: Never.self) { _ = try table.cursorMut(Vaddr(0)..<Vaddr(UInt64(pageSize))) }

            // Invalid ranges fail.
            #expect(throws: PageTableError.unalignedVaddr(Vaddr(UInt64(pageSize + 1)))) {
                _ = try table.cursorMut(Vaddr(0)..<Vaddr(UInt64(pageSize + 1)))
            }
            #expect(throws: PageTableError.invalidVaddrRange(Vaddr(0), Vaddr(0))) {
                _ = try table.cursorMut(Vaddr(0)..<Vaddr(0))
            }
            // OSTD's reversed range `PAGE_SIZE..0` cannot be built in Swift: `Range` traps on it,
            // even with `init(uncheckedBounds:)` in debug builds.
            #expect(throws: PageTableError.self) { _ = try table.cursorMut(kernelVa..<(kernelVa + pageSize)) }
        }

        // OSTD: range_checks::boundary_conditions
        @Test func boundaryConditions() throws {
            let machine = makeMachine()
            let table = try PageTable<UserPtConfig>(empty: machine)

            // An empty range.
            #expect(throws: PageTableError.self) { _ = try table.cursorMut(Vaddr(0)..<Vaddr(0)) }
            // An out-of-range virtual address.
            #expect(throws: PageTableError.self) {
                _ = try table.cursorMut(Vaddr(0xffff_8000_0000_0000)..<Vaddr(0xffff_8000_0001_0000))
            }
            // Misaligned addresses.
            #expect(throws: PageTableError.unalignedVaddr(Vaddr(1))) {
                _ = try table.cursorMut(Vaddr(1)..<Vaddr(UInt64(pageSize + 1)))
            }
            // Nothing was allocated for the rejected ranges.
            #expect(table.nodes().count == 1)
        }

        // OSTD: range_checks::start_boundary_mapping
        @Test func startBoundaryMapping() {
            let machine = makeMachine()
            let table = createUserPtMappedAt(machine, Vaddr(0)..<Vaddr(UInt64(pageSize)))
            #expect(table.pageWalk(Vaddr(0)) != nil)
            #expect(table.pageWalk(Vaddr(UInt64(pageSize - 1))) != nil)
            #expect(table.pageWalk(Vaddr(UInt64(pageSize))) == nil)
        }

        // OSTD: range_checks::end_boundary_mapping
        @Test func endBoundaryMapping() {
            let machine = makeMachine()
            let start = Vaddr(maxUserspaceVaddr.rawValue - UInt64(pageSize))
            let table = createUserPtMappedAt(machine, start..<maxUserspaceVaddr)
            #expect(table.pageWalk(start) != nil)
            #expect(table.pageWalk(Vaddr(maxUserspaceVaddr.rawValue - 1)) != nil)
            #expect(table.pageWalk(maxUserspaceVaddr) == nil)
        }

        // OSTD: range_checks::overflow_boundary_mapping
        @Test func overflowBoundaryMapping() async {
            let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let machine = makeMachine()
                let half = UInt64(pageSize / 2)
                let range = Vaddr(maxUserspaceVaddr.rawValue - half)..<Vaddr(maxUserspaceVaddr.rawValue + half)
                _ = OSTDPageTableTests.createUserPtMappedAt(machine, range)
            }
            #expect(stderrContains(result, "failed to create the cursor"))
        }
    }
}

// MARK: - page_properties

extension OSTDPageTableTests {
    @Suite struct PageProperties {
        /// Maps one tracked frame with `prop` and checks what `pageWalk` reports (OSTD
        /// `check_map_with_property`), and that the frame's reference count is its handles plus
        /// its mappings.
        static func checkMapWithProperty(_ machine: Machine, _ prop: PageProperty) throws {
            let table = try PageTable<UserPtConfig>(empty: machine)
            let range = Vaddr(UInt64(pageSize))..<Vaddr(UInt64(2 * pageSize))
            let frame = try FrameAllocOptions().allocFrame(in: machine)
            let handle = frame.clone()
            do {
                var cursor = try table.cursorMut(range)
                cursor.map(MappedItem(frame: frame, property: prop))
            }
            // A tracked frame, whatever the property says: `AVAIL1` is the page table's.
            var expected = prop
            expected.flags.remove(.avail1)
            #expect(table.pageWalk(range.lowerBound + 100)?.property == expected, "mapped with \(prop)")
            #expect(table.pageWalk(range.lowerBound + 100)?.paddr == handle.paddr + 100)
            #expect(table.translate(range.lowerBound)?.leaf.isTracked == true, "mapped with \(prop)")
            #expect(handle.referenceCount == 2)   // the handle and the mapping
        }

        // OSTD: page_properties::map_preserves_page_property
        @Test func mapPreservesPageProperty() throws {
            let machine = makeMachine()
            for prop in allPageProperties() {
                try Self.checkMapWithProperty(machine, prop)
            }
            #expect(machine.outstandingFrames == 0)
        }

        @Test func referenceCountIsHandlesPlusMappings() throws {
            let machine = makeMachine()
            let table = try PageTable<UserPtConfig>(empty: machine)
            let frame = try FrameAllocOptions().allocFrame(in: machine)
            let paddr = frame.paddr
            do {
                var cursor = try table.cursorMut(Vaddr(0x1000)..<Vaddr(0x4000))
                cursor.map(MappedItem(frame: frame.clone(), property: rw))
                try cursor.jump(Vaddr(0x3000))
                cursor.map(MappedItem(frame: frame.clone(), property: .user(.r)))
            }
            #expect(frame.referenceCount == 3)   // one handle, two mappings
            #expect(table.trackedMappingCounts()[paddr] == 2)
            do {
                var cursor = try table.cursorMut(Vaddr(0x1000)..<Vaddr(0x4000))
                guard case .mapped(let va, let item)? = cursor.takeNext(0x3000) else {
                    Issue.record("nothing taken"); return
                }
                #expect(va == Vaddr(0x1000))
                #expect(frame.referenceCount == 3)   // the item holds the reference the leaf held
                _ = consume item
                #expect(frame.referenceCount == 2)
            }
            #expect(table.trackedMappingCounts()[paddr] == 1)
            #expect(table.structuralViolations() == [])
        }
    }
}

// MARK: - arch_pte_impls

extension OSTDPageTableTests {
    @Suite struct ArchPteImpls {
        // OSTD: arch_pte_impls::zeroed_pte_is_absent_pte
        @Test func zeroedPteIsAbsentPte() {
            let pte = PageTableEntry(raw: 0)
            for level in 1...PagingConsts.nrLevels {
                #expect(pte.repr(level: level) == .absent)
            }
        }

        // OSTD: arch_pte_impls::cast_frame_pte_preserves_repr
        @Test func castFramePtePreservesRepr() {
            let paddr = Paddr(0xff_c000_0000)
            for level in 1...PagingConsts.highestTranslationLevel {
                // As OSTD: non-readable pages are not supported by most architectures.
                for prop in allPageProperties() where prop.flags.contains(.r) {
                    let repr = PteScalar.mapped(paddr, prop)
                    let pte = PageTableEntry(repr: repr, level: level)
                    #expect(pte.repr(level: level) == repr, "level \(level), \(prop)")
                }
            }
        }

        // OSTD: arch_pte_impls::cast_pt_pte_preserves_repr
        @Test func castPtPtePreservesRepr() {
            let paddr = Paddr(0xff_c000_0000)
            let allFlags: PageTableFlags = [.avail1, .avail2]
            for level in 2...PagingConsts.nrLevels {
                for bits in SubsetIter(allFlags.rawValue) {
                    let repr = PteScalar.pageTable(paddr, PageTableFlags(rawValue: bits))
                    let pte = PageTableEntry(repr: repr, level: level)
                    #expect(pte.repr(level: level) == repr, "level \(level), flags \(bits)")
                }
            }
        }

        // OSTD: arch_pte_impls::cast_absent_pte_preserves_repr
        @Test func castAbsentPtePreservesRepr() {
            for level in 1...PagingConsts.nrLevels {
                let pte = PageTableEntry(repr: .absent, level: level)
                #expect(pte.repr(level: level) == .absent)
            }
        }
    }
}

// MARK: - overlapping_mappings

extension OSTDPageTableTests {
    @Suite struct OverlappingMappings {
        // OSTD: overlapping_mappings::overlapping_mappings
        @Test func overlappingMappings() async {
            let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let machine = makeMachine()
                let table = try! PageTable<UserPtConfig>(empty: machine)
                let page = pageSize
                do {
                    var cursor = try! table.cursorMut(Vaddr(UInt64(page))..<Vaddr(UInt64(2 * page)))
                    cursor.map(MappedItem(untracked: Paddr(UInt64(100 * page)), level: 1, property: OSTDPageTableTests.rw))
                }
                // Maps the second range, overlapping with the first.
                var cursor = try! table.cursorMut(Vaddr(UInt64(page))..<Vaddr(UInt64(3 * page)))
                cursor.map(MappedItem(untracked: Paddr(UInt64(200 * page)), level: 1, property: OSTDPageTableTests.rw))
            }
            #expect(stderrContains(result, "mapping over an already mapped page"))
        }

        // OSTD: overlapping_mappings::unaligned_map
        @Test func unalignedMap() async {
            let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let machine = makeMachine()
                let table = try! PageTable<UserPtConfig>(empty: machine)
                let huge = OSTDPageTableTests.hugePageSize
                // Aligned to 4 KiB but not 2 MiB.
                var cursor = try! table.cursorMut(Vaddr(UInt64(pageSize))..<Vaddr(UInt64(huge + pageSize)))
                cursor.map(MappedItem(untracked: Paddr(UInt64(huge)), level: 2, property: OSTDPageTableTests.rw))
            }
            #expect(stderrContains(result, "cursor virtual address not aligned for mapping"))
        }
    }
}

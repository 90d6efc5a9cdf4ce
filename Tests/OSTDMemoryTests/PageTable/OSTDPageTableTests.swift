// The 33 page-table ktests of OSTD (`ostd/src/mm/page_table/test.rs`), ported one for one, plus
// tests of 1 GiB leaves and of the boot page table beyond OSTD's.
//
// The suites mirror OSTD's modules. OSTD's `TestPtConfig` (all items untracked, leaves up to 1 GiB)
// becomes `UserPtConfig` with `MappedItem(untracked:level:property:)`: every configuration here
// allows 1 GiB leaves. Should-panic tests are exit tests that check the panic message.

import Testing
@testable import OSTDMemory

@Suite struct OSTDPageTableTests {
    /// `PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback)`.
    static let rw = PageProperty.user(.rw)
    /// 2 MiB.
    static let hugePageSize = PagingConsts.pageSize(2)
    /// 1 GiB.
    static let gigaPageSize = PagingConsts.pageSize(3)

    // MARK: Helpers (OSTD `test_utils`)

    /// A user table with one tracked frame mapped RW at the start of `range` (OSTD
    /// `create_user_pt_mapped_at`).
    static func createUserPtMappedAt(_ machine: Machine, _ range: Range<Vaddr>) -> PageTable<UserPtConfig> {
        let table = try! PageTable<UserPtConfig>(empty: machine)
        let frame = try! FrameAllocOptions().allocFrame(in: machine)
        do {
            var cursor = try table.cursorMut(range)
            cursor.map(MappedItem(frame: frame, property: rw))
        } catch {
            preconditionFailure("failed to create the cursor: \(error)")
        }
        return table
    }

    /// The pages that map `len` bytes from `va` to `pa`, largest first: at each step the largest
    /// level that fits the remaining length and to which both addresses are aligned (OSTD
    /// `largest_pages`).
    static func largestPages<C: PageTableConfig>(
        _: C.Type, va: Vaddr, pa: Paddr, len: Int
    ) -> [(paddr: Paddr, level: PagingLevel)] {
        precondition(va.isAligned(to: pageSize) && pa.isAligned(to: pageSize) && len % pageSize == 0)
        precondition(C.isValidRange(va..<(va + len)))
        var pages: [(paddr: Paddr, level: PagingLevel)] = []
        var (va, pa, len) = (va, pa, len)
        while len > 0 {
            var level = PagingConsts.highestTranslationLevel
            while PagingConsts.pageSize(level) > len || !va.isAligned(to: PagingConsts.pageSize(level))
                || !pa.isAligned(to: PagingConsts.pageSize(level)) {
                level -= 1
            }
            let size = PagingConsts.pageSize(level)
            pages.append((pa, level))
            va = va + size
            pa = pa + size
            len -= size
        }
        return pages
    }

    /// Maps `va` to `pa` with untracked pages, largest first (OSTD `map_untracked`).
    static func mapUntracked<C: PageTableConfig>(
        _ table: PageTable<C>, _ va: Range<Vaddr>, _ pa: Paddr, _ prop: PageProperty
    ) {
        var cursor = try! table.cursorMut(va)
        for (paddr, level) in largestPages(C.self, va: va.lowerBound, pa: pa, len: va.upperBound - va.lowerBound) {
            cursor.map(MappedItem(untracked: paddr, level: level, property: prop))
        }
    }

    /// Applies `op` to every leaf in `range` (OSTD `protect_range`).
    static func protectRange<C: PageTableConfig>(
        _ table: PageTable<C>, _ range: Range<Vaddr>, _ op: (inout PageProperty) -> Void
    ) {
        var cursor = try! table.cursorMut(range)
        while let protected = cursor.protectNext(range.upperBound - cursor.virtAddr, op) {
            #expect(protected.lowerBound >= range.lowerBound)
            #expect(protected.upperBound <= range.upperBound)
        }
    }

    /// The subsets of the bits of `full`, in descending order of their values (OSTD `SubsetIter`).
    struct SubsetIter: Sequence, IteratorProtocol {
        let full: UInt8
        var cur: UInt8
        var finished = false

        init(_ full: UInt8) {
            self.full = full
            cur = full
        }

        mutating func next() -> UInt8? {
            if finished { return nil }
            let flag = cur
            if cur == 0 {
                finished = true
            } else {
                cur = (cur - 1) & full
            }
            return flag
        }
    }

    /// Every page flag (OSTD's `PageFlags::all()` plus `AVAIL1`, which OSTD keeps among the
    /// privileged flags).
    static let allPageFlags: PageFlags = [.r, .w, .x, .accessed, .dirty, .avail1, .avail2]
    /// Every privileged flag.
    static let allPrivilegedFlags: PrivilegedPageFlags = [.user, .global]

    /// Every `PageFlags` subset × every `PrivilegedPageFlags` subset × {writeback, uncacheable}
    /// (OSTD `all_page_properties`): 2^7 × 2^2 × 2 = 1024 properties, as many as OSTD's.
    static func allPageProperties() -> [PageProperty] {
        SubsetIter(allPageFlags.rawValue).flatMap { flags in
            SubsetIter(allPrivilegedFlags.rawValue).flatMap { privileged in
                [CachePolicy.writeback, .uncacheable].map { cache in
                    PageProperty(flags: PageFlags(rawValue: flags), cache: cache,
                                 privilegedFlags: PrivilegedPageFlags(rawValue: privileged))
                }
            }
        }
    }
}

// MARK: - test_utils

extension OSTDPageTableTests {
    @Suite struct TestUtils {
        // OSTD: test_utils::test_subset_iter
        @Test func subsetIter() {
            #expect(Array(SubsetIter(0b1011)) == [0b1011, 0b1010, 0b1001, 0b1000, 0b0011, 0b0010, 0b0001, 0b0000])
        }

        @Test func allPagePropertiesAreDistinct() {
            let all = allPageProperties()
            #expect(all.count == 1024)
            #expect(Set(all).count == 1024)
        }
    }
}

// MARK: - create_page_table

extension OSTDPageTableTests {
    @Suite struct CreatePageTable {
        // OSTD: create_page_table::create_user_page_table
        @Test func createUserPageTable() throws {
            let machine = makeMachine()
            let kernel = try PageTable.newKernelPageTable(machine: machine)
            let user = try kernel.createUserPageTable()
            let top = PagingConsts.nrLevels
            for i in PagingConsts.nrEntries / 2 ..< PagingConsts.nrEntries {
                guard case .pageTable(let kernelNode, _) = kernel.root.read(i).repr(level: top) else {
                    Issue.record("expected a node reference at \(i) of kernel root PT")
                    continue
                }
                #expect(NodeRef(kernelNode, machine.context).level == top - 1)
                guard case .pageTable(let userNode, _) = user.root.read(i).repr(level: top) else {
                    Issue.record("expected a node reference at \(i) of user root PT")
                    continue
                }
                #expect(NodeRef(userNode, machine.context).level == top - 1)
                #expect(kernelNode == userNode)
            }
            // The user half of the new root is empty, and the shared half is not counted.
            #expect((0..<PagingConsts.nrEntries / 2).allSatisfy { user.root.read($0) == .absent })
            #expect(user.root.nrChildren == 0)
        }

        // OSTD: create_page_table::new_kernel_page_table
        @Test func newKernelPageTable() throws {
            let machine = makeMachine()
            let kernel = try PageTable.newKernelPageTable(machine: machine)
            for i in PagingConsts.nrEntries / 2 ..< PagingConsts.nrEntries {
                guard case .pageTable = kernel.root.read(i).repr(level: PagingConsts.nrLevels) else {
                    Issue.record("root entry \(i) of the kernel page table is not a node")
                    continue
                }
            }
            #expect(kernel.root.nrChildren == 256)
        }
    }
}

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

// MARK: - boot_pt

extension OSTDPageTableTests {
    @Suite struct BootPt {
        // OSTD: boot_pt::map_base_page
        @Test func mapBasePage() throws {
            let machine = makeMachine()
            var bootPt = try BootPageTable(machine: machine)
            let fromVirt = Vaddr(0x1000)
            let toPhys = Paddr(0x2000)

            bootPt.mapBasePage(fromVirt, toPhys, rw)

            let walked = bootPt.pageWalk(fromVirt + 1)
            #expect(walked?.paddr == toPhys + 1)
            #expect(walked?.property == rw)
            #expect(bootPt.pageWalk(fromVirt + pageSize) == nil)
            #expect(Self.bootPtViolations(bootPt) == [])
            #expect(machine.outstandingFrames == 4)   // the root and one node per level below
            bootPt.dismiss()
            #expect(machine.outstandingFrames == 0)
        }

        // OSTD: boot_pt::map_base_page_already_mapped
        @Test func mapBasePageAlreadyMapped() async {
            let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let machine = makeMachine()
                var bootPt = try! BootPageTable(machine: machine)
                bootPt.mapBasePage(Vaddr(0x1000), Paddr(0x2000), OSTDPageTableTests.rw)
                bootPt.mapBasePage(Vaddr(0x1000), Paddr(0x3000), OSTDPageTableTests.rw)
            }
            #expect(stderrContains(result, "mapping an already mapped page in the boot page table"))
        }

        // OSTD: boot_pt::protect_base_page_unmapped
        @Test func protectBasePageUnmapped() async {
            let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let machine = makeMachine()
                var bootPt = try! BootPageTable(machine: machine)
                bootPt.protectBasePage(Vaddr(0x2000)) { $0.flags = .r }
            }
            #expect(stderrContains(result, "protecting an unmapped page in the boot page table"))
        }

        // OSTD: boot_pt::map_protect
        @Test func mapProtect() throws {
            let machine = makeMachine()
            var bootPt = try BootPageTable(machine: machine)

            // Map page 1.
            let from1 = Vaddr(0x2000)
            let toPhys1 = Paddr(0x2000)
            let prop1 = PageProperty.user(.rw, cache: .writeback)
            bootPt.mapBasePage(from1, toPhys1, prop1)
            #expect(bootPt.pageWalk(from1 + 1)?.paddr == toPhys1 + 1)
            #expect(bootPt.pageWalk(from1 + 1)?.property == prop1)

            // Protect page 1.
            bootPt.protectBasePage(from1) { $0.flags = .rx }
            #expect(bootPt.pageWalk(from1 + 1)?.paddr == toPhys1 + 1)
            #expect(bootPt.pageWalk(from1 + 1)?.property == PageProperty.user(.rx, cache: .writeback))

            // Map page 2.
            let from2 = Vaddr(0x3000)
            let toPhys2 = Paddr(0x3000)
            let prop2 = PageProperty.user(.rx, cache: .uncacheable)
            bootPt.mapBasePage(from2, toPhys2, prop2)
            #expect(bootPt.pageWalk(from2 + 2)?.paddr == toPhys2 + 2)
            #expect(bootPt.pageWalk(from2 + 2)?.property == prop2)

            // Protect page 2.
            bootPt.protectBasePage(from2) { $0.flags = .rw }
            #expect(bootPt.pageWalk(from2 + 2)?.paddr == toPhys2 + 2)
            #expect(bootPt.pageWalk(from2 + 2)?.property == PageProperty.user(.rw, cache: .uncacheable))

            #expect(Self.bootPtViolations(bootPt) == [])
        }

        // Beyond OSTD: a huge page (as a firmware table would hold) splits twice on protect.
        @Test func protectBasePageSplitsHugePages() throws {
            let machine = makeMachine()
            var bootPt = try BootPageTable(machine: machine)
            let giga = UInt64(gigaPageSize)
            let prop = PageProperty.kernel(.rwx)
            Self.installHugeLeaf(bootPt, Vaddr(giga), Paddr(giga), level: 3, prop)
            #expect(bootPt.pageWalk(Vaddr(giga + 0x12_3456))?.paddr == Paddr(giga + 0x12_3456))

            let target = Vaddr(giga + UInt64(hugePageSize) + UInt64(pageSize))
            bootPt.protectBasePage(target) { $0.flags = .r }

            #expect(bootPt.pageWalk(target + 5)?.paddr == Paddr(target.rawValue + 5))
            #expect(bootPt.pageWalk(target + 5)?.property == .kernel(.r))
            for va in [giga, giga + UInt64(hugePageSize), giga + UInt64(hugePageSize + 2 * pageSize),
                       giga + UInt64(3 * hugePageSize) + 7, 2 * giga - 1] {
                #expect(bootPt.pageWalk(Vaddr(va))?.paddr == Paddr(va), "at \(Vaddr(va))")
                #expect(bootPt.pageWalk(Vaddr(va))?.property == prop, "at \(Vaddr(va))")
            }
            #expect(Self.bootPtViolations(bootPt) == [])
            #expect(machine.outstandingFrames == 4)   // root, level 3, split level 2, split level 1

            // Mapping next to the split page works; mapping in a huge page does not (below).
            bootPt.protectBasePage(target + pageSize) { $0.flags = .rw }
            #expect(bootPt.pageWalk(target + pageSize)?.property == .kernel(.rw))
            #expect(machine.outstandingFrames == 4)
            bootPt.dismiss()
            #expect(machine.outstandingFrames == 0)
        }

        @Test func mapBasePageInHugePage() async {
            let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let machine = makeMachine()
                var bootPt = try! BootPageTable(machine: machine)
                let huge = UInt64(OSTDPageTableTests.hugePageSize)
                BootPt.installHugeLeaf(bootPt, Vaddr(huge), Paddr(huge), level: 2, .kernel(.rw))
                bootPt.mapBasePage(Vaddr(huge + 0x1000), Paddr(0x1000), .kernel(.rw))
            }
            #expect(stderrContains(result, "mapping an already mapped huge page in the boot page table"))
        }

        @Test func dismissFreesEveryNode() throws {
            let machine = makeMachine()
            var bootPt = try BootPageTable(machine: machine)
            let kernelBase: UInt64 = 0xffff_8000_0000_0000
            var expectedNodes = Set<Paddr>()
            for va in [0x1000, 0x2000, 0x20_0000, 0x4000_0000, 0x80_0000_0000].map({ UInt64($0) })
                + [kernelBase, kernelBase + 0x1000, kernelBase + 0x20_0000] {
                bootPt.mapBasePage(Vaddr(va), Paddr(va & 0xff_ffff_f000), .kernel(.rw))
            }
            Self.visitNodes(bootPt) { node, _ in expectedNodes.insert(node.paddr(machine.context)) }
            #expect(Self.bootPtViolations(bootPt) == [])
            // 1 root; user half: 2 level-3 nodes, 3 level-2, 4 level-1; kernel half: 1 + 1 + 2.
            #expect(expectedNodes.count == 1 + 2 + 3 + 4 + 1 + 1 + 2)
            #expect(machine.outstandingFrames == expectedNodes.count)
            #expect(bootPt.rootPaddr == bootPt.root.paddr(machine.context))
            bootPt.dismiss()
            #expect(machine.outstandingFrames == 0)
        }

        // MARK: Helpers

        /// Puts a huge leaf at `level` into the boot table, allocating nodes above it, as a
        /// firmware table would have it.
        static func installHugeLeaf(
            _ bootPt: borrowing BootPageTable, _ va: Vaddr, _ pa: Paddr, level: PagingLevel, _ prop: PageProperty
        ) {
            let context = bootPt.context
            var node = bootPt.root
            var current = PagingConsts.nrLevels
            while current > level {
                let index = PagingConsts.pteIndex(va, current)
                let pte = node.read(index)
                if pte.isPresent {
                    node = NodeRef(pte.paddr(level: current), context)
                } else {
                    let child = context.allocNode(level: current - 1)!
                    child.unlock()
                    node.write(index, .pageTable(child.paddr(context)))
                    node.nrChildren += 1
                    node = child
                }
                current -= 1
            }
            node.write(PagingConsts.pteIndex(va, level), PageTableEntry(repr: .mapped(pa, prop), level: level))
            node.nrChildren += 1
        }

        /// Visits every node of the boot table with its level, in pre-order.
        static func visitNodes(_ bootPt: borrowing BootPageTable, _ visit: (NodeRef, PagingLevel) -> Void) {
            let context = bootPt.context
            func recurse(_ node: NodeRef, _ level: PagingLevel) {
                visit(node, level)
                guard level > 1 else { return }
                for i in 0..<PagingConsts.nrEntries {
                    let pte = node.read(i)
                    if pte.isPresent && !pte.isLeaf { recurse(NodeRef(pte.paddr(level: level), context), level - 1) }
                }
            }
            recurse(bootPt.root, PagingConsts.nrLevels)
        }

        /// What is wrong with the boot table's bookkeeping: counts and levels of its nodes.
        static func bootPtViolations(_ bootPt: borrowing BootPageTable) -> [String] {
            var problems: [String] = []
            visitNodes(bootPt) { node, level in
                let present = (0..<PagingConsts.nrEntries).count(where: { node.read($0).isPresent })
                if present != node.nrChildren {
                    problems.append("node at level \(level): nrChildren \(node.nrChildren), \(present) present")
                }
                if node.level != level { problems.append("node has level \(node.level), expected \(level)") }
                if node.isLocked { problems.append("node at level \(level) is locked") }
            }
            return problems
        }
    }
}

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

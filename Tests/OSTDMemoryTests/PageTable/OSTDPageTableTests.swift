// The 33 page-table ktests of OSTD (`ostd/src/mm/page_table/test.rs`), ported one for one, plus
// tests of 1 GiB leaves and of the boot page table beyond OSTD's.
//
// The suites mirror OSTD's modules. OSTD's `TestPtConfig` (all items untracked, leaves up to 1 GiB)
// becomes `UserPtConfig` with `MappedItem(untracked:level:property:)`: every configuration here
// allows 1 GiB leaves. Should-panic tests are exit tests that check the panic message.
//
// This file holds the suite, its helpers (OSTD's `test_utils`) and the test_utils and
// create_page_table modules; the other modules are in `OSTDPageTableTests+<Concern>.swift`.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

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

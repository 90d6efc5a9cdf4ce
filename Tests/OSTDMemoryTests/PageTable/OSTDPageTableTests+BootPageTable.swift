// OSTD's boot_pt ktests, plus tests of the boot page table beyond OSTD's: mapping and protecting
// base pages (and the panics when one is already mapped or not mapped), splitting huge leaves a
// firmware table left, and `dismiss` freeing every node it allocated.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

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
                    let child = context.allocNode(level: current - 1)!   // born locked, as boot nodes stay
                    // SAFETY: the boot table holds the locks of all its nodes.
                    unsafe node.withHeld { held in
                        held.write(index, .pageTable(child.paddr(context)))
                        held.countChildren(+1)
                    }
                    node = child
                }
                current -= 1
            }
            // SAFETY: as above.
            unsafe node.withHeld { held in
                held.write(PagingConsts.pteIndex(va, level), PageTableEntry(repr: .mapped(pa, prop), level: level))
                held.countChildren(+1)
            }
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
                // The boot table holds every node's lock from allocation to freeing.
                if !node.isLocked { problems.append("node at level \(level) is not locked") }
            }
            return problems
        }
    }
}

// Every `CursorView` spec can fail: on hand-made views, each spec's result differs from the
// "after" a plausible bug would leave (a protect that skipped the last page, a map at the wrong
// physical address, a split that lost a leaf's property, a take that removed the wrong leaf, ...),
// and each predicate rejects it.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

extension CursorViewTests {
    @Suite struct Mutants {
        func leaf(_ va: Int, _ pa: Int, level: PagingLevel = 1, _ flags: PageFlags = .rw) -> Mapping {
            let size = PagingConsts.pageSize(level)
            return Mapping(va: Vaddr(UInt64(va))..<Vaddr(UInt64(va + size)), pa: Paddr(UInt64(pa))..<Paddr(UInt64(pa + size)),
                           level: level, property: .user(flags), isTracked: true)
        }

        /// A 2 MiB leaf at 2 MiB and two 4 KiB leaves at 8 MiB, the cursor at `at`.
        func sample(at: Int) -> CursorView {
            CursorView(curVa: Vaddr(UInt64(at)), mappings: [leaf(cvPage2M, 0x60_0000, level: 2), leaf(8 * cvPage2M / 2, 0x9000),
                                                            leaf(8 * cvPage2M / 2 + cvPage4K, 0xa000)])
        }

        @Test func queriesAndInv() {
            let view = sample(at: cvPage2M + 5 * cvPage4K)
            #expect(view.present() && view.queryMapping() == leaf(cvPage2M, 0x60_0000, level: 2))
            #expect(!sample(at: 0).present() && sample(at: 0).queryMapping() == nil)
            #expect(view.querySpec(level: 4).range == Vaddr(UInt64(cvPage2M))..<Vaddr(UInt64(2 * cvPage2M)))
            #expect(sample(at: 0).querySpec(level: 4).range == Vaddr(0)..<Vaddr(UInt64(cvPage2M)))   // no node below
            #expect(sample(at: 4 * cvPage2M + 2 * cvPage4K).querySpec(level: 4).range.lowerBound == Vaddr(UInt64(4 * cvPage2M + 2 * cvPage4K)))
            #expect(view.curSlotRange(cvPage2M) == Vaddr(UInt64(cvPage2M))..<Vaddr(UInt64(2 * cvPage2M)))
            #expect(sample(at: cvPage2M).alignUpSpec(cvPage2M) == Vaddr(UInt64(2 * cvPage2M)))   // advances when aligned
            #expect(view.inv(UserPtConfig.self))
            var overlapping = view
            overlapping.mappings.insert(leaf(cvPage2M + cvPage4K, 0), at: 1)
            #expect(!overlapping.inv(UserPtConfig.self))
            var malformed = view
            malformed.mappings[0].pa = Paddr(0x1000)..<Paddr(0x1000 + UInt64(cvPage2M))
            #expect(!malformed.inv(UserPtConfig.self))
            #expect(!view.inv(KernelPtConfig.self))   // outside the kernel's range
        }

        @Test func aSplitThatLosesAPropertyOrAPieceIsRejected() {
            let view = sample(at: cvPage2M + 5 * cvPage4K)
            let split = view.splitIfMappedHugeSpec(cvPage4K)
            #expect(split.mappings.count == 512 + 2)
            #expect(split == view.splitWhileHuge(cvPage4K))
            #expect(split.mappings[5] == CursorView.splitIndex(leaf(cvPage2M, 0x60_0000, level: 2), cvPage4K, 5))
            var lossy = split
            lossy.mappings[7].property = .user(.r)
            #expect(lossy != split)
            var short = split
            short.mappings.remove(at: 100)
            #expect(short != split)
            #expect(view.split(at: Vaddr(UInt64(cvPage2M + 5 * cvPage4K))) == split)
            #expect(view.split(at: Vaddr(UInt64(cvPage2M))) == view)   // a boundary already
        }

        @Test func aMapAtTheWrongAddressOrPropertyIsRejected() {
            let view = sample(at: 3 * cvPage2M)
            let mapped = view.mapSpec(pa: Paddr(0x40_0000), level: 2, property: .user(.rw))
            #expect(mapped.curVa == Vaddr(UInt64(4 * cvPage2M)))
            #expect(mapped.mappings.count == 4)
            var wrongPa = mapped
            wrongPa.mappings[1].pa = Paddr(0x60_0000)..<Paddr(0x80_0000)
            #expect(wrongPa != mapped)
            var wrongProperty = mapped
            wrongProperty.mappings[1].property = .user(.r)
            #expect(wrongProperty != mapped)
            var stuck = mapped
            stuck.curVa = view.curVa
            #expect(stuck != mapped)
            #expect(view.canMapSpec(level: 2) && !sample(at: cvPage2M).canMapSpec(level: 1))
            #expect(sample(at: 4 * cvPage2M).removeSubtree(cvPage2M) == [leaf(cvPage2M, 0x60_0000, level: 2)])
        }

        @Test func unmapSpecRejectsWhatAnUnmapMustNotLeave() {
            let view = sample(at: cvPage2M + 510 * cvPage4K)   // two pages of the 2 MiB leaf and on
            let len = (4 * cvPage2M + cvPage4K) - (cvPage2M + 510 * cvPage4K)   // to the second 4 KiB leaf
            let exact = view.unmapResult(len)
            #expect(view.unmapSpec(len: len, new: exact))
            #expect(exact.mappings.count == 510 + 1)   // the pieces before the range, the leaf after it
            let inside = CursorView(curVa: exact.curVa, mappings: exact.mappings + [leaf(3 * cvPage2M, 0x1000)])
            #expect(!view.unmapSpec(len: len, new: inside))                                // a new leaf
            var moved = exact
            moved.mappings[3].pa = Paddr(0x1000)..<Paddr(0x2000)
            #expect(!view.unmapSpec(len: len, new: moved))                                 // a piece's address
            var reprotected = exact
            reprotected.mappings[3].property = .user(.r)
            #expect(!view.unmapSpec(len: len, new: reprotected))                           // a piece's property
            var short = exact
            short.curVa = view.curVa
            #expect(!view.unmapSpec(len: len, new: short))                                 // the cursor
            let small = sample(at: 8 * cvPage2M / 2)
            let removedOutside = CursorView(curVa: small.curVa + cvPage4K, mappings: [leaf(cvPage2M, 0x60_0000, level: 2)])
            #expect(!small.unmapSpec(len: cvPage4K, new: removedOutside))                       // a leaf outside
            let keptInside = CursorView(curVa: small.curVa + cvPage4K, mappings: small.mappings)
            #expect(!small.unmapSpec(len: cvPage4K, new: keptInside))                           // a leaf inside
            #expect(small.unmapResult(cvPage4K) != keptInside)
        }

        @Test func takeNextSpecRejectsTheWrongLeafOrCount() {
            let view = sample(at: 0)
            let taken = view.takeNextSpec(4 * cvPage2M + 2 * cvPage4K, level: 4, guardLevel: 4)
            #expect(taken.taken == .mapped(leaf(cvPage2M, 0x60_0000, level: 2)))
            #expect(taken.view.curVa == Vaddr(UInt64(2 * cvPage2M)))
            let wrongLeaf = CursorView(curVa: Vaddr(UInt64(2 * cvPage2M)), mappings: [leaf(cvPage2M, 0x60_0000, level: 2), leaf(4 * cvPage2M + cvPage4K, 0xa000)])
            #expect(taken.view != wrongLeaf)
            let stray = sample(at: 4 * cvPage2M).takeNextSpec(cvPage2M, level: 2, guardLevel: 4)
            #expect(stray.taken == .strayPageTable(va: Vaddr(UInt64(4 * cvPage2M))..<Vaddr(UInt64(5 * cvPage2M)), numFrames: 2))
            #expect(stray.taken != .strayPageTable(va: Vaddr(UInt64(4 * cvPage2M))..<Vaddr(UInt64(5 * cvPage2M)), numFrames: 1))
            let nothing = sample(at: 2 * cvPage2M).takeNextSpec(cvPage2M, level: 2, guardLevel: 4)
            #expect(nothing.taken == nil && nothing.view.curVa == Vaddr(UInt64(3 * cvPage2M)))
        }

        @Test func findNextAndJumpRejectTheWrongPosition() {
            let inside = sample(at: cvPage2M + 3 * cvPage4K).findNextSpec(cvPage4K)
            #expect(inside.found == Vaddr(UInt64(cvPage2M + 3 * cvPage4K)))   // covered from before: vostd would miss it
            let next = sample(at: 2 * cvPage2M).findNextSpec(3 * cvPage2M)
            #expect(next.found == Vaddr(UInt64(4 * cvPage2M)) && next.view.curVa == Vaddr(UInt64(4 * cvPage2M)))
            #expect(next.view.curVa != Vaddr(UInt64(4 * cvPage2M + cvPage4K)))   // not at the leaf's end, as vostd says
            let none = sample(at: 2 * cvPage2M).findNextSpec(cvPage2M)
            #expect(none.found == nil && none.view.curVa == Vaddr(UInt64(3 * cvPage2M)))
            let barrier = Vaddr(0)..<Vaddr(UInt64(8 * cvPage2M))
            #expect(sample(at: 0).jumpSpec(Vaddr(0x3000), barrier: barrier)?.curVa == Vaddr(0x3000))
            #expect(sample(at: 0).jumpSpec(barrier.upperBound, barrier: barrier) == nil)
        }

        @Test func protectSpecRejectsASkippedOrSpilledPage() {
            let readOnly: (PageProperty) -> PageProperty = { var p = $0; p.flags.remove(.w); return p }
            var view = sample(at: 4 * cvPage2M)
            let end = Vaddr(UInt64(4 * cvPage2M + 2 * cvPage4K))
            var protected: [Range<Vaddr>] = []
            while true {
                let step = view.protectSpec(end - view.curVa, readOnly)
                view = step.view
                guard let range = step.protected else { break }
                protected.append(range)
            }
            #expect(protected.count == 2)
            #expect(view.mappings[1].property == .user(.r) && view.mappings[2].property == .user(.r))
            let once = sample(at: 4 * cvPage2M).protectSpec(2 * cvPage4K, readOnly)
            let skippedLast = sample(at: 4 * cvPage2M)   // nothing protected
            #expect(once.view != skippedLast)
            let huge = sample(at: cvPage2M + 2 * cvPage4K).protectSpec(cvPage4K, readOnly)
            #expect(huge.protected == Vaddr(UInt64(cvPage2M + 2 * cvPage4K))..<Vaddr(UInt64(cvPage2M + 3 * cvPage4K)))
            #expect(huge.view.mappings.count == 512 + 2)
            #expect(huge.view.mappings[2].property == .user(.r) && huge.view.mappings[3].property == .user(.rw))
            var spilled = huge.view
            spilled.mappings[3].property = .user(.r)
            #expect(spilled != huge.view)
        }
    }
}

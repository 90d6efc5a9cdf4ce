// The spec functions of address-space operations on views (`ViewTransitions`), on hand-made
// views: each accepts what its operation may do (a split that keeps every translation included)
// and reports the mutants the audit exists to catch — a protect that skips its last page, an
// unmap that removes too much, a map with a hole or the wrong property, a changed frame.

@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec
import Testing

struct ViewTransitionTests {
    func page(_ va: UInt64, _ pa: UInt64, _ flags: PageFlags = .rw, level: PagingLevel = 1) -> Mapping {
        let size = UInt64(PagingConsts.pageSize(level))
        return Mapping(va: Vaddr(va)..<Vaddr(va + size), pa: Paddr(pa)..<Paddr(pa + size), level: level,
                       property: .user(flags), isTracked: true)
    }

    func view(_ mappings: Mapping...) -> PageTableView { PageTableView(mappings: mappings) }

    @Test func unmapRemovesExactlyItsRange() {
        let before = view(page(0x1000, 0x9000), page(0x2000, 0xa000), page(0x3000, 0xb000))
        let range = Vaddr(0x2000)..<Vaddr(0x3000)
        #expect(ViewTransitions.unmapped(range, before: before, after: view(page(0x1000, 0x9000), page(0x3000, 0xb000))).isEmpty)
        #expect(!ViewTransitions.unmapped(range, before: before, after: before).isEmpty)
        #expect(!ViewTransitions.unmapped(range, before: before, after: view(page(0x1000, 0x9000))).isEmpty)
    }

    @Test func protectChangesEveryPageOfItsRangeAndNothingElse() {
        let before = view(page(0x1000, 0x9000), page(0x2000, 0xa000), page(0x3000, 0xb000))
        let range = Vaddr(0x1000)..<Vaddr(0x3000)
        let readOnly: (PageProperty) -> PageProperty = { var p = $0; p.flags.remove(.w); return p }
        let right = view(page(0x1000, 0x9000, .r), page(0x2000, 0xa000, .r), page(0x3000, 0xb000))
        #expect(ViewTransitions.protected(range, before: before, after: right, readOnly).isEmpty)
        // The mutant "protectNext skips the last page".
        let skipsLast = view(page(0x1000, 0x9000, .r), page(0x2000, 0xa000), page(0x3000, 0xb000))
        #expect(ViewTransitions.protected(range, before: before, after: skipsLast, readOnly)
                == ["at 0x2000: expected 0xa000 r-- wb u (level 1), found 0xa000 rw- wb u (level 1)"])
        let spills = view(page(0x1000, 0x9000, .r), page(0x2000, 0xa000, .r), page(0x3000, 0xb000, .r))
        #expect(!ViewTransitions.protected(range, before: before, after: spills, readOnly).isEmpty)
    }

    @Test func aSplitKeepsEveryTranslation() {
        let huge = view(page(0x20_0000, 0x40_0000, level: 2))
        let split = PageTableView(mappings: (0..<512).map { page(0x20_0000 + UInt64($0) * 0x1000, 0x40_0000 + UInt64($0) * 0x1000) })
        #expect(ViewTransitions.unchanged(before: huge, after: split).isEmpty)
        // A split that lost a leaf's property (another mutant).
        var lossy = split.mappings
        lossy[7].property = .user(.r)
        #expect(!ViewTransitions.unchanged(before: huge, after: PageTableView(mappings: lossy)).isEmpty)
        // A map that wrote the wrong physical address.
        var shifted = split.mappings
        shifted[9].pa = Paddr(0x80_0000)..<Paddr(0x80_1000)
        #expect(!ViewTransitions.unchanged(before: huge, after: PageTableView(mappings: shifted)).isEmpty)
    }

    @Test func mapFillsItsRangeWithTheRequestedLeaves() {
        let before = view(page(0x1000, 0x9000))
        let range = Vaddr(0x2000)..<Vaddr(0x4000)
        let right = view(page(0x1000, 0x9000), page(0x2000, 0x5000), page(0x3000, 0x7000))
        #expect(ViewTransitions.mapped(range, property: .user(.rw), level: 1, before: before, after: right).isEmpty)
        let hole = view(page(0x1000, 0x9000), page(0x2000, 0x5000))
        #expect(!ViewTransitions.mapped(range, property: .user(.rw), level: 1, before: before, after: hole).isEmpty)
        let wrongProperty = view(page(0x1000, 0x9000), page(0x2000, 0x5000, .r), page(0x3000, 0x7000))
        #expect(!ViewTransitions.mapped(range, property: .user(.rw), level: 1, before: before, after: wrongProperty).isEmpty)
        let clobbers = view(page(0x1000, 0x6000), page(0x2000, 0x5000), page(0x3000, 0x7000))
        #expect(!ViewTransitions.mapped(range, property: .user(.rw), level: 1, before: before, after: clobbers).isEmpty)
    }
}

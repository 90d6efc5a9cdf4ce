// The seeds' `MemView` and `FrameContents` (OSTDSpec, MemView*.swift, FrameContents.swift): each
// predicate holding on a view computed from a live space (pages mapped, bytes written through a
// writer) and failing on a concrete bad one; `addr_transl` against the page table; the corrected
// `split` / `join` round trip (`lemma_split_join_identity`) and the seed's `split` failing it.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost

/// Writes `bytes` at `va` through a writer of `space`.
func writeThroughWriter(_ space: VmSpace, _ va: Vaddr, _ bytes: [UInt8]) throws {
    try space.withWriter(at: va, count: bytes.count) { (writer: inout VmWriter<Fallible>) throws(OSTDError) in
        for byte in bytes { try writer.writeVal(byte) }
    }
}

/// A 4 KiB user mapping `va ..< va + 4K` to `pa`.
func leaf(_ va: UInt64, _ pa: UInt64) -> Mapping {
    Mapping(va: Vaddr(va)..<Vaddr(va + 0x1000), pa: Paddr(pa)..<Paddr(pa + 0x1000), level: 1,
            property: .user(.rw), isTracked: true)
}

/// A view of `mappings` whose frames hold `fill` in every byte.
func filledView(_ mappings: [Mapping], fill: UInt8 = 0xaa) -> MemView {
    var memory: [Paddr: FrameContents] = [:]
    for m in mappings {
        memory[m.pa.lowerBound] = FrameContents(contents: FrameBytes(size: 0x1000, offset: 0, bytes: Array(repeating: fill, count: 0x1000)),
                                                size: 0x1000, range: m.pa)
    }
    return MemView(mappings: Set(mappings), memory: memory)
}

@Suite struct MemViewTests {
    @Test func readReturnsTheBytesWrittenThroughAWriter() throws {
        let machine = makeMachine()
        let space = try specSpace(machine, pages: 2)
        let bytes: [UInt8] = [1, 2, 3, 4, 5, 6]
        try writeThroughWriter(space, base + 0xffd, bytes)     // across the page boundary
        let view = MemView(space: space, range: pages(base, 2))
        #expect(view.readBytes(base + 0xffd, bytes.count) == bytes)
        #expect(view.read(base + 0xffd) == .initialized(1))
        // Every byte of the range is initialised (the run time zeroes frames), none outside it.
        #expect(view.read(base) == .initialized(0))
        #expect(view.read(base + 2 * pageSize) == nil)
        #expect(view.readBytes(base + (2 * pageSize - 1), 2) == nil)
    }

    @Test func addrTranslAgreesWithThePageTable() throws {
        let machine = makeMachine()
        let space = try specSpace(machine, pages: 3)
        let table = space.pageTable.view()
        let view = MemView(space: space, range: pages(base, 3))
        #expect(view.mappings == Set(table.mappings))
        for va in [base, base + 1, base + 0x1fff, base + 0x2abc] {
            let m = try #require(table.mapping(covering: va))
            let (pa, offset) = try #require(view.addrTransl(va))
            #expect(pa == m.pa.lowerBound && offset == va - m.va.lowerBound)
            #expect(view.isMapped(va, m.pa.lowerBound))
            #expect(!view.isMapped(va, m.pa.lowerBound + 0x1000))
        }
        #expect(view.addrTransl(base + 3 * pageSize) == nil)
        #expect(!view.isMapped(base + 3 * pageSize, Paddr(0)))
    }

    @Test func aViewHoldsOnlyTheBytesOfItsRange() throws {
        let machine = makeMachine()
        let space = try specSpace(machine, pages: 1)
        try writeThroughWriter(space, base + 0x10, [9, 8])
        let view = MemView(space: space, range: (base + 0x10)..<(base + 0x20))
        let frame = try #require(view.memory.values.first)
        #expect(view.memory.count == 1 && frame.size == pageSize && frame.contents.count == pageSize)
        #expect(frame.contents.window == 0x10..<0x20)
        #expect(view.read(base + 0x10) == .initialized(9) && view.read(base + 0x11) == .initialized(8))
        #expect(view.read(base + 0x20) == .uninit)   // in the frame, outside the range: not read
        #expect(frame.inv())
    }

    @Test func writeAndWriteBytesChangeOnlyContents() throws {
        let machine = makeMachine()
        let space = try specSpace(machine, pages: 2)
        var view = MemView(space: space, range: pages(base, 2))
        let mappings = view.mappings
        view.write(base + 5, 0x42)
        view.writeBytes(base + 0xfff, [7, 7, 7])
        #expect(view.mappings == mappings)
        #expect(view.read(base + 5) == .initialized(0x42))
        #expect(view.readBytes(base + 0xfff, 3) == [7, 7, 7])
        #expect(view.eqAt(base + 0xfff, base + 0x1000) && !view.eqAt(base + 5, base + 6))
    }

    @Test func frameContentsInvFailsOnAMalformedFrame() {
        let good = FrameContents(base: Paddr(0x5000), size: 0x1000)
        #expect(good.inv())
        var wrongSize = good
        wrongSize.size = 0x2000
        #expect(!wrongSize.inv())
        var misaligned = good
        misaligned.range = Paddr(0x5800)..<Paddr(0x6800)
        #expect(!misaligned.inv())
        var shortContents = good
        shortContents.contents = FrameBytes(size: 0x800)
        #expect(!shortContents.inv())
        #expect(!FrameContents(base: Paddr(0), size: 0).inv())
        #expect(!good.inv(maxPaddr: Paddr(0x6000)))   // the seed's `range.end < MAX_PADDR`
    }

    @Test func mappingsAreDisjointFailsOnOverlappingMappings() throws {
        let machine = makeMachine()
        let space = try specSpace(machine, pages: 2)
        var view = MemView(space: space, range: pages(base, 2))
        #expect(view.mappingsAreDisjoint())
        let first = try #require(view.mapping(covering: base))
        view.mappings.insert(Mapping(va: first.va, pa: first.pa.lowerBound + 0x1000 ..< first.pa.upperBound + 0x1000,
                                     level: 1, property: first.property, isTracked: true))
        #expect(!view.mappingsAreDisjoint())
    }

    @Test func translatesAllFailsOnAHole() {
        let view = filledView([leaf(0x1000, 0x8000), leaf(0x3000, 0x9000)])
        #expect(view.translatesAll(Vaddr(0x1000)..<Vaddr(0x2000)))
        #expect(!view.translatesAll(Vaddr(0x1000)..<Vaddr(0x3001)))
    }

    @Test func borrowAtKeepsTheMappingsItsRangeMeetsAndTheirFrames() {
        let view = filledView([leaf(0x1000, 0x8000), leaf(0x2000, 0x9000), leaf(0x3000, 0xa000)])
        let borrowed = view.borrowAt(Vaddr(0x1800), 0x1000)
        #expect(borrowed.mappings == [leaf(0x1000, 0x8000), leaf(0x2000, 0x9000)])
        #expect(Set(borrowed.memory.keys) == [Paddr(0x8000), Paddr(0x9000)])
        #expect(borrowed.memory[Paddr(0x8000)] == view.memory[Paddr(0x8000)])   // whole frames, shared
        #expect(borrowed.read(Vaddr(0x3000)) == nil)
    }

    @Test func splitPartitionsBytesAndJoinRestoresTheView() throws {
        let machine = makeMachine()
        let space = try specSpace(machine, pages: 3)
        try writeThroughWriter(space, base + 0x17fe, [1, 2, 3, 4])
        let view = MemView(space: space, range: pages(base, 3))
        let (left, right) = view.split(base + 0x1800, 0x1000)
        let page = (0..<3).map { view.mapping(covering: base + $0 * pageSize)! }
        #expect(left.mappings == [page[1], page[2]])
        #expect(right.mappings == Set(page))   // the straddling pages on both sides
        // Each byte is held by one half.
        #expect(left.readBytes(base + 0x1800, 2) == [3, 4] && left.read(base + 0x17ff) == .uninit)
        #expect(right.readBytes(base + 0x17fe, 2) == [1, 2] && right.read(base + 0x1800) == .uninit)
        #expect(right.read(base + 0x2800) == .initialized(0) && left.read(base + 0x2800) == .uninit)
        // lemma_split_join_identity, at aligned, unaligned, empty and whole splits.
        var joined = left
        joined.join(right)
        #expect(joined == view)
        for (va, len) in [(base + 0x1800, 0x1000), (base + 0x1000, 0x1000), (base + 5, 0), (base, 3 * pageSize), (base + 0x2fff, 1)] {
            #expect(view.splitJoinIdentity(va, len), "split at \(va) for \(len)")
        }
    }

    @Test func splitJoinIdentityFailsOnAnUnmappedFrameAndForTheSeedSplit() {
        let view = filledView([leaf(0x1000, 0x8000), leaf(0x2000, 0x9000)])
        // A frame no mapping maps is in neither half (the lemma's precondition).
        var orphan = view
        orphan.memory[Paddr(0xf000)] = FrameContents(base: Paddr(0xf000), size: 0x1000)
        #expect(view.splitJoinIdentity(Vaddr(0x1800), 0x100))
        #expect(!orphan.splitJoinIdentity(Vaddr(0x1800), 0x100))
        // The seed's split: the straddling page is in both halves with its whole frame, and the
        // page below `vaddr` in neither, so joining does not give the view back.
        let (left, right) = view.seedSplit(Vaddr(0x2000), 0x800)
        #expect(left.mappings == [leaf(0x2000, 0x9000)] && right.mappings == [leaf(0x2000, 0x9000)])
        #expect(left.read(Vaddr(0x2900)) == .initialized(0xaa) && right.read(Vaddr(0x2100)) == .initialized(0xaa))
        var joined = left
        joined.join(right)
        #expect(joined != view && joined.addrTransl(Vaddr(0x1000)) == nil)
    }
}

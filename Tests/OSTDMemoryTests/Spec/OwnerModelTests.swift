// The seeds' `VmIoOwner` and `VmSpaceOwner` with views (OSTDSpec, VmIoOwnerModel.swift,
// VmSpaceOwnerModel*.swift): every predicate holding on the model of a live space (readers and
// writers created through the core, bytes written through a writer) and failing on a concrete bad
// state; the literal seed versions failing where docs/SPEC.md says they do.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost

/// An owner over `range` (offsets from `base`) holding `view`.
func modelOwner(_ id: UInt64, _ range: Range<Int>, _ view: VmIoMemViewModel?, fallible: Bool = false) -> VmIoOwnerModel {
    VmIoOwnerModel(id: id, range: (base + range.lowerBound)..<(base + range.upperBound), isFallible: fallible,
                   isKernel: false, memView: view)
}

@Suite struct OwnerModelTests {
    // MARK: From a live space

    @Test func theModelOfALiveSpaceSatisfiesEveryPredicate() throws {
        let machine = makeMachine()
        let space = try specSpace(machine, pages: 2)
        try writeThroughWriter(space, base + 0x1000, [10, 20, 30])
        var writer = try space.createWriter(base, 0x800)
        let reader = try space.createReader(base + 0x1000, 0x800)
        let model = VmSpaceOwnerModel(space: space)
        #expect(model.active && model.writers.count == 1 && model.readers.count == 1)
        #expect(model.memViewWf(), "\(model.memViewWfViolations())")
        #expect(model.inv(), "\(model.invViolations())")
        #expect(model.vmSpaceInv())
        #expect(VmSpaceOwnerModel.memViewViolations(space: space).isEmpty)
        let w = model.writers[0], r = model.readers[0]
        #expect(w.hasWriteView() && w.canWrite() && !w.hasReadView() && w.inv() && w.seedInv())
        #expect(r.hasReadView() && r.canRead() && !r.canWrite() && r.inv())
        #expect(r.readViewInitialized() && r.mappedBytesInitialized())
        #expect(r.readViewOf()?.readBytes(base + 0x1000, 3) == [10, 20, 30])
        #expect(w.disjoint(r) && r.disjoint(w) && !w.overlaps(r))
        // The writer's bytes left the remaining view; the reader's stayed.
        let remaining = try #require(model.memView)
        #expect(remaining.read(base) == .uninit && remaining.read(base + 0x800) == .initialized(0))
        #expect(model.canCreateReader(base + 0x800, 0x800) && !model.canCreateReader(base + 0x700, 0x200))
        #expect(model.canCreateWriter(base + 0x800, 0x800) && !model.canCreateWriter(base + 0x1100, 1))
        // The literal seed: `mem_view_wf` rejects any writer (defect 1); so does `inv`.
        #expect(!model.seedMemViewWf() && !model.seedInv())
        space.disposeWriter(&writer)
        _ = consume writer
        _ = consume reader
    }

    @Test func aWriterAndAReaderInOnePageAreDisjointInBytes() throws {
        let machine = makeMachine()
        let space = try specSpace(machine, pages: 1)
        let writer = try space.createWriter(base, 0x800)
        let reader = try space.createReader(base + 0x800, 0x800)
        let model = VmSpaceOwnerModel(space: space)
        #expect(model.inv(), "\(model.invViolations())")
        #expect(VmSpaceOwnerModel.memViewViolations(space: space).isEmpty)
        // The seed's `disjoint` compares page-granular mapping sets (and closed ranges).
        #expect(!model.writers[0].seedDisjoint(model.readers[0]))
        #expect(!model.seedCanCreateWriter(base + 0x1000, 8) && model.canCreateWriter(base + 0x1000, 8))
        _ = consume writer
        _ = consume reader
    }

    @Test func theModelWithoutHandlesIsTheSeedsToo() throws {
        let machine = makeMachine()
        let space = try specSpace(machine, pages: 1)
        let model = VmSpaceOwnerModel(space: space)
        #expect(model.inv() && model.seedInv() && model.memViewWf() && model.seedMemViewWf())
        #expect(model.canCreateReader(base, 8) && model.seedCanCreateReader(base, 8) && model.seedCanCreateWriter(base, 8))
    }

    // MARK: VmIoOwner predicates on bad states

    @Test func ownerInvFailsWhereTheViewDoesNotTranslateTheRange() {
        let view = filledView([leaf(at(0), 0x8000)])
        #expect(modelOwner(1, 0..<0x1000, .readView(view)).inv())
        #expect(!modelOwner(1, 0..<0x1001, .readView(view)).inv())
        #expect(!modelOwner(1, 0..<0x1001, .readView(view), fallible: true).seedInv())
        #expect(modelOwner(1, 0..<0x1001, .readView(view), fallible: true).inv())   // a fallible handle faults
        var overlapping = view
        overlapping.mappings.insert(leaf(at(0), 0x9000))
        #expect(!modelOwner(1, 0..<0x1000, .writeView(overlapping)).inv())
        #expect(modelOwner(1, 0..<0x1000, nil).invWf())   // a `Range` cannot be reversed: inv_wf cannot fail
    }

    @Test func readViewInitializedFailsOnAnUninitialisedOrMissingByte() {
        var view = filledView([leaf(at(0), 0x8000)])
        #expect(modelOwner(1, 0..<0x1000, .readView(view)).readViewInitialized())
        #expect(!modelOwner(1, 0..<0x1000, .writeView(view)).readViewInitialized())   // not a read view
        #expect(!modelOwner(1, 0..<0x1001, .readView(view)).readViewInitialized())    // untranslated
        #expect(modelOwner(1, 0..<0x1001, .readView(view)).mappedBytesInitialized())
        view.memory[Paddr(0x8000)]!.contents[0x10] = .uninit
        #expect(!modelOwner(1, 0..<0x1000, .readView(view)).readViewInitialized())
        #expect(!modelOwner(1, 0..<0x1000, .readView(view)).mappedBytesInitialized())
        #expect(modelOwner(1, 0x11..<0x1000, .readView(view)).readViewInitialized())
        view.memory[Paddr(0x8000)] = nil
        #expect(!modelOwner(1, 0x11..<0x1000, .readView(view)).readViewInitialized())  // frame absent
    }

    @Test func viewKindPredicatesFailOnTheOtherKind() {
        let view = filledView([leaf(at(0), 0x8000)])
        let none = modelOwner(1, 0..<8, nil)
        #expect(!none.hasReadView() && !none.hasWriteView() && !none.canRead() && !none.canWrite() && none.readViewOf() == nil)
        #expect(modelOwner(1, 0..<8, .writeView(view)).readViewOf() == nil)
        #expect(modelOwner(1, 0..<8, .readView(view)).readViewOf() == view)
    }

    @Test func overlapAndDisjointFailWhereBytesOrWholeMappingsAreShared() {
        let a = modelOwner(1, 0..<16, nil)
        #expect(!a.overlapsWithRange((base + 16)..<(base + 32)) && a.seedOverlapsWithRange((base + 16)..<(base + 32)))
        #expect(!a.overlapsWithRange((base + 8)..<(base + 8)) && a.seedOverlapsWithRange((base + 8)..<(base + 8)))
        #expect(a.overlapsWithRange((base + 15)..<(base + 17)))
        #expect(!a.disjoint(modelOwner(2, 15..<17, nil)) && a.overlaps(modelOwner(2, 15..<17, nil)))
        // Byte-disjoint handles whose views share a mapping that one handle's range covers whole.
        let page = filledView([leaf(at(0), 0x8000)])
        let whole = modelOwner(3, 0..<0x1000, .writeView(page))
        let beyond = modelOwner(4, 0x1000..<0x1800, .readView(page))
        #expect(!whole.disjoint(beyond) && !whole.seedDisjoint(beyond))
        let half = modelOwner(5, 0..<0x800, .writeView(page))
        let otherHalf = modelOwner(6, 0x800..<0x1000, .readView(page))
        #expect(half.disjoint(otherHalf) && !half.seedDisjoint(otherHalf))
        #expect(half.paramsEq(modelOwner(9, 0..<0x800, nil)) && !half.paramsEq(otherHalf))
    }

    // MARK: VmSpaceOwner predicates on bad states

    /// A space owner with one writer on page 0 and one reader on page 1, built as the lifecycle does.
    func twoPageOwner() -> VmSpaceOwnerModel {
        let total = filledView([leaf(at(0), 0x8000), leaf(at(0x1000), 0x9000)])
        let (taken, rest) = total.split(base, 0x1000)
        return VmSpaceOwnerModel(active: true, readers: [modelOwner(2, 0x1000..<0x2000, .readView(rest.borrowAt(base + 0x1000, 0x1000)))],
                                 writers: [modelOwner(1, 0..<0x1000, .writeView(taken))], memView: rest, mvRange: total,
                                 sharedReader: false)
    }

    @Test func memViewWfFailsOnEachBrokenClause() {
        let good = twoPageOwner()
        #expect(good.memViewWf() && good.inv())
        var halfAbsent = good
        halfAbsent.memView = nil
        #expect(!halfAbsent.memViewWf() && !halfAbsent.seedMemViewWf())
        var keepsWriterBytes = good
        keepsWriterBytes.memView = good.mvRange   // the remaining view still holds the writer's page
        #expect(!keepsWriterBytes.memViewWf())
        var readerElsewhere = good
        readerElsewhere.readers[0].memView = .readView(filledView([leaf(at(0x1000), 0xa000)]))
        #expect(!readerElsewhere.memViewWf())
        var writerReads = good
        writerReads.writers[0].memView = .readView(good.writers[0].memView!.view)
        #expect(!writerReads.memViewWf())
        var extraMapping = good
        extraMapping.memView!.mappings.insert(leaf(at(0x5000), 0xb000))
        #expect(!extraMapping.memViewWf())
    }

    @Test func invFailsOnOverlapsItForbids() {
        let good = twoPageOwner()
        var twoWriters = good
        twoWriters.writers.append(modelOwner(3, 0x800..<0x900, nil))
        #expect(!twoWriters.inv() && twoWriters.invViolations().contains("writers 1 and 3 are not disjoint"))
        var readerOnWriter = good
        readerOnWriter.readers.append(modelOwner(4, 0x10..<0x20, .readView(good.mvRange!.borrowAt(base, 0x1000))))
        #expect(!readerOnWriter.inv())
        var twoReaders = good
        twoReaders.readers.append(modelOwner(5, 0x1800..<0x1900, .readView(good.memView!.borrowAt(base + 0x1800, 0x100))))
        #expect(!twoReaders.inv())
        twoReaders.sharedReader = true
        #expect(twoReaders.inv(), "\(twoReaders.invViolations())")
        var inactive = twoWriters
        inactive.active = false
        #expect(inactive.inv() && inactive.seedInv())   // `inv` says nothing about an inactive space
    }

    @Test func canCreateFailsBesideAnOverlappingHandle() {
        let good = twoPageOwner()
        #expect(!good.canCreateReader(base + 0xfff, 2) && !good.seedCanCreateReader(base + 0x1000, 8))
        #expect(good.canCreateReader(base + 0x1000, 8))   // beside the writer, over the reader
        #expect(!good.canCreateWriter(base + 0x1000, 8) && good.canCreateWriter(base + 0x2000, 8))
        #expect(!good.seedCanCreateWriter(base + 0x2000, 8))   // adjacency counts in the seed
    }

    // MARK: Defect 17

    @Test func memViewWfLooksAVirtualAddressUpAmongFrameKeys() {
        // 000:217-220, literally: where the writer translates `va`, R must not translate it and
        // `!remaining_view.memory.contains_key(va)` — a virtual address among frame base PAs.
        func seedWriterClause(_ w: MemView, _ r: MemView, _ va: Vaddr) -> Bool {
            w.addrTransl(va) == nil || (r.addrTransl(va) == nil && r.memory[Paddr(va.rawValue)] == nil)
        }
        let writerPage = leaf(at(0), 0x8000)
        // A fine state: R holds only an unrelated frame whose PA happens to equal the writer's VA.
        let unrelated = leaf(at(0x5000), at(0))
        let total = filledView([writerPage, unrelated])
        let (taken, rest) = total.split(base, 0x1000)
        let fine = VmSpaceOwnerModel(active: true, readers: [], writers: [modelOwner(1, 0..<0x1000, .writeView(taken))],
                                     memView: rest, mvRange: total, sharedReader: false)
        #expect(fine.memViewWf(), "\(fine.memViewWfViolations())")
        #expect(!seedWriterClause(taken, rest, base))   // rejected for an unrelated frame
        // A bad state: R keeps the writer's frame and bytes; the literal clause does not look there.
        var leaky = fine
        leaky.memView!.memory[Paddr(0x8000)] = total.memory[Paddr(0x8000)]
        #expect(!leaky.memViewWf())
        #expect(seedWriterClause(taken, leaky.memView!, base + 0xfff) == seedWriterClause(taken, rest, base + 0xfff))
    }
}

// The frame layer's audit (checks 19–24 and 32): each spec function of `FrameRefinement` fed a
// concrete bad state reports it and the matching good state passes; on a machine given a
// `SpecAuditor`, correct frame operations of every kind report nothing, the frame mutants are
// caught, and a frame freed while a TLB still caches it is caught when its last reference goes.

@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost
import Testing

/// A slot state for the spec functions' tests.
private func slot(_ refCount: UInt64, tag: FrameMetaTag = UntypedMeta.typeTag, inList: UInt64 = 0,
                  obligations: Int = 0) -> FrameSlotState {
    FrameSlotState(refCount: refCount, tag: tag, inList: inList, obligations: obligations)
}

private let unused = slot(MetaSlot.refCountUnused, tag: FrameMetaTag(word: 0))
private let frame = Paddr(0x40_0000)
private func notMapped(_: Paddr) -> Int { 0 }

@Suite struct FrameRefinementTests {
    @Test func fromUnusedMustTakeAnUnusedSlotToOneReference() {
        let good = FrameRefinement.fromUnusedSpec(frame, outcome: .done, before: [unused], after: [slot(1, obligations: 1)],
                                                  frameCount: 4096, unique: false)
        #expect(good.isEmpty)
        let wasInUse = FrameRefinement.fromUnusedSpec(frame, outcome: .done, before: [slot(1)], after: [slot(2, obligations: 1)],
                                                      frameCount: 4096, unique: false)
        #expect(wasInUse.contains { $0.contains("not UNUSED") })
        let stillListed = FrameRefinement.fromUnusedSpec(frame, outcome: .done, before: [unused],
                                                         after: [slot(1, inList: 3, obligations: 1)], frameCount: 4096, unique: false)
        #expect(stillListed.contains { $0.contains("free list") })
        let badAddress = FrameRefinement.fromUnusedSpec(frame + 8, outcome: .done, before: [unused], after: [slot(1, obligations: 1)],
                                                        frameCount: 4096, unique: false)
        #expect(!badAddress.isEmpty)
    }

    @Test func aRefusedFromUnusedChangesNothingAndRefusesOnlyFramesInUse() {
        let refusal = FrameRefinement.fromUnusedSpec(frame, outcome: .refused(.inUse(frame)), before: [slot(1)], after: [slot(1)],
                                                     frameCount: 4096, unique: false)
        #expect(refusal.isEmpty)
        let changed = FrameRefinement.fromUnusedSpec(frame, outcome: .refused(.inUse(frame)), before: [slot(1)], after: [slot(2)],
                                                     frameCount: 4096, unique: false)
        #expect(changed.contains { $0.contains("changed its slots") })
        let refusedUnused = FrameRefinement.fromUnusedSpec(frame, outcome: .refused(.inUse(frame)), before: [unused], after: [unused],
                                                           frameCount: 4096, unique: false)
        #expect(refusedUnused.contains { $0.contains("is unused, but from_unused refused it") })
    }

    @Test func uniqueFromUnusedEndsUnique() {
        let good = FrameRefinement.fromUnusedSpec(frame, outcome: .done, before: [unused],
                                                  after: [slot(MetaSlot.refCountUnique, obligations: 1)], frameCount: 4096, unique: true)
        #expect(good.isEmpty)
        let shared = FrameRefinement.fromUnusedSpec(frame, outcome: .done, before: [unused], after: [slot(1, obligations: 1)],
                                                    frameCount: 4096, unique: true)
        #expect(shared.contains { $0.contains("not UNIQUE") })
    }

    @Test func cloneAndFromInUseAddExactlyOneReference() {
        #expect(FrameRefinement.cloneSpec(before: [slot(2, obligations: 2)], after: [slot(3, obligations: 3)]).isEmpty)
        #expect(FrameRefinement.cloneSpec(before: [slot(2, obligations: 2)], after: [slot(2, obligations: 3)])
            .contains { $0.contains("not one more") })
        #expect(FrameRefinement.cloneSpec(before: [slot(2, obligations: 2)], after: [slot(3, obligations: 2)])
            .contains { $0.contains("obligations") })
        #expect(!FrameRefinement.cloneSpec(before: [unused], after: [slot(0)]).isEmpty)
        let refusedShared = FrameRefinement.fromInUseSpec(frame, outcome: .refused(.unused(frame)), before: [slot(1)],
                                                          after: [slot(1)], frameCount: 4096)
        #expect(refusedShared.contains { $0.contains("from_in_use refused it") })
        #expect(FrameRefinement.fromInUseSpec(frame, outcome: .refused(.unused(frame)), before: [unused], after: [unused],
                                              frameCount: 4096).isEmpty)
    }

    @Test func dropTakesOneReferenceAndNeverFreesAMappedFrame() {
        #expect(FrameRefinement.dropSpec(frame, before: [slot(2, obligations: 1)], after: [slot(1)], pathsInPt: notMapped,
                                         redeems: true).isEmpty)
        #expect(FrameRefinement.dropSpec(frame, before: [slot(1, obligations: 1)], after: [unused], pathsInPt: notMapped,
                                         redeems: true).isEmpty)
        #expect(FrameRefinement.dropSpec(frame, before: [slot(1, obligations: 1)], after: [unused], pathsInPt: { _ in 1 },
                                         redeems: true).contains { $0.contains("still map it") })
        #expect(FrameRefinement.dropSpec(frame, before: [slot(3, obligations: 1)], after: [slot(1)], pathsInPt: notMapped,
                                         redeems: true).contains { $0.contains("not one fewer") })
        #expect(FrameRefinement.dropSpec(frame, before: [slot(1, obligations: 1)], after: [slot(0)], pathsInPt: notMapped,
                                         redeems: true).contains { $0.contains("not UNUSED") })
        #expect(!FrameRefinement.dropSpec(frame, before: [unused], after: [unused], pathsInPt: notMapped, redeems: true).isEmpty)
    }

    @Test func aSegmentSplitsIntoExactlyItsTwoHalves() {
        let whole = frame..<(frame + 4 * pageSize)
        let middle = frame + 2 * pageSize
        #expect(FrameRefinement.segmentSplitSpec(whole, offset: 2 * pageSize, front: frame..<middle,
                                                 back: middle..<whole.upperBound).isEmpty)
        #expect(!FrameRefinement.segmentSplitSpec(whole, offset: 2 * pageSize, front: frame..<(middle + pageSize),
                                                  back: (middle + pageSize)..<whole.upperBound).isEmpty)
        #expect(!FrameRefinement.segmentSplitSpec(whole, offset: 4 * pageSize, front: whole, back: whole.upperBound..<whole.upperBound)
            .isEmpty)
    }

    @Test func aSegmentFromUnusedClaimsEveryFrame() {
        let range = frame..<(frame + 2 * pageSize)
        #expect(FrameRefinement.segmentFromUnusedSpec(range, outcome: .done, before: [unused, unused],
                                                      after: [slot(1, obligations: 1), slot(1, obligations: 1)],
                                                      frameCount: 4096).isEmpty)
        #expect(!FrameRefinement.segmentFromUnusedSpec(range, outcome: .done, before: [unused, slot(1)],
                                                       after: [slot(1, obligations: 1), slot(2, obligations: 1)],
                                                       frameCount: 4096).isEmpty)
    }

    @Test func uniqueConversionSucceedsExactlyOnOneReference() {
        let unique = slot(MetaSlot.refCountUnique, obligations: 1)
        #expect(FrameRefinement.uniqueTryFromSpec(frame, outcome: .done, before: [slot(1, obligations: 1)], after: [unique]).isEmpty)
        #expect(!FrameRefinement.uniqueTryFromSpec(frame, outcome: .done, before: [slot(2, obligations: 1)], after: [unique]).isEmpty)
        #expect(!FrameRefinement.uniqueTryFromSpec(frame, outcome: .rejected, before: [slot(1)], after: [slot(1)]).isEmpty)
        #expect(FrameRefinement.uniqueDropSpec(frame, before: [unique], after: [unused], pathsInPt: notMapped).isEmpty)
        #expect(FrameRefinement.uniqueDropSpec(frame, before: [slot(1, obligations: 1)], after: [unused], pathsInPt: notMapped)
            .contains { $0.contains("a unique handle") })
    }

    @Test func aFreedFrameMustNotBeCachedInAnyTlb() {
        let cached = TlbEntryInfo(va: Vaddr(0x1000), level: 1, paddr: frame, user: true, writable: true)
        let elsewhere = TlbEntryInfo(va: Vaddr(0x2000), level: 1, paddr: frame + pageSize, user: true, writable: true)
        let freed = FrameRefinement.flushedBeforeFree(frame..<(frame + pageSize), before: [slot(1)], after: [unused],
                                                      cachedTranslations: { [(1, cached), (0, elsewhere)] })
        #expect(freed == ["cpu 1 still caches \(Vaddr(0x1000)) -> \(frame) when the frame's last reference goes"])
        #expect(FrameRefinement.flushedBeforeFree(frame..<(frame + pageSize), before: [slot(2)], after: [slot(1)],
                                                  cachedTranslations: { [(1, cached)] }).isEmpty)
        let huge = TlbEntryInfo(va: Vaddr(0x4000_0000), level: 3, paddr: Paddr(0), user: true, writable: true)
        #expect(!FrameRefinement.flushedBeforeFree(frame..<(frame + pageSize), before: [slot(1)], after: [unused],
                                                   cachedTranslations: { [(0, huge)] }).isEmpty)
    }
}

@Suite struct FrameAuditTests {
    @Test func correctFrameOperationsOfEveryKindViolateNothing() throws {
        let audited = try AuditedSpace()
        let machine = audited.machine
        do {
            let first = try FrameAllocOptions().allocFrame(in: machine)
            let second = first.clone()
            let third = try AnyFrame.fromInUse(first.paddr, in: machine)
            #expect(throws: GetFrameError.self) { _ = try Frame.fromUnused(first.paddr, meta: UntypedMeta(), in: machine) }
            _ = consume second
            _ = consume third
            let unique = UniqueFrame<UntypedMeta>.tryFrom(first).get()
            #expect(unique?.referenceCount == MetaSlot.refCountUnique)
        }
        do {
            var segment = try FrameAllocOptions().allocSegment(4, in: machine)
            let slice = segment.slice(pageSize..<(3 * pageSize))
            let back = segment.split(at: 2 * pageSize)
            _ = consume slice
            _ = consume back
        }
        try audited.mapPages(at: base, 2)
        var cursor = try audited.space.cursorMut(pages(base, 2))
        cursor.unmap(2 * pageSize)
        _ = consume cursor
        #expect(audited.auditor.violations == [])
        #expect(audited.violatedPredicates().isEmpty)
    }

    @Test func aCloneThatDoesNotCountIsCaught() throws {
        let audited = try AuditedSpace(mutants: .cloneDoesNotCount)
        let original = try FrameAllocOptions().allocFrame(in: audited.machine)
        _ = original.clone().intoRaw()   // the uncounted handle must not be dropped: a double free
        #expect(Set(audited.auditor.violations.map(\.predicate)) == ["cloneSpec"])
    }

    @Test func aSegmentSplitInTheWrongPlaceIsCaught() throws {
        let audited = try AuditedSpace(mutants: .segmentSplitMisplacesMiddle)
        var segment = try FrameAllocOptions().allocSegment(4, in: audited.machine)
        let back = segment.split(at: 2 * pageSize)
        #expect(back.count == 1)
        #expect(Set(audited.auditor.violations.map(\.predicate)) == ["segmentSpec"])
    }

    @Test func aFrameFreedWhileATlbCachesItIsCaughtAtItsLastDrop() throws {
        let audited = try AuditedSpace(mutants: .flusherDoesNotFlush)
        try audited.unmapACachedPage(at: base)
        let freed = audited.auditor.violations.filter { $0.predicate == "flushedBeforeFree" }
        #expect(freed.count == 1)
        #expect(freed.first?.operation?.hasPrefix("drop ") == true, "\(freed)")   // the flusher keeps a one-frame segment
    }

    @Test func theMappedFrameIndexSeesWhatTheTablesMap() throws {
        let audited = try AuditedSpace()
        try audited.mapPages(at: base, 1)
        try audited.mapHuge(at: Vaddr(0x60_0000))
        let small = try #require(audited.space.pageTable.translate(base)).leaf.paddr
        let huge = try #require(audited.space.pageTable.translate(Vaddr(0x60_0000))).leaf.paddr
        #expect(audited.auditor.pathsInPt(small) == 1)
        #expect(audited.auditor.pathsInPt(huge + 17 * pageSize) == 1)
        #expect(audited.auditor.pathsInPt(huge + 512 * pageSize) == 0)
        var cursor = try audited.space.cursorMut(pages(base, 1))
        cursor.unmap(pageSize)
        _ = consume cursor
        #expect(audited.auditor.pathsInPt(small) == 0)
    }
}

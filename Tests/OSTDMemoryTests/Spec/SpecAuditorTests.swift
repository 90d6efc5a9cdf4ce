// The audit switch: a space given a `SpecAuditor` checks every cursor operation and ownership
// change against the specification. A run of correct operations of every kind finds nothing;
// each of the core's mutants (`CoreMutants`, debug builds) is caught by the check meant for it,
// on the smallest scenario that exercises it. (The property test runs them on random programs.)

@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost
import Testing

/// An audited space on a fresh machine, with its kernel table (for the quiescent checks).
struct AuditedSpace {
    let machine: Machine
    let kernel: PageTable<KernelPtConfig>
    let space: VmSpace
    let auditor = SpecAuditor()

    init(mutants: CoreMutants = [], memory: Int = 16 << 20) throws {
        machine = try Machine.host(memory: memory, auditor: auditor)
        machine.mutants = mutants
        kernel = try PageTable.newKernelPageTable(machine: machine)
        space = try VmSpace(kernelPageTable: kernel, auditor: auditor)
    }

    /// The predicates violated so far, per-operation and quiescent.
    func violatedPredicates() -> Set<String> {
        auditor.checkQuiescent(space, kernel: kernel, after: "the test")
        return Set(auditor.violations.map(\.predicate))
    }

    /// Keeps the space (and so its machine) alive forever: a mutant that corrupted the page
    /// table would crash the space's teardown, after the audit has done its work.
    func abandon() { _ = Unmanaged.passRetained(space) }

    /// Maps `count` fresh 4 KiB pages at `start`.
    func mapPages(at start: Vaddr, _ count: Int, _ flags: PageFlags = .rw) throws {
        var cursor = try space.cursorMut(pages(start, count))
        for _ in 0..<count { cursor.map(try FrameAllocOptions().allocFrame(in: machine), .user(flags)) }
    }

    /// Maps a fresh page at `va`, reads it on CPU 0 (whose TLB then caches it) and unmaps it.
    func unmapACachedPage(at va: Vaddr) throws {
        try mapPages(at: va, 1)
        space.activate(on: 0)
        _ = try space.withReader(at: va, count: 8) { try $0.readVal(UInt64.self) }
        var cursor = try space.cursorMut(pages(va, 1))
        cursor.unmap(pageSize)
    }

    /// Maps a fresh 2 MiB page at `start`.
    func mapHuge(at start: Vaddr) throws {
        var cursor = try space.cursorMut(start..<(start + 512 * pageSize))
        let segment = try FrameAllocOptions().allocSegment(512, in: machine)
        cursor.map(MappedItem(hugePage: segment, property: .user(.rw)))
    }
}

@Suite struct SpecAuditorTests {
    @Test func correctOperationsOfEveryKindViolateNothing() throws {
        let audited = try AuditedSpace()
        let space = audited.space
        try audited.mapPages(at: base, 8)
        try audited.mapHuge(at: Vaddr(0x60_0000))
        do {
            var cursor = try space.cursorMut(base..<Vaddr(0x80_0000))
            _ = try cursor.query()
            #expect(cursor.findNext(16 * pageSize) == base)
            try cursor.jump(base + 2 * pageSize)
            _ = try cursor.tryProtect(3 * pageSize) { $0.flags.remove(.w) }
            try cursor.jump(Vaddr(0x60_1000))   // inside the huge page: a split
            _ = cursor.protectNext(pageSize) { $0.flags.remove(.w) }
            cursor.flusher.dispatchTlbFlush()
            try cursor.jump(Vaddr(0x60_3000))
            if let fragment = cursor.takeNext(4 * pageSize) {
                _ = cursor.flusher.issueTlbFlush(removing: fragment)
                cursor.flusher.dispatchTlbFlush()
            }
            try cursor.jump(base + 6 * pageSize)
            cursor.unmap(2 * pageSize)
            #expect(throws: OSTDError.self) { try cursor.jump(Vaddr(0x90_0000)) }
        }
        space.activate(on: 0)
        try space.withWriter(at: base, count: 8) { try $0.writeVal(UInt64(42)) }
        #expect(try space.withReader(at: base, count: 8) { try $0.readVal(UInt64.self) } == 42)
        #expect(audited.violatedPredicates().isEmpty, "\(audited.auditor.violations)")
        #expect(audited.auditor.operationsChecked >= 12)
    }

    @Test func protectNextSkippingItsLastPageIsCaught() throws {
        let audited = try AuditedSpace(mutants: .protectNextSkipsLastPage)
        try audited.mapPages(at: base, 4)
        var cursor = try audited.space.cursorMut(pages(base, 4))
        _ = try cursor.tryProtect(4 * pageSize) { $0.flags.remove(.w) }
        _ = consume cursor
        #expect(audited.violatedPredicates().contains("protectSpec"))
    }

    @Test func takeNextLeakingAFrameReferenceIsCaught() throws {
        let audited = try AuditedSpace(mutants: .takeNextLeaksFrameReference)
        try audited.mapPages(at: base, 2)
        var cursor = try audited.space.cursorMut(pages(base, 2))
        cursor.unmap(2 * pageSize)
        _ = consume cursor
        #expect(audited.violatedPredicates().contains("referenceAccounting"))
    }

    @Test func aFlusherThatDoesNotFlushIsCaught() throws {
        let audited = try AuditedSpace(mutants: .flusherDoesNotFlush)
        try audited.unmapACachedPage(at: base)
        #expect(audited.violatedPredicates().contains("tlbSubsetOfPageTable"))
    }

    @Test func readerAdmissionIgnoringWritersIsCaught() throws {
        let audited = try AuditedSpace(mutants: .readerAdmissionIgnoresWriters)
        try audited.mapPages(at: base, 2)
        audited.space.activate(on: 0)
        try audited.space.withWriter(at: base, count: 16) { _ in
            _ = try audited.space.withReader(at: base + 8, count: 8) { try $0.readVal(UInt64.self) }
        }
        #expect(Set(audited.auditor.violations.map(\.predicate)) == ["vmSpaceOwnerInv"])
    }

    @Test func aMapWritingTheWrongPhysicalAddressIsCaught() throws {
        let audited = try AuditedSpace(mutants: .mapWritesWrongPaddr)
        try audited.mapPages(at: base, 1)
        #expect(audited.auditor.violations.map(\.predicate).contains("mapSpec"))
        audited.abandon()   // the leaf names a frame it holds no reference to
    }

    @Test func aSplitLosingALeafsPropertyIsCaught() throws {
        let audited = try AuditedSpace(mutants: .splitLosesProperty)
        try audited.mapHuge(at: Vaddr(0x60_0000))
        var cursor = try audited.space.cursorMut(Vaddr(0x60_0000)..<Vaddr(0x80_0000))
        try cursor.jump(Vaddr(0x60_1000))
        _ = cursor.takeNext(pageSize)
        _ = consume cursor
        #expect(audited.auditor.violations.map(\.predicate).contains("takeNextSpec"))
    }

    @Test func theCursorInvariantsCanFail() throws {
        let audited = try AuditedSpace()
        try audited.mapPages(at: base, 1)
        let table = audited.space.pageTable
        let root = table.rootPaddr
        let good = CursorAuditState(va: base, barrierVa: pages(base, 1), level: 4, guardLevel: 4, path: [nil, nil, nil, root])
        // No cursor is alive: none of the 4 nodes down to the page is locked.
        #expect(CursorInvariants.nodesLocked(good, table: table).count == 4)
        #expect(CursorInvariants.wf(good, table: table).isEmpty)
        var badPath = good
        badPath.path = [nil, nil, root, root]
        #expect(!CursorInvariants.wf(badPath, table: table).isEmpty)
        var badLevel = good
        badLevel.level = 5
        #expect(!CursorInvariants.inv(badLevel).isEmpty)
        var outside = good
        outside.va = base + 2 * pageSize
        #expect(!CursorInvariants.inv(outside).isEmpty)
        // While a cursor is alive its state satisfies them all.
        var cursor = try audited.space.cursorMut(pages(base, 1))
        #expect(CursorInvariants.invariants(cursor.auditState, table: table).isEmpty)
        _ = try cursor.query()
    }
}

/// Regressions the audited property test found.
@Suite struct AuditFindingsTests {
    /// A `tryMap` of a 4 KiB page inside a 2 MiB leaf used to split the leaf and then refuse,
    /// leaving CPU 0's TLB with the 2 MiB translation over 512 small leaves (TLB ⊄ PT).
    @Test func aRefusedMapInsideAHugeLeafSplitsNothing() throws {
        let audited = try AuditedSpace()
        let huge = Vaddr(0x60_0000)
        try audited.mapHuge(at: huge)
        audited.space.activate(on: 0)
        _ = try audited.space.withReader(at: huge, count: 8) { try $0.readVal(UInt64.self) }   // a 2 MiB TLB entry
        let before = audited.space.pageTable.view()
        var cursor = try audited.space.cursorMut(huge..<(huge + 512 * pageSize))
        try cursor.jump(huge + 3 * pageSize)
        let error: PageTableError? = switch cursor.tryMap(
            MappedItem(frame: try FrameAllocOptions().allocFrame(in: audited.machine), property: .user(.rw))) {
        case .some(let failure): failure.error
        case .none: nil
        }
        #expect(error == .alreadyMapped(huge + 3 * pageSize))
        _ = consume cursor
        #expect(audited.space.pageTable.view().mappings == before.mappings)
        #expect(audited.violatedPredicates().isEmpty, "\(audited.auditor.violations)")
    }
}

/// The refinement checks on hand-made outcomes: each can fail.
@Suite struct CursorRefinementTests {
    let cursor = CursorAuditState(va: Vaddr(0x1000), barrierVa: Vaddr(0x1000)..<Vaddr(0x3000), level: 1, guardLevel: 1,
                                  path: [Paddr(0x5000), nil, nil, nil])
    let empty = CursorView(curVa: Vaddr(0x1000), mappings: [])

    @Test func aMapRefusedOnAnEmptySlotIsAViolation() {
        let map = VmSpaceOperation.map(paddr: Paddr(0x9000), level: 1, property: .user(.rw), isTracked: true)
        let refused = CursorRefinement.violations(map, outcome: .failed(OSTDError(.alreadyMapped(Vaddr(0x1000)))),
                                                  cursor: cursor, before: empty, after: empty)
        #expect(refused.contains { $0.contains("which the precondition allows") })
        // Running out of memory is always an allowed refusal.
        #expect(CursorRefinement.violations(map, outcome: .failed(.outOfMemory(frames: 1)), cursor: cursor,
                                            before: empty, after: empty).isEmpty)
    }

    @Test func aJumpOutsideTheBarrierThatSucceedsIsAViolation() {
        var after = empty
        after.curVa = Vaddr(0x3000)
        let problems = CursorRefinement.violations(.jump(to: Vaddr(0x3000)), outcome: .done, cursor: cursor,
                                                   before: empty, after: after)
        #expect(problems.contains { $0.contains("which the precondition forbids") })
    }

    @Test func aQueryReportingTheWrongLeafIsAViolation() {
        let leaf = Mapping(va: Vaddr(0x1000)..<Vaddr(0x2000), pa: Paddr(0x9000)..<Paddr(0xa000), level: 1,
                           property: .user(.rw), isTracked: true)
        let view = CursorView(curVa: Vaddr(0x1000), mappings: [leaf])
        let wrong = VmQueriedItem.mappedRam(paddr: Paddr(0xa000), level: 1, property: .user(.rw))
        let right = VmQueriedItem.mappedRam(paddr: Paddr(0x9000), level: 1, property: .user(.rw))
        #expect(!CursorRefinement.violations(.query, outcome: .queried(range: leaf.va, item: wrong), cursor: cursor,
                                             before: view, after: view).isEmpty)
        #expect(CursorRefinement.violations(.query, outcome: .queried(range: leaf.va, item: right), cursor: cursor,
                                            before: view, after: view).isEmpty)
    }
}

extension CursorRefinementTests {
    @Test func cursorCreationMustSucceedExactlyOnValidRanges() throws {
        let valid = Vaddr(0x1000)..<Vaddr(0x3000)
        #expect(CursorInvariants.cursorNewSpec(valid, result: .success(cursor)).isEmpty)
        #expect(!CursorInvariants.cursorNewSpec(valid, result: .failure(.outOfMemory(frames: 1))).isEmpty)
        let unaligned = Vaddr(0x1800)..<Vaddr(0x3000)
        #expect(!CursorInvariants.cursorNewSpec(unaligned, result: .success(cursor)).isEmpty)
        #expect(CursorInvariants.cursorNewSpec(unaligned, result: .failure(.outOfMemory(frames: 1))).isEmpty)
        // A real audited space: a refused and an accepted creation leave no violation.
        let audited = try AuditedSpace()
        let checkedBefore = audited.auditor.operationsChecked   // the frame operations of the space's creation
        #expect(throws: OSTDError.self) { _ = try audited.space.cursorMut(unaligned) }
        _ = try audited.space.cursor(valid)
        #expect(audited.auditor.violations.isEmpty)
        #expect(audited.auditor.operationsChecked == checkedBefore + 2)
    }
}

extension CursorRefinementTests {
    @Test func anAdmittedHandleMustLieInUserSpace() {
        #expect(SpecAuditor.admissionSpec(Vaddr(0x40_0000)..<Vaddr(0x40_0008)).isEmpty)
        #expect(!SpecAuditor.admissionSpec(Vaddr(0x7fff_ffff_e000)..<Vaddr(0x7fff_ffff_f001)).isEmpty)
        #expect(!SpecAuditor.admissionSpec(Vaddr(0x40_0000)..<Vaddr(0x40_0000)).isEmpty)
    }
}

extension CursorRefinementTests {
    @Test func aRefusedHandleMustNameAConditionThatFails() throws {
        let audited = try AuditedSpace()
        try audited.mapPages(at: base, 2)
        audited.space.activate(on: 0)
        let owner = audited.space.ownerSnapshot
        let conflict = OSTDError.accessConflict(requested: pages(base, 1), conflicting: pages(base, 1))
        // Nothing is registered and the space is active: refusing a reader is a violation,
        // whatever the error says.
        #expect(!SpecAuditor.admissionRefusalSpec(base, 8, view: .readView, error: conflict, owner: owner).isEmpty)
        #expect(!SpecAuditor.admissionRefusalSpec(base, 8, view: .readView, error: .notActive(cpu: 0), owner: owner).isEmpty)
        #expect(!SpecAuditor.admissionRefusalSpec(base, 8, view: .writeView,
                                                  error: .invalidUserRange(vaddr: base, len: 8), owner: owner).isEmpty)
        #expect(SpecAuditor.admissionRefusalSpec(base, 0, view: .readView,
                                                 error: .invalidUserRange(vaddr: base, len: 0), owner: owner).isEmpty)
        // Real refusals of every kind, in an audited space, violate nothing.
        try audited.space.withWriter(at: base, count: 16) { _ in
            #expect(throws: OSTDError.self) { _ = try audited.space.createReader(base + 8, 8) }
            #expect(throws: OSTDError.self) { _ = try audited.space.createWriter(base, 0) }
        }
        let other = try VmSpace(kernelPageTable: audited.kernel)
        other.activate(on: 0)   // the audited space is no longer active on the CPU
        #expect(throws: OSTDError.notActive(cpu: 0)) { _ = try audited.space.createReader(base, 8) }
        #expect(audited.auditor.violations.isEmpty)
    }
}

extension CursorRefinementTests {
    @Test func anActivatedHandleMustHoldAWellFormedView() throws {
        let audited = try AuditedSpace()
        try audited.mapPages(at: base, 2)
        audited.space.activate(on: 0)
        try audited.space.withReader(at: base, count: 3 * pageSize) { _ in
            #expect(SpecAuditor.ioOwnerSpec(pages(base, 3), view: .readView, in: audited.space).isEmpty)
            // The auditor is told of an activation that left no such handle: a violation.
            #expect(SpecAuditor.ioOwnerSpec(pages(base, 3), view: .writeView, in: audited.space)
                == ["no active writer over \(base)..<\(base + 3 * pageSize) after its activation"])
        }
        #expect(audited.auditor.violations.isEmpty)
    }
}

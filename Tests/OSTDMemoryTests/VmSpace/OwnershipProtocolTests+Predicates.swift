// The seeds' predicates against creation: `canCreateWriter` and `canCreateReader` predict what
// creating a handle does over every small range, with shared readers and without (where the
// seeds' `can_create_reader` looks at writers only, and `admitsReader` adds the readers).

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

extension OwnershipProtocolTests {
    // MARK: The seeds' predicates

    /// Every candidate range over `0 ..< 40` (1 to 12 bytes long), tried against `space`:
    /// `canCreateWriter` and `canCreateReader` (where `readerPredicateApplies` says so) must agree
    /// with creation.
    private func checkPredicates(_ space: VmSpace, _ label: String,
                                 readerPredicateApplies: (Range<Vaddr>) -> Bool = { _ in true }) {
        for lo in 0..<40 {
            for len in 1...12 {
                let range = bytes(lo, lo + len)
                let snapshot = space.ownerSnapshot
                let writerPredicted = snapshot.canCreateWriter(range.lowerBound, len)
                #expect(writerPredicted == writerAdmitted(space, range), "\(label): writer \(range)")
                if readerPredicateApplies(range) {
                    let readerPredicted = snapshot.canCreateReader(range.lowerBound, len)
                    #expect(readerPredicted == readerAdmitted(space, range), "\(label): reader \(range)")
                }
                #expect(space.ownerSnapshot.inv())
            }
        }
    }

    @Test func predicatesAgreeWithCreation() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine, sharedReader: true)
        checkPredicates(space, "empty")
        let writer = try space.createWriter(base + 4, 8)
        checkPredicates(space, "one writer")
        let reader = try space.createReader(base + 20, 6)
        let reader2 = try space.createReader(base + 22, 10)
        checkPredicates(space, "a writer and shared readers")
        _ = consume writer
        checkPredicates(space, "shared readers")

        // Without sharing, `canCreateReader` (the seeds' predicate: no overlapping writer) does not
        // see readers; where no reader overlaps, it agrees with creation.
        _ = consume reader2
        space.sharedReader = false
        let writer2 = try space.createWriter(base + 8, 4)
        checkPredicates(space, "a reader and a writer, not shared") { range in
            !space.ownerSnapshot.readers.contains { $0.overlapsWithRange(range) }
        }
        _ = consume writer2
        _ = consume reader
    }

    @Test
    func canCreateReaderSeesReadersWhenNotShared() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        let reader = try space.createReader(base, 16)
        // The seeds' `can_create_reader` looks at writers only; `admitsReader` adds the
        // reader-disjointness clause of `inv`, which is what creation enforces.
        let literal = space.ownerSnapshot.canCreateReader(base + 8, 8)
        let predicted = space.ownerSnapshot.admitsReader(base + 8, 8)
        let admitted = readerAdmitted(space, bytes(8, 16))
        #expect(!admitted)
        #expect(literal)
        #expect(predicted == admitted)
        _ = consume reader
    }
}

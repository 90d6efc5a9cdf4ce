// The ownership protocol of user-space readers and writers: the seeds' `VmSpaceOwner`
// (ostd/specs/mm/vm_space.rs) and `VmIoOwner` (ostd/specs/mm/io.rs) as `VmSpace` enforces them.
//
// The rules checked, one test (or more) each:
// - a reader is refused while an active writer overlaps it, and a writer while any active reader
//   or writer does; a reader is refused while an active reader overlaps it unless the space has
//   `sharedReader`; the error names the requested range and the conflicting handle's range;
// - ranges are half-open: `[a, b)` and `[b, c)` never conflict (the seeds compare closed ends;
//   a deliberate difference, see `VmIoOwner.swift`);
// - disposal returns the permission and makes the handle unusable (`disposed`) until it is
//   activated again, which is admitted by the same rules; removal and dropping return it for good,
//   and the scoped `withReader` / `withWriter` leave no registration;
// - a handle owns only the bytes it has not consumed (the seeds' `wf`: the owner's range starts at
//   the cursor), and `limit` gives up the tail;
// - `split` registers two disjoint handles, and `writeToRead` turns a writer's registration into
//   a reader's;
// - `ownerSnapshot.inv()` holds after every step, and `canCreateReader` / `canCreateWriter`
//   predict what creation does.
// A property test then runs random programs of creations, drops, skips, disposals and
// re-activations against a naive model (the live handles with their kinds and ranges, in activation order).

import Testing
import PropertyBased
import OSTDHost
@testable import OSTDMemory

/// `base + lo ..< base + hi`.
private func bytes(_ lo: Int, _ hi: Int) -> Range<Vaddr> { (base + lo)..<(base + hi) }

/// A space active on CPU 0 with `pages` zeroed read-write pages mapped at `base`.
private func activeSpace(_ machine: Machine, sharedReader: Bool = false, pages: Int = 1) throws -> VmSpace {
    let space = try VmSpace(machine: machine, sharedReader: sharedReader)
    var cursor = try space.cursorMut(base..<(base + pages * pageSize))
    for _ in 0..<pages { cursor.map(try FrameAllocOptions().allocFrame(in: machine), .user(.rw)) }
    _ = consume cursor
    space.activate(on: 0)
    return space
}

/// The registered readers' and writers' ranges, in registration order.
private func registered(_ space: VmSpace) -> (readers: [Range<Vaddr>], writers: [Range<Vaddr>]) {
    let snapshot = space.ownerSnapshot
    return (snapshot.readers.map(\.range), snapshot.writers.map(\.range))
}

/// Whether creating a reader over `range` succeeds (the reader is dropped at once).
private func readerAdmitted(_ space: VmSpace, _ range: Range<Vaddr>) -> Bool {
    (try? space.createReader(range.lowerBound, range.upperBound - range.lowerBound)) != nil
}

/// Whether creating a writer over `range` succeeds (the writer is dropped at once).
private func writerAdmitted(_ space: VmSpace, _ range: Range<Vaddr>) -> Bool {
    (try? space.createWriter(range.lowerBound, range.upperBound - range.lowerBound)) != nil
}

@Suite struct OwnershipProtocolTests {
    // MARK: Conflicts

    @Test func readerIsRefusedWhileAnActiveWriterOverlaps() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        let writer = try space.createWriter(base, 16)
        #expect(space.ownerSnapshot.inv())
        #expect(throws: OSTDError.accessConflict(requested: bytes(8, 24), conflicting: bytes(0, 16))) {
            _ = try space.createReader(base + 8, 16)
        }
        #expect(throws: OSTDError.accessConflict(requested: bytes(15, 16), conflicting: bytes(0, 16))) {
            _ = try space.createReader(base + 15, 1)
        }
        // Shared readers do not change that.
        space.sharedReader = true
        #expect(throws: OSTDError.accessConflict(requested: bytes(0, 1), conflicting: bytes(0, 16))) {
            _ = try space.createReader(base, 1)
        }
        // A refused creation registers nothing.
        #expect(registered(space).readers.isEmpty)
        #expect(registered(space).writers == [bytes(0, 16)])
        #expect(space.ownerSnapshot.inv())
        _ = consume writer
        #expect(readerAdmitted(space, bytes(8, 24)))
    }

    @Test func writerIsRefusedWhileAnActiveReaderOverlaps() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        let reader = try space.createReader(base + 8, 16)
        #expect(throws: OSTDError.accessConflict(requested: bytes(0, 9), conflicting: bytes(8, 24))) {
            _ = try space.createWriter(base, 9)
        }
        #expect(throws: OSTDError.accessConflict(requested: bytes(23, 40), conflicting: bytes(8, 24))) {
            _ = try space.createWriter(base + 23, 17)
        }
        // Even when readers are shared.
        space.sharedReader = true
        #expect(throws: OSTDError.accessConflict(requested: bytes(10, 12), conflicting: bytes(8, 24))) {
            _ = try space.createWriter(base + 10, 2)
        }
        #expect(registered(space).readers == [bytes(8, 24)])
        #expect(registered(space).writers.isEmpty)
        #expect(space.ownerSnapshot.inv())
        _ = consume reader
        #expect(writerAdmitted(space, bytes(0, 40)))
    }

    @Test func writerIsRefusedWhileAnActiveWriterOverlaps() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine, sharedReader: true)
        let writer = try space.createWriter(base + 100, 100)
        #expect(throws: OSTDError.accessConflict(requested: bytes(0, 101), conflicting: bytes(100, 200))) {
            _ = try space.createWriter(base, 101)
        }
        // A writer inside the other, and one around it.
        #expect(throws: OSTDError.accessConflict(requested: bytes(150, 151), conflicting: bytes(100, 200))) {
            _ = try space.createWriter(base + 150, 1)
        }
        #expect(throws: OSTDError.accessConflict(requested: bytes(0, 300), conflicting: bytes(100, 200))) {
            _ = try space.createWriter(base, 300)
        }
        #expect(registered(space).writers == [bytes(100, 200)])
        #expect(space.ownerSnapshot.inv())
        _ = consume writer
        #expect(writerAdmitted(space, bytes(0, 300)))
    }

    @Test func readersConflictUnlessShared() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        #expect(!space.sharedReader)
        let reader = try space.createReader(base, 16)
        #expect(throws: OSTDError.accessConflict(requested: bytes(8, 24), conflicting: bytes(0, 16))) {
            _ = try space.createReader(base + 8, 16)
        }
        #expect(registered(space).readers == [bytes(0, 16)])

        // Turned on through the property.
        space.sharedReader = true
        #expect(space.ownerSnapshot.sharedReader)
        let second = try space.createReader(base + 8, 16)
        #expect(registered(space).readers == [bytes(0, 16), bytes(8, 24)])
        #expect(space.ownerSnapshot.inv())
        // A writer is still refused, and told about the first overlapping reader.
        #expect(throws: OSTDError.accessConflict(requested: bytes(4, 12), conflicting: bytes(0, 16))) {
            _ = try space.createWriter(base + 4, 8)
        }
        _ = consume second
        _ = consume reader
        #expect(registered(space).readers.isEmpty)
    }

    @Test func sharedReaderAtCreationAllowsOverlappingReaders() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine, sharedReader: true)
        #expect(space.sharedReader)
        let a = try space.createReader(base, 16)
        let b = try space.createReader(base, 16)
        let c = try space.createReader(base + 4, 4)
        #expect(registered(space).readers == [bytes(0, 16), bytes(0, 16), bytes(4, 8)])
        #expect(space.ownerSnapshot.inv())
        let ids = space.ownerSnapshot.readers.map(\.id)
        #expect(Set(ids).count == 3)
        _ = consume a
        _ = consume b
        _ = consume c
    }

    @Test func adjacentRangesNeverConflict() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        for heldIsWriter in [false, true] {
            for newIsWriter in [false, true] {
                for (held, new) in [(bytes(0, 8), bytes(8, 16)), (bytes(8, 16), bytes(0, 8))] {
                    let holder: VmIoOwner?
                    if heldIsWriter {
                        let w = try space.createWriter(held.lowerBound, 8)
                        holder = w.owner
                        let admitted = newIsWriter ? writerAdmitted(space, new) : readerAdmitted(space, new)
                        #expect(admitted, "held \(heldIsWriter ? "writer" : "reader") \(held), new \(new)")
                        #expect(space.ownerSnapshot.inv())
                        _ = consume w
                    } else {
                        let r = try space.createReader(held.lowerBound, 8)
                        holder = r.owner
                        let admitted = newIsWriter ? writerAdmitted(space, new) : readerAdmitted(space, new)
                        #expect(admitted, "held reader \(held), new \(new)")
                        #expect(space.ownerSnapshot.inv())
                        _ = consume r
                    }
                    // The owners' own predicates agree: adjacent ranges do not overlap.
                    #expect(holder?.overlapsWithRange(new) == false)
                }
            }
        }
        // Both at once, on either side of a writer.
        let w = try space.createWriter(base + 8, 8)
        let left = try space.createReader(base, 8)
        let right = try space.createWriter(base + 16, 8)
        #expect(registered(space).writers == [bytes(8, 16), bytes(16, 24)])
        #expect(registered(space).readers == [bytes(0, 8)])
        #expect(space.ownerSnapshot.inv())
        _ = consume w
        _ = consume left
        _ = consume right
    }

    // MARK: The lifecycle

    @Test func disposingAWriterReturnsItsPermission() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        var writer = try space.createWriter(base, 16)
        space.disposeWriter(&writer)
        #expect(registered(space).writers.isEmpty)
        #expect(space.ownerSnapshot.inv())
        let disposedView = writer.owner?.memView
        #expect(disposedView == nil)

        // The permission is back: an overlapping writer is admitted.
        var other = try space.createWriter(base + 8, 16)
        #expect(registered(space).writers == [bytes(8, 24)])
        // The disposed writer cannot be used.
        #expect(throws: OSTDError.disposed(range: bytes(0, 16))) { try writer.writeVal(UInt32(1)) }
        #expect(throws: OSTDError.disposed(range: bytes(0, 16))) { try writer.fillZeros(4) }
        // Nor activated again while the other holds the bytes; nothing changes then.
        #expect(throws: OSTDError.accessConflict(requested: bytes(0, 16), conflicting: bytes(8, 24))) {
            try space.activateWriter(&writer)
        }
        #expect(registered(space).writers == [bytes(8, 24)])
        #expect(space.ownerSnapshot.inv())

        // Once the other is removed, it can.
        space.removeWriter(other)
        #expect(registered(space).writers.isEmpty)
        try space.activateWriter(&writer)
        #expect(registered(space).writers == [bytes(0, 16)])
        try writer.writeVal(UInt32(0xfeed_f00d))
        #expect(registered(space).writers == [bytes(4, 16)])
        // Activating an active handle changes nothing.
        try space.activateWriter(&writer)
        #expect(registered(space).writers == [bytes(4, 16)])
        #expect(space.ownerSnapshot.inv())
        _ = consume writer
        let value = try space.withReader(at: base, count: 4) { reader in try reader.readVal(UInt32.self) }
        #expect(value == 0xfeed_f00d)
        other = try space.createWriter(base, 16)
        _ = consume other
    }

    @Test func disposingAReaderReturnsItsPermission() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        try space.withWriter(at: base, count: 8) { writer in try writer.writeVal(UInt64(42)) }
        var reader = try space.createReader(base, 8)
        space.disposeReader(&reader)
        #expect(registered(space).readers.isEmpty)

        // A writer and another reader are admitted over the same bytes.
        let writer = try space.createWriter(base, 4)
        #expect(throws: OSTDError.disposed(range: bytes(0, 8))) { _ = try reader.readVal(UInt64.self) }
        #expect(throws: OSTDError.accessConflict(requested: bytes(0, 8), conflicting: bytes(0, 4))) {
            try space.activateReader(&reader)
        }
        _ = consume writer
        let second = try space.createReader(base + 4, 4)
        #expect(throws: OSTDError.accessConflict(requested: bytes(0, 8), conflicting: bytes(4, 8))) {
            try space.activateReader(&reader)
        }
        // With shared readers the re-activation is admitted.
        space.sharedReader = true
        try space.activateReader(&reader)
        #expect(registered(space).readers == [bytes(4, 8), bytes(0, 8)])
        #expect(space.ownerSnapshot.inv())
        let value = try reader.readVal(UInt64.self)
        #expect(value == 42)
        _ = consume second
        _ = consume reader
        #expect(registered(space).readers.isEmpty)
    }

    @Test func reactivationNeedsTheSpaceActive() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        var writer = try space.createWriter(base, 8)
        space.disposeWriter(&writer)
        let other = try VmSpace(machine: machine)
        other.activate(on: 0)
        #expect(throws: OSTDError.notActive(cpu: 0)) { try space.activateWriter(&writer) }
        #expect(registered(space).writers.isEmpty)
        space.activate(on: 0)
        try space.activateWriter(&writer)
        #expect(registered(space).writers == [bytes(0, 8)])
        #expect(space.ownerSnapshot.active)
        _ = consume writer
    }

    @Test func removingOrDroppingReturnsThePermission() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        // Removal.
        let writer = try space.createWriter(base, 16)
        space.removeWriter(writer)
        #expect(registered(space).writers.isEmpty)
        let reader = try space.createReader(base, 16)
        space.removeReader(reader)
        #expect(registered(space).readers.isEmpty)
        // Dropping.
        do {
            let w = try space.createWriter(base, 16)
            let r = try space.createReader(base + 16, 16)
            #expect(registered(space).writers == [bytes(0, 16)])
            #expect(registered(space).readers == [bytes(16, 32)])
            _ = consume w
            _ = consume r
        }
        #expect(registered(space).writers.isEmpty && registered(space).readers.isEmpty)
        #expect(writerAdmitted(space, bytes(0, 32)))
        // A disposed handle leaves nothing behind when dropped either.
        do {
            var w = try space.createWriter(base, 16)
            space.disposeWriter(&w)
            _ = consume w
        }
        #expect(registered(space).writers.isEmpty)
        #expect(space.ownerSnapshot.inv())
    }

    @Test func scopedAccessLeavesNoRegistration() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        let inside = try space.withWriter(at: base, count: 16) { writer in
            try writer.writeVal(UInt64(7))
            return registered(space).writers
        }
        #expect(inside == [bytes(8, 16)])
        #expect(space.ownerSnapshot.writers.isEmpty)
        let readersInside = try space.withReader(at: base, count: 16) { _ in registered(space).readers }
        #expect(readersInside == [bytes(0, 16)])
        #expect(space.ownerSnapshot.readers.isEmpty)
        // A body that throws leaves nothing either.
        #expect(throws: OSTDError.overflow) {
            try space.withWriter(at: base, count: 16) { (_: inout VmWriter<Fallible>) throws(OSTDError) -> Int in
                throw OSTDError.overflow
            }
        }
        #expect(space.ownerSnapshot.writers.isEmpty)
        // A refused scoped access throws the conflict and runs nothing.
        let holder = try space.createWriter(base, 4)
        var ran = false
        #expect(throws: OSTDError.accessConflict(requested: bytes(0, 8), conflicting: bytes(0, 4))) {
            try space.withReader(at: base, count: 8) { (_: inout VmReader<Fallible>) throws(OSTDError) -> Void in ran = true }
        }
        #expect(!ran)
        _ = consume holder
        #expect(space.ownerSnapshot.writers.isEmpty && space.ownerSnapshot.inv())
    }

    // MARK: What a handle owns

    @Test func aWriterNoLongerHoldsTheBytesItHasWritten() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        var writer = try space.createWriter(base, 16)
        try writer.writeVal(UInt64(0x1111_2222_3333_4444))
        let range = writer.owner?.range
        #expect(range == bytes(8, 16))
        #expect(space.ownerSnapshot.inv())
        // A reader of the written bytes is admitted, and reads them.
        let value = try space.withReader(at: base, count: 8) { reader in try reader.readVal(UInt64.self) }
        #expect(value == 0x1111_2222_3333_4444)
        // The rest is still held.
        #expect(throws: OSTDError.accessConflict(requested: bytes(4, 12), conflicting: bytes(8, 16))) {
            _ = try space.createReader(base + 4, 8)
        }
        // `skip` gives up bytes too, and `limit` the tail.
        writer.skip(2)
        writer.limit(4)
        let afterLimit = writer.owner?.range
        #expect(afterLimit == bytes(10, 14))
        #expect(writerAdmitted(space, bytes(8, 10)))
        #expect(writerAdmitted(space, bytes(14, 16)))
        #expect(!writerAdmitted(space, bytes(13, 14)))
        #expect(space.ownerSnapshot.inv())
        _ = consume writer
    }

    @Test func aReaderNoLongerHoldsTheBytesItHasRead() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        var reader = try space.createReader(base, 16)
        _ = try reader.readVal(UInt64.self)
        #expect(registered(space).readers == [bytes(8, 16)])
        #expect(writerAdmitted(space, bytes(0, 8)))
        #expect(!writerAdmitted(space, bytes(7, 9)))
        reader.skip(4)
        #expect(registered(space).readers == [bytes(12, 16)])
        #expect(writerAdmitted(space, bytes(0, 12)))
        #expect(writerAdmitted(space, bytes(16, 32)))
        reader.skip(4)
        #expect(registered(space).readers == [bytes(16, 16)])
        #expect(space.ownerSnapshot.inv())
        _ = consume reader
    }

    @Test
    func anExhaustedHandleHoldsNothing() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        var reader = try space.createReader(base, 16)
        reader.skip(16)
        #expect(registered(space).readers == [bytes(16, 16)])
        // An empty range shares no byte with anything.
        #expect(writerAdmitted(space, bytes(0, 32)))
        let readerOwner = reader.owner
        #expect(readerOwner?.overlapsWithRange(bytes(0, 32)) == false)
        _ = consume reader

        var writer = try space.createWriter(base, 8)
        try writer.writeVal(UInt64(1))
        #expect(registered(space).writers == [bytes(8, 8)])
        #expect(throws: Never.self) { _ = try space.createWriter(base + 4, 8) }
        _ = consume writer
    }

    @Test func aFaultingAccessKeepsItsBytes() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)   // One page: the next one is not mapped.
        var writer = try space.createWriter(base + (pageSize - 4), 8)
        #expect(throws: OSTDError.pageFault(address: base + pageSize, copied: 4)) {
            try writer.writeVal(UInt64.max)
        }
        // `writeVal` rewinds on a fault, and so does the registration.
        #expect(registered(space).writers == [bytes(pageSize - 4, pageSize + 4)])
        #expect(!readerAdmitted(space, bytes(pageSize - 4, pageSize - 3)))
        _ = consume writer
    }

    @Test func splitRegistersTwoDisjointHandles() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        var back = try space.createWriter(base, 16)
        var front = back.split(8)
        let frontRange = front.owner?.range
        let backRange = back.owner?.range
        #expect(frontRange == bytes(0, 8))
        #expect(backRange == bytes(8, 16))
        let snapshot = space.ownerSnapshot
        #expect(snapshot.writers.count == 2)
        #expect(Set(snapshot.writers.map(\.range)) == [bytes(0, 8), bytes(8, 16)])
        #expect(Set(snapshot.writers.map(\.id)).count == 2)
        #expect(snapshot.writers.allSatisfy { $0.hasWriteView() })
        #expect(snapshot.inv())
        // Both write.
        try front.writeVal(UInt64(1))
        try back.writeVal(UInt64(2))
        _ = consume front
        // The front's bytes are free again; the back's are not... until it is gone.
        #expect(readerAdmitted(space, bytes(0, 8)))
        #expect(registered(space).writers == [bytes(16, 16)])
        _ = consume back
        let values = try space.withReader(at: base, count: 16) { reader in
            (try reader.readVal(UInt64.self), try reader.readVal(UInt64.self))
        }
        #expect(values.0 == 1 && values.1 == 2)

        // Readers split the same way, and stay disjoint without sharing.
        var reader = try space.createReader(base, 16)
        let readerFront = reader.split(4)
        #expect(Set(registered(space).readers) == [bytes(0, 4), bytes(4, 16)])
        #expect(space.ownerSnapshot.inv())
        #expect(space.ownerSnapshot.readers.allSatisfy { $0.hasReadView() })
        _ = consume readerFront
        #expect(registered(space).readers == [bytes(4, 16)])
        _ = consume reader
    }

    @Test func writeToReadTurnsTheRegistrationIntoAReader() throws {
        let machine = makeMachine()
        let space = try activeSpace(machine)
        let writer = try space.createWriter(base, 16)
        let id = writer.owner?.id
        var reader = writer.writeToRead()
        #expect(registered(space).writers.isEmpty)
        #expect(registered(space).readers == [bytes(0, 16)])
        #expect(space.ownerSnapshot.readers.first?.id == id)
        #expect(space.ownerSnapshot.readers.first?.hasReadView() == true)
        #expect(space.ownerSnapshot.inv())
        let remain = reader.remain
        #expect(remain == 16)
        let first = try reader.readVal(UInt32.self)
        #expect(first == 0)

        // A second reader conflicts without sharing, a writer conflicts always.
        #expect(throws: OSTDError.accessConflict(requested: bytes(4, 8), conflicting: bytes(4, 16))) {
            _ = try space.createReader(base + 4, 4)
        }
        #expect(throws: OSTDError.accessConflict(requested: bytes(8, 12), conflicting: bytes(4, 16))) {
            _ = try space.createWriter(base + 8, 4)
        }
        space.sharedReader = true
        #expect(readerAdmitted(space, bytes(4, 8)))
        #expect(!writerAdmitted(space, bytes(8, 12)))
        // The bytes already read are free.
        #expect(writerAdmitted(space, bytes(0, 4)))
        _ = consume reader
        #expect(registered(space).readers.isEmpty)
    }

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

    // MARK: Random programs against a model

    @Test func randomHandlesMatchTheModel() async {
        await propertyCheck(count: 80, input: Gen.int(in: 0...Int.max).array(of: 1...60)) { codes in
            let machine = makeMachine()
            let space = try! VmSpace(machine: machine, sharedReader: codes[0] % 3 == 0)
            space.activate(on: 0)
            var program = OwnershipProgram(space: space)
            program.run(codes)
        }
    }
}

// MARK: - The model

/// A live handle of a program: the reader or writer, kept in a box (they are not copyable).
private final class ReaderBox {
    var handle: VmReader<Fallible>
    init(_ handle: consuming VmReader<Fallible>) { self.handle = handle }
}

private final class WriterBox {
    var handle: VmWriter<Fallible>
    init(_ handle: consuming VmWriter<Fallible>) { self.handle = handle }
}

private enum Boxed {
    case reader(ReaderBox)
    case writer(WriterBox)
}

/// What the model knows of a handle.
private struct ModelHandle {
    var id: Int
    var isWriter: Bool
    var range: Range<Int>
    var box: Boxed
}

/// A random program of creations, drops, skips, disposals and re-activations, each checked on the spot
/// against the model: the live handles, the active ones in activation order.
private struct OwnershipProgram {
    let space: VmSpace
    let shared: Bool
    var handles: [ModelHandle] = []
    /// Ids of the active handles, in activation order (the owner's lists keep that order).
    var activeOrder: [Int] = []
    var nextId = 0
    var trace: [String] = []

    init(space: VmSpace) {
        self.space = space
        shared = space.sharedReader
    }

    static func overlaps(_ a: Range<Int>, _ b: Range<Int>) -> Bool { a.lowerBound < b.upperBound && b.lowerBound < a.upperBound }

    func handle(_ id: Int) -> ModelHandle { handles.first { $0.id == id }! }

    /// The model's verdict on a handle over `range`: the range of the first active writer (in
    /// activation order) that overlaps, else of the first active reader that does, if readers
    /// count; `nil` when admitted.
    func conflict(_ range: Range<Int>, isWriter: Bool, excluding: Int? = nil) -> Range<Int>? {
        let active = activeOrder.filter { $0 != excluding }.map(handle)
        if let w = active.first(where: { $0.isWriter && Self.overlaps($0.range, range) }) { return w.range }
        guard isWriter || !shared else { return nil }
        return active.first { !$0.isWriter && Self.overlaps($0.range, range) }?.range
    }

    func vrange(_ r: Range<Int>) -> Range<Vaddr> { bytes(r.lowerBound, r.upperBound) }

    mutating func fail(_ message: String) {
        let text = message + "\nshared readers: \(shared)\ntrace:\n" + trace.joined(separator: "\n")
        Issue.record("\(text)")
    }

    mutating func run(_ codes: [Int]) {
        for code in codes {
            var bits = UInt64(code)
            func take(_ n: UInt64) -> Int {
                defer { bits /= n }
                return Int(bits % n)
            }
            let op = take(16)
            let ok: Bool
            switch op {
            case 0..<8:
                let isWriter = take(2) == 0
                let lo = take(24)
                let len = 1 + take(8)
                ok = create(isWriter: isWriter, lo..<(lo + len))
            case 8..<11:
                ok = handles.isEmpty ? true : drop(handles[take(UInt64(handles.count))].id)
            case 11:
                // Consume part of a handle's bytes (never all of them: see
                // `anExhaustedHandleHoldsNothing`).
                let longer = handles.filter { $0.range.count > 1 }
                if longer.isEmpty {
                    ok = true
                } else {
                    let h = longer[take(UInt64(longer.count))]
                    ok = skip(h.id, 1 + take(UInt64(h.range.count - 1)))
                }
            case 12..<14:
                let active = handles.filter { activeOrder.contains($0.id) }
                ok = active.isEmpty ? true : dispose(active[take(UInt64(active.count))].id)
            default:
                let disposed = handles.filter { !activeOrder.contains($0.id) }
                ok = disposed.isEmpty ? true : reactivate(disposed[take(UInt64(disposed.count))].id)
            }
            guard ok, check() else { return }
        }
        // Everything dropped: nothing is registered.
        handles.removeAll()
        activeOrder.removeAll()
        trace.append("drop everything")
        _ = check()
    }

    mutating func create(isWriter: Bool, _ range: Range<Int>) -> Bool {
        let kind = isWriter ? "writer" : "reader"
        trace.append("create \(kind) \(range)")
        let expected = conflict(range, isWriter: isWriter)
        let snapshot = space.ownerSnapshot
        let start = base + range.lowerBound
        let len = range.count
        // The seeds' predicates: `canCreateWriter` is the whole rule; `canCreateReader` only looks
        // at writers.
        let predicted = isWriter
            ? snapshot.canCreateWriter(start, len)
            : snapshot.canCreateReader(start, len)
        let predictedByModel = isWriter
            ? expected == nil
            : !activeOrder.map(handle).contains { $0.isWriter && Self.overlaps($0.range, range) }
        if predicted != predictedByModel {
            fail("can_create_\(kind) says \(predicted), the model \(predictedByModel)")
            return false
        }
        let box: Boxed
        do {
            if isWriter {
                box = .writer(WriterBox(try space.createWriter(start, len)))
            } else {
                box = .reader(ReaderBox(try space.createReader(start, len)))
            }
        } catch {
            guard let expected else {
                fail("\(kind) \(range) refused with \(error), the model admits it")
                return false
            }
            let wanted = OSTDError.accessConflict(requested: vrange(range), conflicting: vrange(expected))
            if error != wanted {
                fail("\(kind) \(range) refused with \(error), the model expects \(wanted)")
                return false
            }
            return true
        }
        if let expected {
            fail("\(kind) \(range) admitted, the model expects a conflict with \(expected)")
            return false
        }
        handles.append(ModelHandle(id: nextId, isWriter: isWriter, range: range, box: box))
        activeOrder.append(nextId)
        trace[trace.count - 1] += " -> #\(nextId)"
        nextId += 1
        return true
    }

    mutating func drop(_ id: Int) -> Bool {
        trace.append("drop #\(id)")
        handles.removeAll { $0.id == id }
        activeOrder.removeAll { $0 == id }
        return true
    }

    mutating func skip(_ id: Int, _ count: Int) -> Bool {
        trace.append("skip #\(id) by \(count)")
        switch handle(id).box {
        case .reader(let box): box.handle.skip(count)
        case .writer(let box): box.handle.skip(count)
        }
        let i = handles.firstIndex { $0.id == id }!
        handles[i].range = (handles[i].range.lowerBound + count)..<handles[i].range.upperBound
        return true
    }

    mutating func dispose(_ id: Int) -> Bool {
        trace.append("dispose #\(id)")
        switch handle(id).box {
        case .reader(let box): space.disposeReader(&box.handle)
        case .writer(let box): space.disposeWriter(&box.handle)
        }
        activeOrder.removeAll { $0 == id }
        return true
    }

    mutating func reactivate(_ id: Int) -> Bool {
        trace.append("activate #\(id)")
        let h = handle(id)
        let expected = conflict(h.range, isWriter: h.isWriter, excluding: id)
        do throws(OSTDError) {
            switch h.box {
            case .reader(let box): try space.activateReader(&box.handle)
            case .writer(let box): try space.activateWriter(&box.handle)
            }
        } catch {
            guard let expected else {
                fail("activating #\(id) refused with \(error), the model admits it")
                return false
            }
            let wanted = OSTDError.accessConflict(requested: vrange(h.range), conflicting: vrange(expected))
            if error != wanted {
                fail("activating #\(id) refused with \(error), the model expects \(wanted)")
                return false
            }
            return true
        }
        if let expected {
            fail("activating #\(id) admitted, the model expects a conflict with \(expected)")
            return false
        }
        activeOrder.append(id)
        return true
    }

    /// The registrations are the model's active handles, in order, and `inv` holds.
    mutating func check() -> Bool {
        let snapshot = space.ownerSnapshot
        let active = activeOrder.map(handle)
        let readers = active.filter { !$0.isWriter }.map { vrange($0.range) }
        let writers = active.filter(\.isWriter).map { vrange($0.range) }
        guard snapshot.readers.map(\.range) == readers, snapshot.writers.map(\.range) == writers else {
            fail("registered readers \(snapshot.readers.map(\.range)), writers \(snapshot.writers.map(\.range)); "
                 + "the model has readers \(readers), writers \(writers)")
            return false
        }
        guard snapshot.inv() else {
            fail("inv() does not hold")
            return false
        }
        return true
    }
}

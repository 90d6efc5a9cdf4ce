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
//
// This file holds the helpers the ownership files share and the conflict tests; the other
// concerns are in `OwnershipProtocolTests+<Concern>.swift`.

import Testing
import PropertyBased
import OSTDHost
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

/// `base + lo ..< base + hi`.
func bytes(_ lo: Int, _ hi: Int) -> Range<Vaddr> { (base + lo)..<(base + hi) }

/// The registered readers' and writers' ranges, in registration order.
func registered(_ space: VmSpace) -> (readers: [Range<Vaddr>], writers: [Range<Vaddr>]) {
    let snapshot = space.ownerSnapshot
    return (snapshot.readers.map(\.range), snapshot.writers.map(\.range))
}

/// Whether creating a reader over `range` succeeds (the reader is dropped at once).
func readerAdmitted(_ space: VmSpace, _ range: Range<Vaddr>) -> Bool {
    (try? space.createReader(range.lowerBound, range.upperBound - range.lowerBound)) != nil
}

/// Whether creating a writer over `range` succeeds (the writer is dropped at once).
func writerAdmitted(_ space: VmSpace, _ range: Range<Vaddr>) -> Bool {
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
}

extension OwnershipProtocolTests {
    // A member, not a global: TlbFlusherTests has a private `activeSpace(_:)` of its own.
    /// A space active on CPU 0 with `pages` zeroed read-write pages mapped at `base`.
    func activeSpace(_ machine: Machine, sharedReader: Bool = false, pages: Int = 1) throws -> VmSpace {
        let space = try VmSpace(machine: machine, sharedReader: sharedReader)
        var cursor = try space.cursorMut(base..<(base + pages * pageSize))
        for _ in 0..<pages { cursor.map(try FrameAllocOptions().allocFrame(in: machine), .user(.rw)) }
        _ = consume cursor
        space.activate(on: 0)
        return space
    }
}

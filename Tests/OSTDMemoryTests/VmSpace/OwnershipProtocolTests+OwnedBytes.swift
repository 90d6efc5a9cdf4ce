// What a handle owns: only the bytes it has not consumed (the seeds' `wf`: the owner's range
// starts at the cursor), so reads, writes and `skip` give bytes up and `limit` the tail; an
// exhausted handle holds nothing and a faulting access keeps its bytes; `split` registers two
// disjoint handles, and `writeToRead` turns a writer's registration into a reader's.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

extension OwnershipProtocolTests {
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
}

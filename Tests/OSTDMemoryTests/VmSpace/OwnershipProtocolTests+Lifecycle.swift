// The lifecycle of a handle's registration: disposal returns the permission and makes the
// handle unusable (`disposed`) until it is activated again, which is admitted by the same rules
// and only while the space is active; removal and dropping return it for good, and the scoped
// `withReader` / `withWriter` leave no registration.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

extension OwnershipProtocolTests {
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
}

// Scoped readers and writers (`VmSpace.withReader` / `withWriter`), which borrow their space for
// the call as OSTD's `VmReader<'a>` borrows `&'a VmSpace`, taking no reference on it.
//
// What is checked: a scoped handle reads and writes and its registration ends with the call,
// also when the body throws; a space used only through scoped handles is freed when its last
// reference goes (no reference was taken or left behind, and none given back twice); a handle
// split off a scoped one holds a reference of its own and keeps the space alive after the
// scope; and a body that moves its handle out of the parameter (swapping another in) traps when
// it returns, for a reader and for a writer, instead of letting an unretained handle outlive the
// borrow.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

extension UserIoTests {
    // MARK: Scoped handles

    /// Scoped handles work as created ones do, and leave no registration behind, whether the
    /// body returns or throws.
    @Test func scopedHandlesReadWriteAndEndWithTheCall() throws {
        let machine = makeMachine()
        let space = try makeSpace(machine, [userRW, nil])
        try space.withWriter(at: base, count: 8) { (writer) throws(OSTDError) in try writer.writeVal(UInt64(0x1234)) }
        let value = try space.withReader(at: base, count: 8) { (reader) throws(OSTDError) in try reader.readVal(UInt64.self) }
        #expect(value == 0x1234)
        #expect(space.ownerSnapshot.readers.isEmpty && space.ownerSnapshot.writers.isEmpty)

        let thrown = attempt { () throws(OSTDError) in
            try space.withReader(at: base + (pageSize - 4), count: 8) { (reader) throws(OSTDError) in
                #expect(space.ownerSnapshot.readers.count == 1)
                _ = try reader.readVal(UInt64.self)
            }
        }
        #expect(thrown == .pageFault(address: base + pageSize, copied: 4))
        #expect(space.ownerSnapshot.readers.isEmpty)
    }

    /// A space used only through scoped handles is freed with its last reference: the handles
    /// took none and gave none back.
    @Test func aSpaceUsedThroughScopedHandlesIsFreedWithItsLastReference() throws {
        let machine = makeMachine()
        weak var weakSpace: VmSpace?
        do {
            let space = try makeSpace(machine, [userRW])
            weakSpace = space
            for _ in 0..<3 {
                try space.withWriter(at: base, count: 8) { (writer) throws(OSTDError) in try writer.writeVal(UInt64(7)) }
                _ = try space.withReader(at: base, count: 8) { (reader) throws(OSTDError) in try reader.readVal(UInt64.self) }
            }
            #expect(weakSpace != nil)
        }
        #expect(weakSpace == nil)
    }

    /// A reader split off a scoped one holds its own reference on the space: it outlives the
    /// scope and the caller's reference, and still reads.
    @Test func aHandleSplitOffAScopedOneKeepsTheSpace() throws {
        let machine = makeMachine()
        weak var weakSpace: VmSpace?
        var front: VmReader<Fallible>
        do {
            let space = try makeSpace(machine, [userRW])
            weakSpace = space
            try poke(space, base, pattern(16))
            front = try space.withReader(at: base, count: 16) { (reader) throws(OSTDError) in reader.split(8) }
        }
        #expect(weakSpace != nil)
        let (result, bytes, _) = copyOut(&front, count: 8)
        #expect(try result.get() == 8)
        #expect(bytes == Array(pattern(16)[..<8]))
        #expect(weakSpace?.ownerSnapshot.readers.count == 1)
        _ = consume front
        #expect(weakSpace == nil)
    }

    // MARK: Panics

    @Test func aScopedReaderMovedOutOfItsScopeTraps() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let machine = makeMachine()
            let space = try! makeSpace(machine, [userRW])
            var other = try! space.createReader(base, 8)
            try! space.withReader(at: base + 8, count: 8) { (reader) throws(OSTDError) in swap(&reader, &other) }
        }
        #expect(stderrContains(result, "a scoped reader or writer was moved out of its withReader / withWriter scope"))
    }

    /// Two scoped writers trading places: the inner scope finds the outer's writer in its
    /// parameter.
    @Test func scopedWritersTradingPlacesTrap() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let machine = makeMachine()
            let space = try! makeSpace(machine, [userRW])
            try! space.withWriter(at: base, count: 8) { (outer) throws(OSTDError) in
                try space.withWriter(at: base + 8, count: 8) { (inner) throws(OSTDError) in swap(&outer, &inner) }
            }
        }
        #expect(stderrContains(result, "a scoped reader or writer was moved out of its withReader / withWriter scope"))
    }
}

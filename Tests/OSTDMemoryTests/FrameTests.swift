// Frames: allocation, clone, drop, conversions, raw hand-offs and the reference-count states.
// Ported from OSTD `frame/test.rs` (names in comments) plus the state-machine edges.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost

@Suite struct FrameTests {
    // OSTD: frame::frame_allocation
    @Test func frameAllocation() throws {
        let machine = makeMachine()
        let frame = try FrameAllocOptions().allocFrameWith(MockFrameMeta(value: 42), in: machine)
        #expect(frame.meta.value == 42)
        #expect(frame.referenceCount == 1)
        #expect(frame.size == pageSize)
        #expect(frame.mapLevel == 1)
        #expect(machine.metaSlot(of: frame.paddr).usage == .kernel)
    }

    // OSTD: frame::frame_clone
    @Test func frameClone() throws {
        let machine = makeMachine()
        let frame = try FrameAllocOptions().allocFrameWith(MockFrameMeta(value: 42), in: machine)
        let clone = frame.clone()
        #expect(clone.paddr == frame.paddr)
        #expect(frame.referenceCount == 2)
        #expect(clone.referenceCount == 2)
        #expect(clone.meta.value == 42)
    }

    // OSTD: frame::frame_drop (the same frame comes back: the allocator is LIFO)
    @Test(arguments: [false, true]) func frameDropReallocatesSameFrame(bound: Bool) throws {
        let machine = makeMachine()
        func run() throws(FrameError) {
            let frame = try FrameAllocOptions().allocFrameWith(MockFrameMeta(value: 42), in: machine)
            let paddr = frame.paddr
            _ = consume frame
            #expect(machine.metaSlot(of: paddr).isFree)
            let again = try FrameAllocOptions().allocFrameWith(MockFrameMeta(value: 7), in: machine)
            #expect(again.paddr == paddr)
            #expect(again.referenceCount == 1)
        }
        if bound { try machine.withCpu(0) { () throws(FrameError) in try run() } } else { try run() }
        #expect(machine.outstandingFrames == 0)
    }

    // OSTD: frame::frame_to_uframe
    @Test func frameToUFrame() throws {
        let machine = makeMachine()
        let frame = try FrameAllocOptions().allocFrameWith(MockUFrameMeta(value: 42), in: machine)
        let paddr = frame.paddr
        let uframe = UFrame(frame)
        #expect(uframe.paddr == paddr)
        #expect(uframe.isUntyped == true)
        #expect(uframe.referenceCount == 1)
    }

    // OSTD: frame::frame_conversions
    @Test func frameConversions() throws {
        let machine = makeMachine()
        let frame = try FrameAllocOptions().allocFrameWith(MockFrameMeta(value: 42), in: machine)
        let erased = AnyFrame(frame)
        #expect(erased.isUntyped == false)
        guard let back = Frame<MockFrameMeta>.tryFrom(erased).get() else {
            Issue.record("an erased frame did not convert back to its own type")
            return
        }
        #expect(back.meta.value == 42)
        // The wrong type, or untyped, is refused and the handle comes back intact.
        switch Frame<MockUFrameMeta>.tryFrom(AnyFrame(back)) {
        case .converted: Issue.record("converted to the wrong metadata type")
        case .rejected(let original):
            #expect(original.referenceCount == 1)
            let converted = UFrame.tryFrom(original).get() != nil
            #expect(converted == false)
        }
        #expect(machine.cleanInv())
    }

    @Test func untypedFrameBytesRoundTrip() throws {
        let machine = makeMachine()
        let frame = UFrame(try FrameAllocOptions().allocFrame(in: machine))
        let data: [UInt8] = [1, 2, 3, 4, 5]
        try write(data, to: frame, at: pageSize - 5)
        #expect(try read(5, from: frame, at: pageSize - 5) == data)
        #expect(throws: OSTDError.invalidArgs("bytes 4092 ..< 4097 are outside the object's 4096 bytes")) {
            try write(data, to: frame, at: pageSize - 4)
        }
    }

    @Test func zeroedAllocationClearsOldContents() throws {
        let machine = makeMachine()
        try machine.withCpu(0) { () throws(FrameError) in
            let frame = try FrameAllocOptions().allocFrame(in: machine)
            machine.pointer(to: frame.paddr).initializeMemory(as: UInt8.self, repeating: 0xAB, count: pageSize)
            let paddr = frame.paddr
            _ = consume frame
            let dirty = try FrameAllocOptions().zeroed(false).allocFrame(in: machine)
            #expect(dirty.paddr == paddr)
            #expect(machine.pointer(to: paddr).load(as: UInt8.self) == 0xAB)
            _ = consume dirty
            let clean = try FrameAllocOptions().allocFrame(in: machine)
            #expect(clean.paddr == paddr)
            let bytes = UnsafeRawBufferPointer(start: machine.pointer(to: paddr), count: pageSize)
            #expect(bytes.allSatisfy { $0 == 0 })
        }
    }

    @Test func fromUnusedReportsEveryState() throws {
        let machine = makeMachine()
        let paddr = try takeUnusedFrame(from: machine)
        #expect(throws: GetFrameError.notAligned(Paddr(0x1001))) {
            _ = try Frame.fromUnused(Paddr(0x1001), meta: UntypedMeta(), in: machine)
        }
        let beyond = Paddr(UInt64(machine.memorySize))
        #expect(throws: GetFrameError.outOfBound(beyond)) { _ = try Frame.fromUnused(beyond, meta: UntypedMeta(), in: machine) }
        #expect(throws: GetFrameError.inUse(Paddr(0))) { _ = try Frame.fromUnused(Paddr(0), meta: UntypedMeta(), in: machine) }
        let frame = try Frame.fromUnused(paddr, meta: MockFrameMeta(value: 1), in: machine)
        #expect(throws: GetFrameError.inUse(paddr)) { _ = try Frame.fromUnused(paddr, meta: UntypedMeta(), in: machine) }
        guard let unique = UniqueFrame.tryFrom(frame).get() else {
            Issue.record("a frame with one reference did not become unique")
            return
        }
        #expect(throws: GetFrameError.unique(paddr)) { _ = try AnyFrame.fromInUse(paddr, in: machine) }
        unique.resetAsUnused()
        #expect(throws: GetFrameError.unused(paddr)) { _ = try AnyFrame.fromInUse(paddr, in: machine) }
        // Claimed and dropped, the frame goes back to the allocator it was taken from.
        _ = try UniqueFrame.fromUnused(paddr, meta: MockFrameMeta(value: 2), in: machine)
        #expect(machine.outstandingFrames == 0)
        #expect(machine.cleanInv())
    }

    @Test func fromInUseAddsAReference() throws {
        let machine = makeMachine()
        let frame = try FrameAllocOptions().allocFrame(in: machine)
        let other = try AnyFrame.fromInUse(frame.paddr, in: machine)
        #expect(frame.referenceCount == 2)
        _ = consume other
        #expect(frame.referenceCount == 1)
    }

    @Test func intoRawAndFromRawKeepTheReference() throws {
        let machine = makeMachine()
        let frame = try FrameAllocOptions().allocFrame(in: machine)
        let paddr = frame.intoRaw()
        #expect(machine.metaSlot(of: paddr).referenceCount == 1)
        #expect(machine.outstandingFrames == 1)
        // The seeds' ledger: `into_raw` redeems the handle's obligation.
        #expect(machine.metaRegionOwners().frameObligations.allSatisfy { $0 == 0 })
        let restored = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine)
        #expect(restored.referenceCount == 1)
        _ = consume restored
        #expect(machine.outstandingFrames == 0)
        #expect(machine.cleanInv())
    }

    @Test func uniqueFrameLifecycle() throws {
        let machine = makeMachine()
        let frame = try FrameAllocOptions().allocFrameWith(MockFrameMeta(value: 1), in: machine)
        let paddr = frame.paddr
        let second = frame.clone()
        // Two references: not convertible, and both handles survive the attempt.
        guard case .rejected(let frame) = UniqueFrame.tryFrom(frame) else {
            Issue.record("converted a shared frame with two references")
            return
        }
        _ = consume second
        guard var unique = UniqueFrame.tryFrom(frame).get() else {
            Issue.record("a frame with one reference did not become unique")
            return
        }
        #expect(unique.referenceCount == MetaSlot.refCountUnique)
        unique.meta.value = 99
        let repurposed = unique.repurpose(MockUFrameMeta(value: 5))
        #expect(machine.metaSlot(of: paddr).typeTag == MockUFrameMeta.typeTag)
        let shared = repurposed.intoShared()
        #expect(shared.referenceCount == 1)
        #expect(shared.meta.value == 5)
        _ = consume shared
        #expect(machine.metaSlot(of: paddr).isFree)
        #expect(machine.cleanInv())
    }

    @Test func uniqueFromUnusedAndResetAsUnused() throws {
        let machine = makeMachine()
        let paddr = try takeUnusedFrame(from: machine)
        let slot = machine.metaSlot(of: paddr)
        let unique = try UniqueFrame.fromUnused(paddr, meta: MockFrameMeta(value: 3), in: machine)
        #expect(unique.meta.value == 3)
        unique.resetAsUnused()
        #expect(slot.status == .unused)
        // Not returned to the allocator: the caller now owns the unused frame.
        #expect(machine.outstandingFrames == 1)
        machine.context.deallocRange(Int(paddr.rawValue >> 12), count: 1)
        #expect(machine.outstandingFrames == 0)
    }

    @Test func frameOutlivesItsMachineObject() throws {
        var machine: Machine? = makeMachine()
        let frame = try FrameAllocOptions().allocFrame(in: machine!)
        let clone = frame.clone()
        machine = nil
        // The context stays until the last frame comes back; these drops must be safe.
        #expect(frame.referenceCount == 2)
        _ = consume clone
        _ = consume frame
    }

    @Test func doubleFreeIsCaughtWithTheAddress() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let machine = try! Machine.host(memory: 16 << 20)
            let frame = try! FrameAllocOptions().allocFrame(in: machine)
            let paddr = frame.intoRaw()
            _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine)
            _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine)
        }
        #expect(stderrContains(result, "dropped with impossible reference count"))
        #expect(stderrContains(result, "(double free?)"))
        #expect(stderrContains(result, "frame 0x"))
    }

    @Test func cloneOfAFreedFrameIsCaught() async {
        await #expect(processExitsWith: .failure) {
            let machine = try! Machine.host(memory: 16 << 20)
            let paddr = try! FrameAllocOptions().allocFrame(in: machine).intoRaw()
            let slot = machine.metaSlot(of: paddr)
            _ = slot.decRefCount(paddr: paddr)
            slot.storeUnused()
            slot.incRefCount(paddr: paddr)
        }
    }

    @Test func referenceCountStatesDecode() {
        #expect(MetaSlotStatus(refCount: .max) == .unused)
        #expect(MetaSlotStatus(refCount: .max - 1) == .unique)
        #expect(MetaSlotStatus(refCount: 0) == .busy)
        #expect(MetaSlotStatus(refCount: 7) == .shared(7))
        #expect(MetaSlotStatus(refCount: UInt64(Int64.max)) == .shared(UInt64(Int64.max)))
        #expect(MetaSlotStatus(refCount: UInt64(Int64.max) + 1) == .overflow(UInt64(Int64.max) + 1))
    }

    @Test func referenceCountOverflowAborts() async {
        await #expect(processExitsWith: .failure) {
            let machine = try! Machine.host(memory: 16 << 20)
            let frame = try! FrameAllocOptions().allocFrame(in: machine)
            machine.metaSlot(of: frame.paddr).refCountWord.pointee.store(~MetaSlot.refCountMax, ordering: .relaxed)
            _ = frame.clone()
        }
    }
}

/// Takes a frame out of the allocator and leaves it `UNUSED`, owned by the caller — what an
/// allocator implementation does before `fromUnused` (OSTD `reset_as_unused`).
func takeUnusedFrame(from machine: Machine) throws -> Paddr {
    let paddr = try FrameAllocOptions().allocFrame(in: machine).intoRaw()
    let slot = machine.metaSlot(of: paddr)
    #expect(slot.decRefCount(paddr: paddr))
    slot.storeUnused()
    return paddr
}

/// Writes `bytes` into an untyped frame.
func write(_ bytes: [UInt8], to frame: borrowing UFrame, at offset: Int) throws(OSTDError) {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
    defer { buffer.deallocate() }
    buffer.copyBytes(from: bytes)
    try frame.writeBytes(at: offset, from: UnsafeRawBufferPointer(buffer))
}

/// Reads `count` bytes from an untyped frame.
func read(_ count: Int, from frame: borrowing UFrame, at offset: Int) throws(OSTDError) -> [UInt8] {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 1)
    defer { buffer.deallocate() }
    try frame.readBytes(at: offset, into: buffer)
    return Array(buffer)
}

/// Frames never written are known to hold zeros and are not zero-filled again; frames written
/// are, whatever path returned them (single frames, segments, page-table nodes).
@Test func zeroFillSkipsOnlyNeverUsedFrames() throws {
    let machine = makeMachine()
    let dirty = try FrameAllocOptions().zeroed(false).allocSegment(8, in: machine)
    let range = dirty.range
    machine.pointer(to: range.lowerBound, count: 8 * pageSize).initializeMemory(as: UInt8.self, repeating: 0xa5, count: 8 * pageSize)
    _ = consume dirty
    // The freed frames read as free (the written flag is not part of the tag).
    #expect(machine.metaSlot(of: range.lowerBound).isFree)
    #expect(machine.metaSlot(of: range.lowerBound + pageSize).typeTag.word == 0)
    #expect(machine.cleanInv())
    // Allocating all memory hands every frame out zeroed, the dirty ones included.
    var held: [Paddr] = []
    while let frame = try? FrameAllocOptions().allocFrame(in: machine) {
        let bytes = UnsafeRawBufferPointer(start: machine.pointer(to: frame.paddr), count: pageSize)
        #expect(bytes.allSatisfy { $0 == 0 }, "frame \(frame.paddr) is not zero")
        held.append(frame.intoRaw())
    }
    #expect(held.contains(range.lowerBound))
    for paddr in held { _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine) }
    // A segment over the dirty frames is zeroed too.
    var written = try FrameAllocOptions().zeroed(false).allocSegment(4, in: machine)
    let again = written.range
    machine.pointer(to: again.lowerBound, count: 4 * pageSize).initializeMemory(as: UInt8.self, repeating: 0x5a, count: 4 * pageSize)
    _ = consume written
    written = try FrameAllocOptions().allocSegment(4, in: machine)
    let bytes = UnsafeRawBufferPointer(start: machine.pointer(to: written.paddr), count: 4 * pageSize)
    #expect(bytes.allSatisfy { $0 == 0 })
}

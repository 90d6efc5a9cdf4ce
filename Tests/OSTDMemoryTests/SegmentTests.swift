// Segments: creation, zeroing, split, slice, iteration, conversions and their panics.
// Ported from OSTD `frame/test.rs` (`segment::*`, names in comments).

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost

@Suite struct SegmentTests {
    // OSTD: segment::segment_creation
    @Test func segmentCreation() throws {
        let machine = makeMachine()
        let segment = try FrameAllocOptions().allocSegment(512, in: machine)
        #expect(segment.size == 512 * pageSize)
        #expect(segment.endPaddr == segment.paddr + 512 * pageSize)
        // A power-of-two segment is aligned to its own size.
        #expect(segment.paddr.isAligned(to: 512 * pageSize))
    }

    // OSTD: segment::max_segment_creation (should_panic)
    @Test func maxSegmentCreationPanics() async {
        await #expect(processExitsWith: .failure) {
            let machine = try! Machine.host(memory: 16 << 20)
            _ = try? FrameAllocOptions().allocSegment(Int.max, in: machine)
        }
    }

    // OSTD: segment::empty_segment_creation
    @Test func emptySegmentCreation() {
        let machine = makeMachine()
        #expect(throws: FrameError.invalidArgs("a segment of zero frames")) {
            _ = try FrameAllocOptions().allocSegment(0, in: machine)
        }
    }

    // OSTD: segment::zeroed_segment_creation
    @Test func zeroedSegmentCreation() throws {
        let machine = makeMachine()
        let dirty = try FrameAllocOptions().zeroed(false).allocSegment(4, in: machine)
        machine.pointer(to: dirty.paddr, count: dirty.size).initializeMemory(as: UInt8.self, repeating: 0xCD, count: dirty.size)
        let paddr = dirty.paddr
        _ = consume dirty
        let segment = try FrameAllocOptions().allocSegment(4, in: machine)
        #expect(segment.paddr == paddr)
        let bytes = UnsafeRawBufferPointer(start: machine.pointer(to: segment.paddr), count: segment.size)
        #expect(bytes.allSatisfy { $0 == 0 })
    }

    // OSTD: segment::segment_split
    @Test func segmentSplit() throws {
        let machine = makeMachine()
        var head = try FrameAllocOptions().allocSegment(2, in: machine)
        let start = head.paddr
        let tail = head.split(at: pageSize)
        #expect(head.paddr == start && head.size == pageSize)
        #expect(tail.paddr == start + pageSize && tail.size == pageSize)
        #expect(machine.metaSlot(of: start).referenceCount == 1)
    }

    // OSTD: segment::segment_slice
    @Test func segmentSlice() throws {
        let machine = makeMachine()
        let segment = try FrameAllocOptions().allocSegment(4, in: machine)
        let slice = segment.slice(pageSize..<(2 * pageSize))
        #expect(slice.paddr == segment.paddr + pageSize)
        #expect(slice.size == pageSize)
        #expect(machine.metaSlot(of: slice.paddr).referenceCount == 2)
        #expect(machine.metaSlot(of: segment.paddr).referenceCount == 1)
    }

    // OSTD: segment::segment_iteration
    @Test func segmentIteration() throws {
        let machine = makeMachine()
        var segment = try FrameAllocOptions().allocSegmentWith(3, in: machine) { MockFrameMeta(value: UInt32($0.rawValue >> 12)) }
        var count = 0
        while let frame = segment.next() {
            #expect(frame.meta.value == UInt32(frame.paddr.rawValue >> 12))
            #expect(frame.referenceCount == 1)
            count += 1
        }
        #expect(count == 3)
        #expect(machine.outstandingFrames == 0)
    }

    // OSTD: segment::invalid_segment_split (should_panic)
    @Test func invalidSegmentSplitPanics() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let machine = try! Machine.host(memory: 16 << 20)
            var segment = try! FrameAllocOptions().allocSegment(2, in: machine)
            _ = segment.split(at: 2 * pageSize)
        }
        #expect(stderrContains(result, "segment virtual address out-of-bound for splitting"))
    }

    @Test func misalignedSegmentSplitPanics() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let machine = try! Machine.host(memory: 16 << 20)
            var segment = try! FrameAllocOptions().allocSegment(2, in: machine)
            _ = segment.split(at: 100)
        }
        #expect(stderrContains(result, "segment virtual address not aligned for splitting"))
    }

    // OSTD: segment::segment_slice_out_of_bounds (should_panic)
    @Test func segmentSliceOutOfBoundsPanics() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let machine = try! Machine.host(memory: 16 << 20)
            let segment = try! FrameAllocOptions().allocSegment(2, in: machine)
            _ = segment.slice(pageSize..<(3 * pageSize))
        }
        #expect(stderrContains(result, "segment virtual address out-of-bound for slicing"))
    }

    @Test func misalignedSegmentSlicePanics() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let machine = try! Machine.host(memory: 16 << 20)
            let segment = try! FrameAllocOptions().allocSegment(2, in: machine)
            _ = segment.slice(1..<pageSize)
        }
        #expect(stderrContains(result, "segment virtual address not aligned for slicing"))
    }

    // OSTD: segment::segment_to_usegment / segment_to_segment / frame_to_segment
    @Test func segmentConversions() throws {
        let machine = makeMachine()
        let untyped = try FrameAllocOptions().allocSegmentWith(2, in: machine) { _ in MockUFrameMeta(value: 1) }
        let paddr = untyped.paddr
        let usegment = USegment(untyped)
        #expect(usegment.paddr == paddr && usegment.count == 2)
        let typed = try FrameAllocOptions().allocSegmentWith(2, in: machine) { _ in MockFrameMeta(value: 2) }
        let erased = Segment<DynFrameMeta>(typed)
        guard let back = Segment<MockFrameMeta>.tryFrom(erased).get() else {
            Issue.record("an erased segment did not convert back")
            return
        }
        #expect(back.count == 2)
        let frame = try FrameAllocOptions().allocFrame(in: machine)
        let framePaddr = frame.paddr
        let single = Segment(frame)
        #expect(single.paddr == framePaddr && single.size == pageSize)
        #expect(machine.metaSlot(of: framePaddr).referenceCount == 1)
    }

    // OSTD: segment::segment_drop (the same frames come back)
    @Test func segmentDropReallocatesSameFrames() throws {
        let machine = makeMachine()
        let segment = try FrameAllocOptions().allocSegment(8, in: machine)
        let paddr = segment.paddr
        _ = consume segment
        #expect(machine.outstandingFrames == 0)
        let again = try FrameAllocOptions().allocSegment(8, in: machine)
        #expect(again.paddr == paddr)
    }

    @Test func segmentFromUnusedErrorsAndPartialFailure() throws {
        let machine = makeMachine()
        #expect(throws: GetFrameError.notAligned(Paddr(0x10001))) {
            _ = try Segment.fromUnused(Paddr(0x10001)..<Paddr(0x12000), in: machine) { _ in UntypedMeta() }
        }
        let end = Paddr(UInt64(machine.memorySize) + 0x1000)
        #expect(throws: GetFrameError.outOfBound(end)) {
            _ = try Segment.fromUnused(Paddr(0x10000)..<end, in: machine) { _ in UntypedMeta() }
        }
        // Two unused frames followed by one in use: the claim fails at the third and the two
        // frames claimed so far are dropped again — back to the allocator, nothing leaked.
        let first = try takeUnusedFrame(from: machine)
        let second = try takeUnusedFrame(from: machine)
        #expect(second == first + pageSize)
        let blocker = try FrameAllocOptions().allocFrame(in: machine)
        #expect(blocker.paddr == second + pageSize)
        #expect(throws: GetFrameError.inUse(blocker.paddr)) {
            _ = try Segment.fromUnused(first..<(first + 3 * pageSize), in: machine) { _ in UntypedMeta() }
        }
        _ = consume blocker
        #expect(machine.outstandingFrames == 0)
        #expect(machine.cleanInv())
    }

    @Test func emptySegmentFromUnusedPanics() async {
        await #expect(processExitsWith: .failure) {
            let machine = try! Machine.host(memory: 16 << 20)
            _ = try? Segment.fromUnused(Paddr(0x10000)..<Paddr(0x10000), in: machine) { _ in UntypedMeta() }
        }
    }

    @Test func segmentBytesAndClone() throws {
        let machine = makeMachine()
        let segment = try FrameAllocOptions().allocSegment(2, in: machine)
        let bytes: [UInt8] = Array(0..<16)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 1)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: bytes)
        try segment.writeBytes(at: pageSize - 8, from: UnsafeRawBufferPointer(buffer))
        let clone = segment.clone()
        #expect(machine.metaSlot(of: segment.paddr + pageSize).referenceCount == 2)
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        try clone.readBytes(at: pageSize - 8, into: buffer)
        #expect(Array(buffer) == bytes)
        #expect(throws: OSTDError.self) { try clone.readBytes(at: 2 * pageSize - 8, into: buffer) }
    }
}

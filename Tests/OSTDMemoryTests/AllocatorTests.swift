// The buddy allocator and the CPU caches: chunk arithmetic, splitting, coalescing, alignment,
// out-of-memory, large machines. Ported from OSTD's frame-allocator tests (names in comments).

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost

@Suite struct ChunkTests {
    // frame-allocator chunk.rs: greater_order_of_works
    @Test func greaterOrderOf() {
        #expect(OSTDMemory.greaterOrderOf(frames: 1) == 0)
        #expect(OSTDMemory.greaterOrderOf(frames: 2) == 1)
        #expect(OSTDMemory.greaterOrderOf(frames: 3) == 2)
        #expect(OSTDMemory.greaterOrderOf(frames: 4) == 2)
        #expect(OSTDMemory.greaterOrderOf(frames: 5) == 3)
        #expect(OSTDMemory.greaterOrderOf(frames: 1 << 18) == 18)
    }

    // frame-allocator chunk.rs: lesser_order_of_works
    @Test func lesserOrderOf() {
        #expect(OSTDMemory.lesserOrderOf(frames: 1) == 0)
        #expect(OSTDMemory.lesserOrderOf(frames: 3) == 1)
        #expect(OSTDMemory.lesserOrderOf(frames: 4) == 2)
        #expect(OSTDMemory.lesserOrderOf(frames: 7) == 2)
        #expect(OSTDMemory.lesserOrderOf(frames: (1 << 18) + 1) == 18)
    }

    // frame-allocator chunk.rs: max_order_from_works
    @Test func maxOrderFrom() {
        #expect(OSTDMemory.maxOrderFrom(index: 1) == 0)
        #expect(OSTDMemory.maxOrderFrom(index: 6) == 1)
        #expect(OSTDMemory.maxOrderFrom(index: 8) == 3)
        #expect(OSTDMemory.maxOrderFrom(index: 1 << 20) == 20)
        #expect(OSTDMemory.maxOrderFrom(index: 0) == BuddySet.maxOrder)
    }

    // frame-allocator chunk.rs: split_to_chunks_works
    @Test func splitToChunks() {
        let chunks = ChunkSplitter(start: 6, count: 32).map { [$0.index, $0.order] }
        #expect(chunks == [[6, 1], [8, 3], [16, 4], [32, 2], [36, 1]])
        #expect(ChunkSplitter(start: 0, count: 0).map { $0.index }.isEmpty)
        #expect(ChunkSplitter(start: 3, count: 1).map { [$0.index, $0.order] } == [[3, 0]])
    }
}

@Suite struct BuddySetTests {
    /// A buddy set over `frames` zero-filled slots.
    func withBuddySet(frames: Int, _ body: (inout BuddySet) -> Void) {
        let slots = UnsafeMutableRawPointer.allocate(byteCount: frames * MetaSlot.size, alignment: MetaSlot.size)
        slots.initializeMemory(as: UInt8.self, repeating: 0, count: frames * MetaSlot.size)
        defer { slots.deallocate() }
        var set = BuddySet(metaBase: slots, frameCount: frames)
        body(&set)
    }

    // frame-allocator set.rs: buddy_set_insert_alloc
    @Test func insertAllocAndCoalesce() {
        withBuddySet(frames: 16) { set in
            set.free(range: 0, count: 16)
            #expect(set.freeFrames == 16 && set.chunkCount(order: 4) == 1)
            let chunks = [0, 0, 1, 2, 3].map { order in (set.alloc(order: order)!, order) }
            #expect(set.freeFrames == 0)
            #expect(set.alloc(order: 0) == nil)
            for (index, order) in chunks {
                #expect(index % framesOfOrder(order) == 0, "chunk of order \(order) at \(index) is misaligned")
            }
            let covered = Set(chunks.flatMap { index, order in index..<(index + framesOfOrder(order)) })
            #expect(covered == Set(0..<16))
            for (index, order) in chunks { set.free(index, order: order) }
            #expect(set.freeFrames == 16)
            #expect(set.chunkCount(order: 4) == 1)
            #expect((0..<4).allSatisfy { set.chunkCount(order: $0) == 0 })
        }
    }

    @Test func buddiesOfDifferentOrdersDoNotMerge() {
        withBuddySet(frames: 8) { set in
            set.free(range: 0, count: 8)
            let a = set.alloc(order: 1)!   // frames 0-1
            let b = set.alloc(order: 0)!   // frame 2
            set.free(a, order: 1)
            #expect(set.chunkCount(order: 1) == 1)   // 0-1 cannot merge with 2-3 while 2 is taken
            set.free(b, order: 0)
            #expect(set.chunkCount(order: 3) == 1)
        }
    }

    @Test func freeingAFreeChunkAgainIsCaught() async {
        await #expect(processExitsWith: .failure) {
            let slots = UnsafeMutableRawPointer.allocate(byteCount: 4 * 64, alignment: 64)
            slots.initializeMemory(as: UInt8.self, repeating: 0, count: 4 * 64)
            var set = BuddySet(metaBase: slots, frameCount: 4)
            set.free(range: 0, count: 4)
            set.free(0, order: 2)
        }
    }
}

@Suite struct FrameAllocatorTests {
    // OSTD frame/allocator.rs: test_alloc_dealloc
    @Test func allocDealloc() throws {
        let machine = makeMachine()
        for _ in 0..<10 {
            var frames: [Paddr] = []
            var segments: [Range<Paddr>] = []
            for _ in 0..<10 {
                frames.append(try FrameAllocOptions().allocFrame(in: machine).intoRaw())
                segments.append(try FrameAllocOptions().allocSegment(10, in: machine).intoRaw())
            }
            for paddr in frames { _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine) }
            for range in segments { _ = unsafe Segment<UntypedMeta>.fromRaw(range, in: machine) }
        }
        #expect(machine.outstandingFrames == 0)
    }

    // frame-allocator: frame_allocator_alloc_layout_match
    @Test func allocationsAreAlignedToTheirPowerOfTwo() throws {
        let machine = makeMachine()
        for nframes in [1, 2, 3, 4, 8, 16] {
            let segment = try FrameAllocOptions().allocSegment(nframes, in: machine)
            let alignment = framesOfOrder(OSTDMemory.greaterOrderOf(frames: nframes)) * pageSize
            #expect(segment.paddr.isAligned(to: alignment), "\(nframes) frames at \(segment.paddr)")
        }
    }

    @Test func gigabyteBlockOn2GiBMachine() throws {
        let machine = try Machine.host(memory: 2 << 30)
        let segment = try FrameAllocOptions().zeroed(false).allocSegment(1 << 18, in: machine)
        #expect(segment.size == 1 << 30)
        #expect(segment.paddr.isAligned(to: 1 << 30))
        _ = consume segment
        #expect(machine.outstandingFrames == 0)
    }

    @Test func sixteenGiBMachineBootsWithoutTouchingItsMemory() throws {
        let machine = try Machine.host(memory: 16 << 30)
        #expect(machine.frameCount == 4 << 20)
        #expect(machine.metadataRange == Paddr(0x1000)..<Paddr(0x1000 + 256 << 20))
        #expect(machine.freeFrames == machine.frameCount - 1 - (256 << 20) / pageSize)
        let frame = try FrameAllocOptions().allocFrame(in: machine)
        #expect(frame.referenceCount == 1)
    }

    @Test func outOfMemoryIsAnErrorAndLosesNothing() throws {
        let machine = try Machine.host(memory: 1 << 20)   // 256 frames, 4 of them metadata
        let free = machine.freeFrames
        #expect(throws: FrameError.outOfMemory(frames: 512)) { _ = try FrameAllocOptions().allocSegment(512, in: machine) }
        #expect(machine.freeFrames == free)
        var held: [Paddr] = []
        while let paddr = try? FrameAllocOptions().allocFrame(in: machine).intoRaw() { held.append(paddr) }
        #expect(held.count == free)
        #expect(throws: FrameError.outOfMemory(frames: 1)) { _ = try FrameAllocOptions().allocFrame(in: machine) }
        #expect(Set(held).count == held.count)
        for paddr in held { _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine) }
        #expect(machine.outstandingFrames == 0)
    }

    @Test func reservedFramesAreNeverHandedOut() throws {
        let machine = try Machine.host(memory: 1 << 20)
        let metaEnd = machine.metadataRange.upperBound
        while let paddr = try? FrameAllocOptions().zeroed(false).allocFrame(in: machine).intoRaw() {
            #expect(paddr >= metaEnd)
        }
        #expect(machine.metaSlot(of: Paddr(0)).usage == .reserved)
        #expect(machine.metaSlot(of: Paddr(0x1000)).usage == .meta)
    }

    @Test func machineRejectsBadGeometry() {
        let region = PhysicalMemoryRegion(base: UnsafeMutableRawPointer(bitPattern: 0x1000)!, size: 4096 * 2, release: nil)
        #expect(throws: FrameError.self) { try Machine(memory: region) }
        #expect(throws: FrameError.self) { try Machine.host(memory: 1 << 20, cpus: 0) }
        #expect(throws: FrameError.self) { try Machine.host(memory: 1 << 20, cpus: 65) }
        #expect(throws: FrameError.self) { try Machine.host(memory: 4097) }
    }

    @Test func cpuCacheServesAndFullyCoalescesAfterFlush() throws {
        let machine = try Machine.host(memory: 16 << 20, cpus: 2)
        let chunksBefore = machine.freeChunksByOrder
        try machine.withCpu(1) { () throws(FrameError) in
            #expect(machine.currentCpu == 1)
            var held: [Paddr] = []
            for _ in 0..<200 { held.append(try FrameAllocOptions().zeroed(false).allocFrame(in: machine).intoRaw()) }
            #expect(Set(held).count == 200)
            for paddr in held { _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine) }
        }
        #expect(machine.currentCpu == nil)
        #expect(machine.outstandingFrames == 0)
        machine.flushCpuCaches()
        #expect(machine.freeChunksByOrder == chunksBefore)
    }

    @Test func nestedBindingOfTheSameCpuIsAllowed() {
        let machine = try! Machine.host(memory: 16 << 20, cpus: 2)
        machine.withCpu(0) {
            machine.withCpu(0) { #expect(machine.currentCpu == 0) }
            machine.withCpu(1) { #expect(machine.currentCpu == 1) }
            #expect(machine.currentCpu == 0)
        }
    }

    @Test func bindingAMissingCpuPanics() async {
        await #expect(processExitsWith: .failure) {
            let machine = try! Machine.host(memory: 16 << 20, cpus: 2)
            machine.withCpu(2) {}
        }
    }

    @Test func threadsOnDifferentCpusShareTheMachine() async throws {
        let machine = try Machine.host(memory: 64 << 20, cpus: 2)
        await withTaskGroup(of: Void.self) { group in
            for cpu in 0..<2 {
                group.addTask {
                    machine.withCpu(cpu) {
                        var held: [Paddr] = []
                        for round in 0..<2000 {
                            held.append(try! FrameAllocOptions().zeroed(false).allocFrame(in: machine).intoRaw())
                            if round % 3 == 0, let paddr = held.popLast() {
                                _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine)
                            }
                        }
                        for paddr in held { _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine) }
                    }
                }
            }
            // A third, unbound task takes the locked path at the same time.
            group.addTask {
                for _ in 0..<2000 { _ = try! FrameAllocOptions().zeroed(false).allocFrame(in: machine) }
            }
        }
        #expect(machine.outstandingFrames == 0)
        #expect(machine.cleanInv())
    }
}

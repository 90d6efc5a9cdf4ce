// Frames in a CPU's cache are held by the allocator (count UNIQUE, the cached-frame tag), not
// UNUSED, so that no claim by address can take them and the cache's CPU claims them with plain
// stores (MetaSlot.swift's file comment). These tests check the refusals, that nothing changes on
// them, the specification on an audited machine whose frames go through a cache, and that a frame
// claimed by address while it was free is still caught when the allocator hands it out.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost

@Suite struct CachedFrameTests {
    @Test("a frame in a CPU's cache is refused by every claim by address, which changes nothing")
    func claimsByAddressRefuseACachedFrame() throws {
        let machine = try Machine.host(memory: 16 << 20, cpus: 1, audit: true)
        try machine.withCpu(0) { () throws in
            let frame = try FrameAllocOptions().allocFrame(in: machine)
            let freed = frame.paddr
            let refilled = freed + pageSize   // came with the same refill, never handed out
            _ = consume frame                 // back on top of the cache
            for cached in [freed, refilled] {
                let slot = machine.metaSlot(of: cached)
                let before = (slot.referenceCount, slot.typeTag, slot.inList)
                #expect(before.0 == MetaSlot.refCountUnique && slot.isFree && slot.typeTag == CachedFrame.tag)
                #expect(throws: GetFrameError.unique(cached)) { _ = try Frame.fromUnused(cached, meta: UntypedMeta(), in: machine) }
                #expect(throws: GetFrameError.unique(cached)) {
                    _ = try UniqueFrame.fromUnused(cached, meta: MockFrameMeta(value: 1), in: machine)
                }
                #expect(throws: GetFrameError.unique(cached)) {
                    _ = try Segment.fromUnused(cached..<(cached + pageSize), in: machine) { _ in UntypedMeta() }
                }
                #expect(throws: GetFrameError.unique(cached)) { _ = try AnyFrame.fromInUse(cached, in: machine) }
                #expect((slot.referenceCount, slot.typeTag, slot.inList) == before)
            }
            // Both are still cached, in their order: the one freed last comes out first.
            let first = try FrameAllocOptions().allocFrame(in: machine)
            let second = try FrameAllocOptions().allocFrame(in: machine)
            #expect(first.paddr == freed && second.paddr == refilled)
            #expect(first.referenceCount == 1 && second.typeTag == UntypedMeta.typeTag)
        }
        #expect(machine.outstandingFrames == 0)
        #expect(machine.cleanInv())
    }

    @Test("a flush returns the cached frames unused, coalesced, with no cached-frame tag left")
    func aFlushReturnsCachedFramesUnused() throws {
        let machine = try Machine.host(memory: 16 << 20, cpus: 1)
        let chunksBefore = machine.freeChunksByOrder
        try machine.withCpu(0) { () throws in
            var held: [Paddr] = []
            for _ in 0..<100 { held.append(try FrameAllocOptions().zeroed(false).allocFrame(in: machine).intoRaw()) }
            for paddr in held { _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine) }
        }
        let cachedTag = CachedFrame.tag
        let cached = (0..<machine.frameCount).count { machine.metaSlot(of: Paddr(UInt64($0) << 12)).typeTag == cachedTag }
        #expect(cached > 0)
        machine.flushCpuCaches()
        #expect((0..<machine.frameCount).allSatisfy { machine.metaSlot(of: Paddr(UInt64($0) << 12)).typeTag != cachedTag })
        #expect(machine.freeChunksByOrder == chunksBefore)
        #expect(machine.allocatorInvariantViolations() == [])
    }

    @Test("allocations and frees through a CPU's cache, and refused claims, satisfy the specification")
    func auditedFramesThroughTheCache() throws {
        let audited = try AuditedSpace()
        let machine = audited.machine
        try machine.withCpu(0) { () throws in
            var held: [Paddr] = []
            var random = SplitMix64(11)
            for _ in 0..<300 {
                if held.isEmpty || random.chance(60) {
                    held.append(try FrameAllocOptions().allocFrame(in: machine).intoRaw())
                } else {
                    let paddr = held.remove(at: random.below(held.count))
                    _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine)
                    #expect(throws: GetFrameError.unique(paddr)) { _ = try Frame.fromUnused(paddr, meta: UntypedMeta(), in: machine) }
                }
            }
            let unique = try UniqueFrame<MockFrameMeta>.fromUnused(try takeUnusedFrame(from: machine), meta: MockFrameMeta(value: 2), in: machine)
            _ = consume unique   // a unique frame's drop goes through the cache too
            try audited.mapPages(at: base, 40)
            var cursor = try audited.space.cursorMut(pages(base, 40))
            cursor.unmap(40 * pageSize)
            _ = consume cursor
            for paddr in held { _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine) }
        }
        #expect(audited.auditor.violations == [])
        #expect(audited.violatedPredicates().isEmpty)
        #expect(machine.cleanInv())
    }

    /// A frame inside a free chunk is `UNUSED`, as in OSTD, so a claim by address takes it; the
    /// allocator must not hand it out again when a refill moves the chunk into a CPU's cache.
    @Test func aFrameClaimedByAddressWhileFreeIsCaughtWhenARefillTakesIt() async {
        await #expect(processExitsWith: .failure) {
            let machine = try! Machine.host(memory: 16 << 20, cpus: 1)
            // Frame 513 lies inside the free 2 MiB chunk at frame 512 (not its head).
            let inside = Paddr(513 << 12)
            _ = try! Frame.fromUnused(inside, meta: UntypedMeta(), in: machine).intoRaw()
            // Small frames fill the first pageblock, then open the chunk at 512.
            machine.withCpu(0) {
                for _ in 0..<600 { _ = try! FrameAllocOptions().zeroed(false).allocFrame(in: machine).intoRaw() }
            }
        }
    }
}

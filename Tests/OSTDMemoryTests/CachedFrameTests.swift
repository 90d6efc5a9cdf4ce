// A frame freed into a CPU's cache is held by the allocator (count UNIQUE, the held-frame tag),
// not UNUSED, so that no claim by address can take it and the allocation claims it with plain
// stores (MetaSlot.swift's file comment); back in the buddy set it reads as OSTD's (a chunk's
// head, or UNUSED). These tests check the refusals, that nothing changes on them, the buddy set's
// states after a flush, the specification on an audited machine whose frames go through a
// cache, and that a frame claimed by address while it was free (UNUSED) is still caught when the
// allocator hands it out.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost

@Suite struct CachedFrameTests {
    /// Every claim by address of `paddr` is refused as `unique`, and the slot is left as it was.
    func expectEveryClaimRefused(_ paddr: Paddr, in machine: Machine) {
        let slot = machine.metaSlot(of: paddr)
        let before = (slot.referenceCount, slot.typeTag, slot.inList)
        #expect(before.0 == MetaSlot.refCountUnique && slot.isFree)
        #expect(throws: GetFrameError.unique(paddr)) { _ = try Frame.fromUnused(paddr, meta: UntypedMeta(), in: machine) }
        #expect(throws: GetFrameError.unique(paddr)) {
            _ = try UniqueFrame.fromUnused(paddr, meta: MockFrameMeta(value: 1), in: machine)
        }
        #expect(throws: GetFrameError.unique(paddr)) {
            _ = try Segment.fromUnused(paddr..<(paddr + pageSize), in: machine) { _ in UntypedMeta() }
        }
        #expect(throws: GetFrameError.unique(paddr)) { _ = try AnyFrame.fromInUse(paddr, in: machine) }
        #expect((slot.referenceCount, slot.typeTag, slot.inList) == before)
    }

    @Test("a frame in a CPU's cache is refused by every claim by address, which changes nothing")
    func claimsByAddressRefuseAHeldFrame() throws {
        let machine = try Machine.host(memory: 16 << 20, cpus: 1, audit: true)
        try machine.withCpu(0) { () throws in
            let frame = try FrameAllocOptions().allocFrame(in: machine)
            let cached = frame.paddr
            let fresh = cached + pageSize   // came with the same refill, never used since boot
            _ = consume frame               // back on top of the cache
            #expect(machine.metaSlot(of: cached).typeTag == HeldFrame.tag)
            expectEveryClaimRefused(cached, in: machine)
            // A frame a refill brought reads UNUSED, as in OSTD (the cache holds it all the same).
            #expect(machine.metaSlot(of: fresh).status == .unused)
            // Both are still cached, in their order: the one freed last comes out first.
            let first = try FrameAllocOptions().allocFrame(in: machine)
            let second = try FrameAllocOptions().allocFrame(in: machine)
            #expect(first.paddr == cached && second.paddr == fresh)
            #expect(first.referenceCount == 1 && second.typeTag == UntypedMeta.typeTag)
        }
        #expect(machine.outstandingFrames == 0)
        #expect(machine.cleanInv())
    }

    @Test("cached frames flushed to the buddy set coalesce into chunks that read as OSTD's: heads unique, the rest UNUSED")
    func aFlushLeavesTheBuddySetAsOSTDs() throws {
        let machine = try Machine.host(memory: 16 << 20, cpus: 1)
        let chunksBefore = machine.freeChunksByOrder
        var freed: [Paddr] = []
        try machine.withCpu(0) { () throws in
            for _ in 0..<100 { freed.append(try FrameAllocOptions().zeroed(false).allocFrame(in: machine).intoRaw()) }
            for paddr in freed { _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine) }
        }
        machine.flushCpuCaches()
        #expect(machine.freeChunksByOrder == chunksBefore)
        #expect(machine.allocatorInvariantViolations() == [])
        for paddr in freed {
            let slot = machine.metaSlot(of: paddr)
            let isHead = slot.status == .unique && slot.typeTag == FreeHead.tag && machine.freeListWord(ofFrame: Int(paddr.rawValue >> 12)) != 0
            #expect(isHead || (slot.status == .unused && slot.typeTag.word == 0), "\(paddr): \(slot.status), \(slot.typeTag)")
        }
        #expect(machine.cleanInv())
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

    /// A frame inside a free chunk that was never used is `UNUSED`, as in OSTD, so a claim by
    /// address takes it; the allocator must not hand it out again when a refill moves the chunk
    /// into a CPU's cache and the CPU allocates it.
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

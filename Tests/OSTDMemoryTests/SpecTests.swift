// The executable specification of `MetaRegionOwners` against live machines: the invariants hold
// in every state a frame passes through, single-slot operations touch a single slot, and
// `clean_inv` is exactly "no handle outstanding".

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost

@Suite struct SpecTests {
    @Test func invariantHoldsThroughTheFrameLifecycle() throws {
        let machine = makeMachine()
        #expect(machine.metaRegionOwners().inv())
        #expect(machine.cleanInv())
        let frame = try FrameAllocOptions().allocFrameWith(MockFrameMeta(value: 1), in: machine)
        let owners = machine.metaRegionOwners()
        #expect(owners.inv())
        #expect(!owners.cleanInv())
        #expect(owners.outstandingObligations().map(\.paddr) == [frame.paddr])
        guard let unique = UniqueFrame.tryFrom(frame).get() else {
            Issue.record("unique conversion failed")
            return
        }
        #expect(machine.metaRegionOwners().inv())
        let segment = try FrameAllocOptions().allocSegment(3, in: machine)
        let slice = segment.slice(0..<pageSize)
        let snapshot = machine.metaRegionOwners()
        #expect(snapshot.inv())
        #expect(snapshot.frameObligations[Int(segment.paddr.rawValue >> 12)] == 2)
        _ = consume unique
        _ = consume slice
        _ = consume segment
        #expect(machine.cleanInv())
    }

    @Test func cloneChangesOnlyItsOwnSlot() throws {
        let machine = makeMachine()
        let frame = try FrameAllocOptions().allocFrame(in: machine)
        let index = Int(frame.paddr.rawValue >> 12)
        let before = machine.metaRegionOwners()
        let clone = frame.clone()
        let after = machine.metaRegionOwners()
        #expect(before.slotOwnersAgreeExcept(after, index))
        #expect(after.refCount(index) == before.refCount(index) + 1)
        #expect(after.frameObligations[index] == 2)
        _ = consume clone
        #expect(machine.metaRegionOwners().slotOwnersAgreeExcept(before, index))
    }

    @Test func paddrRangePredicates() throws {
        let machine = makeMachine()
        let owners = machine.metaRegionOwners()
        let memoryEnd = Paddr(UInt64(machine.memorySize))
        #expect(owners.paddrRangeInRegion(Paddr(0)..<memoryEnd))
        #expect(!owners.paddrRangeInRegion(Paddr(0)..<(memoryEnd + pageSize)))
        #expect(owners.paddrRangeNotInRegion(memoryEnd..<(memoryEnd + 4 * pageSize)))
        #expect(!owners.paddrRangeNotInRegion(Paddr(0)..<Paddr(0x1000)))
        #expect(owners.paddrRangeNotMapped(Paddr(0)..<memoryEnd))
    }

    @Test func corruptedSlotBreaksTheInvariant() throws {
        let machine = makeMachine()
        let paddr = try takeUnusedFrame(from: machine)
        let slot = machine.metaSlot(of: paddr)
        slot.typeTagWord = UntypedMeta.typeTag.word   // unused, yet tagged: storage "initialised"
        let owners = machine.metaRegionOwners()
        #expect(!owners.inv())
        #expect(owners.firstInvViolation()?.index == Int(paddr.rawValue >> 12))
        slot.typeTagWord = 0
        slot.refCountWord.pointee.store(~(MetaSlot.refCountMax + 5), ordering: .relaxed)   // overflow state
        #expect(!machine.metaRegionOwners().inv())
        slot.refCountWord.pointee.store(~MetaSlot.refCountUnused, ordering: .relaxed)
        #expect(machine.metaRegionOwners().inv())
        machine.context.deallocRange(Int(paddr.rawValue >> 12), count: 1)
    }

    @Test func withoutAuditTheLedgerIsDerivedFromTheAllocator() throws {
        let machine = makeMachine(audit: false)
        #expect(!machine.isAuditing)
        #expect(machine.cleanInv())
        let paddr = try FrameAllocOptions().allocFrame(in: machine).intoRaw()
        // Stricter than the seed: a forgotten frame still counts as not returned.
        #expect(!machine.cleanInv())
        _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine)
        #expect(machine.cleanInv())
    }

    @Test func auditedRedeemingTwiceIsCaught() async {
        await #expect(processExitsWith: .failure) {
            let machine = try! Machine.host(memory: 16 << 20, audit: true)
            let frame = try! FrameAllocOptions().allocFrame(in: machine)
            let paddr = frame.paddr
            _ = frame.intoRaw()
            machine.context.ledger!.redeem(Int(paddr.rawValue >> 12))
        }
    }
}

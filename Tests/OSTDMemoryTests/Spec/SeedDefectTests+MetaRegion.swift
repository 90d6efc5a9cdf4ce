// Seed defects in `MetaRegionOwners` (seed 003): `sync_slot_perm` duplicating a linear
// permission (defect 7), and the file's documentation contradicting its invariant and itself
// (16). Slot permissions are modelled as tokens (`SeedPointsTo`), the ledger as a count per
// slot. The run time has no permission objects (every slot is always present: see
// Sources/OSTDSpec/MetaRegionOwners.swift); its counterpart of handing a slot back is the
// `Frame.intoRaw` / `Frame.fromRaw` pair, checked through `Machine.metaRegionOwners()`.

import Testing
import OSTDHost
@_spi(OSTDInternals) @testable import OSTDMemory

/// A `simple_pptr::PointsTo<MetaSlot>`: a linear permission, told apart by `id`.
struct SeedPointsTo: Hashable {
    var addr: UInt64
    var id: Int
}

/// 003:239-248 `sync_slot_perm`: no `requires`; "`final(self).slots == old(self).slots.insert(index,
/// *perm)`" with `perm: &PointsTo` borrowed, so the caller keeps it.
func seed_sync_slot_perm(_ slots: [Int: SeedPointsTo], _ index: Int, _ perm: SeedPointsTo) -> [Int: SeedPointsTo] {
    var after = slots
    after[index] = perm
    return after
}

/// The corrected contract: the permission is moved in (`tracked perm: PointsTo`), and only into
/// an empty slot of the region, at its own address: `requires !slots.contains_key(index),
/// index < max_meta_slots(), perm.addr() == meta_addr(index)`. `nil` when the requires fail.
func corrected_sync_slot_perm(_ slots: [Int: SeedPointsTo], _ held: [SeedPointsTo], _ index: Int,
                              _ perm: SeedPointsTo, max: Int) -> (slots: [Int: SeedPointsTo], held: [SeedPointsTo])? {
    guard slots[index] == nil, index < max, perm.addr == metaAddr(index), let i = held.firstIndex(of: perm) else { return nil }
    var after = slots
    after[index] = perm
    var kept = held
    kept.remove(at: i)
    return (after, kept)
}

/// `meta_addr(i)` of a region at 0 with 64-byte slots.
func metaAddr(_ i: Int) -> UInt64 { UInt64(i) * 64 }

/// 003:65-84 `inv`'s domain clauses: `i < max <==> slot_owners ∋ i`, `slot_owners ∋ i ==> slots
/// ∋ i`, `slots ∋ i ==> i < max`.
func seed_meta_inv_domains(slotOwners: Set<Int>, slots: Set<Int>, max: Int) -> Bool {
    slotOwners == Set(0..<max) && slotOwners.isSubset(of: slots) && slots.allSatisfy { $0 < max }
}

/// How many copies of `perm` exist: in the caller's hands and in `slots`.
func copies(_ perm: SeedPointsTo, held: [SeedPointsTo], slots: [Int: SeedPointsTo]) -> Int {
    held.filter { $0 == perm }.count + slots.values.filter { $0 == perm }.count
}

extension SeedDefectTests {
    // MARK: 7. `sync_slot_perm` duplicates a linear permission

    @Test func syncSlotPermDuplicatesAPermission() throws {
        // (b) Four slots; slot 1's permission is out, held by a caller (`Frame::from_raw`).
        let perms = (0..<4).map { SeedPointsTo(addr: metaAddr($0), id: $0) }
        var slots: [Int: SeedPointsTo] = [:]
        for i in [0, 2, 3] { slots[i] = perms[i] }
        let held = [perms[1]]
        #expect(copies(perms[1], held: held, slots: slots) == 1)
        // (c) After the call the caller still holds it and so does the region: two copies. With
        // every slot present (as `inv` demands), the permission already there is lost instead;
        // and an index past the region breaks `inv` (no `requires` stops any of this).
        #expect(copies(perms[1], held: held, slots: seed_sync_slot_perm(slots, 1, perms[1])) == 2)
        let full = seed_sync_slot_perm(slots, 1, perms[1])
        let stray = SeedPointsTo(addr: metaAddr(1), id: 99)
        #expect(copies(perms[1], held: [], slots: seed_sync_slot_perm(full, 1, stray)) == 0)
        #expect(!seed_meta_inv_domains(slotOwners: Set(0..<4), slots: Set(seed_sync_slot_perm(full, 7, stray).keys), max: 4))
        // The corrected contract moves it (one copy) and refuses the other two calls.
        let moved = try #require(corrected_sync_slot_perm(slots, held, 1, perms[1], max: 4))
        #expect(copies(perms[1], held: moved.held, slots: moved.slots) == 1)
        #expect(corrected_sync_slot_perm(full, [stray], 1, stray, max: 4) == nil)
        #expect(corrected_sync_slot_perm(slots, [stray], 7, stray, max: 4) == nil)
        // (d) The run time: forgetting and restoring a frame hands its one reference back and
        // forth; the reference count stays 1 and the ledger goes 1 → 0 → 1 → 0.
        let machine = makeMachine()
        let frame = try FrameAllocOptions().allocFrame(in: machine)
        let index = Int(frame.paddr.rawValue >> 12)
        #expect(machine.metaRegionOwners().frameObligations[index] == 1)
        let paddr = frame.intoRaw()
        let forgotten = machine.metaRegionOwners()
        #expect(forgotten.frameObligations[index] == 0 && forgotten.refCount(index) == 1 && forgotten.inv())
        let restored = Frame<UntypedMeta>.fromRaw(paddr, in: machine)
        #expect(machine.metaRegionOwners().frameObligations[index] == 1 && restored.referenceCount == 1)
        _ = consume restored
        #expect(machine.cleanInv())
    }

    // MARK: 16. Seed 003's documentation contradicts its invariant and itself

    @Test func metaRegionDocsContradictTheInvariant() throws {
        // (a) 003:43-44: "All functions in the verified code that call `from_raw` have a
        // precondition that the frame's index is not a key in `slots`"; 003:200-209
        // `paddr_range_not_in_region`.
        func seed_from_raw_caller_requires(slots: Set<Int>, _ index: Int) -> Bool { !slots.contains(index) }
        func seed_paddr_range_not_in_region(slots: Set<Int>, _ range: Range<UInt64>) -> Bool {
            stride(from: range.lowerBound, to: range.upperBound, by: 1).filter { $0 % 4096 == 0 }
                .allSatisfy { !slots.contains(Int($0 / 4096)) }
        }
        // (b, c) Every `slots` domain over 5 candidate indices that satisfies `inv` with 4 slots is
        // exactly 0..<4, so the precondition holds for no frame of the region.
        let max = 4
        for mask in 0..<(1 << 5) {
            let slots = Set((0..<5).filter { mask & (1 << $0) != 0 })
            guard seed_meta_inv_domains(slotOwners: Set(0..<max), slots: slots, max: max) else { continue }
            #expect(slots == Set(0..<max))
            #expect((0..<max).allSatisfy { !seed_from_raw_caller_requires(slots: slots, $0) })
            #expect(!seed_paddr_range_not_in_region(slots: slots, 0..<0x1000))
        }
        // (a) 003:50-53 and 003:264-266: `ManuallyDrop::new` both mints ("adds one entry") and
        // redeems ("redeem one"): net zero. A frame forgotten and restored then never comes clean.
        func seed_manually_drop_new(_ count: Int) -> Int { count + 1 - 1 }
        var documented = 1                          // a live handle
        documented = seed_manually_drop_new(documented)   // forgotten (`into_raw`)
        documented += 1                             // `from_raw` mints
        documented -= 1                             // `Drop::drop` redeems
        #expect(documented == 1)
        // (d) The run time: `intoRaw` redeems, `fromRaw` mints, and the machine comes clean; a
        // region frame is never "not in the region" (`paddrRangeNotInRegion` only holds past memory).
        let machine = makeMachine()
        let paddr = try FrameAllocOptions().allocFrame(in: machine).intoRaw()
        #expect(machine.cleanInv())
        _ = Frame<UntypedMeta>.fromRaw(paddr, in: machine)
        #expect(machine.cleanInv())
        let owners = machine.metaRegionOwners()
        #expect(!owners.paddrRangeNotInRegion(paddr..<(paddr + pageSize)))
        let end = Paddr(UInt64(machine.memorySize))
        #expect(owners.paddrRangeNotInRegion(end..<(end + pageSize)))
    }
}

// The seeds' `MetaRegionOwners` (seed `meta_region_owners.rs`) as a snapshot of a live machine,
// with every predicate of the seed as a Swift function of the same name.
//
// The proof's maps become arrays indexed by slot. Two parts of the ghost state have no run-time
// counterpart and are modelled as follows:
// - `slots` (the points-to permissions): every slot of the machine exists in memory, so the
//   domain is `0 ..< frameCount`; a permission "lent out" to a handle is not observable.
// - `frame_obligations`: with auditing on, the machine's ledger counts exactly the seed's
//   multiset (minted by `from_unused`, `from_in_use`, `clone`, `from_raw` and per segment frame;
//   redeemed by drop and `into_raw`). Without it, a frame the allocator has handed out and not
//   got back is taken as one obligation per reference: stricter than the seed, since a frame
//   forgotten with `intoRaw` also counts.

@_spi(OSTDInternals) import OSTDMemory

/// A snapshot of every metadata slot and of the obligation ledger.
public struct MetaRegionOwners: Sendable {
    /// `slot_owners`, indexed by slot.
    public let slotOwners: [MetaSlotOwner]
    /// `frame_obligations.count(i)`, indexed by slot.
    public let frameObligations: [Int]
    /// Whether `frameObligations` comes from an exact ledger (auditing on).
    public let isExactLedger: Bool

    init(slotOwners: [MetaSlotOwner], frameObligations: [Int], isExactLedger: Bool) {
        self.slotOwners = slotOwners
        self.frameObligations = frameObligations
        self.isExactLedger = isExactLedger
    }

    /// `max_meta_slots()`.
    public var maxMetaSlots: Int { slotOwners.count }

    /// `slots.contains_key(i)`: every slot of the machine is present.
    public func slotsContainsKey(_ i: Int) -> Bool { i >= 0 && i < maxMetaSlots }

    /// The region invariant, as the seed's `MetaRegionOwners::inv`:
    ///
    ///     forall i: i < max_meta_slots() <==> slot_owners.contains_key(i)
    ///     forall i: slot_owners.contains_key(i) ==> slots.contains_key(i)
    ///     forall i: slots.contains_key(i) ==> i < max_meta_slots()
    ///     forall i: slots.contains_key(i) ==> slot_owners[i].inv() ∧ slots[i].is_init()
    ///         ∧ slots[i].addr() == meta_addr(i) ∧ slot_owners[i].slot_vaddr == slots[i].addr()
    public func inv() -> Bool {
        firstInvViolation() == nil
    }

    /// The first slot that breaks `inv()`, for error messages.
    public func firstInvViolation() -> MetaSlotOwner? {
        for (i, owner) in slotOwners.enumerated() where !MetaRegionOwners.slotHolds(owner, at: i) { return owner }
        return nil
    }

    /// The per-slot clause of `inv`: the owner of slot `i` is slot `i`'s, at its address in the
    /// region, and satisfies `MetaSlotOwner::inv`.
    static func slotHolds(_ owner: MetaSlotOwner, at i: Int) -> Bool {
        owner.index == i && owner.slotOffset == i * MetaSlot.size && owner.inv()
    }

    /// `ref_count(i)`: the reference count of slot `i`.
    public func refCount(_ i: Int) -> UInt64 { slotOwners[i].refCount }

    /// `slot_owners_agree_except(other, idx)`: `other` agrees with `self` on every slot owner
    /// except the one at `idx` — a single-slot operation left all other slots untouched.
    public func slotOwnersAgreeExcept(_ other: MetaRegionOwners, _ idx: Int) -> Bool {
        guard other.maxMetaSlots == maxMetaSlots else { return false }
        for i in 0..<maxMetaSlots where i != idx {
            if other.slotOwners[i] != slotOwners[i] { return false }
        }
        return true
    }

    /// `paddr_range_in_region(range)`: every page in `range` has a slot.
    public func paddrRangeInRegion(_ range: Range<Paddr>) -> Bool {
        pages(of: range).allSatisfy { slotsContainsKey($0) }
    }

    /// `paddr_range_not_mapped(range)`: no page in `range` is mapped by a page table
    /// (`paths_in_pt` empty).
    public func paddrRangeNotMapped(_ range: Range<Paddr>) -> Bool {
        pages(of: range).allSatisfy { !slotsContainsKey($0) || slotOwners[$0].pathsInPt == 0 }
    }

    /// `paddr_range_not_in_region(range)`: no page in `range` has a slot.
    public func paddrRangeNotInRegion(_ range: Range<Paddr>) -> Bool {
        pages(of: range).allSatisfy { !slotsContainsKey($0) }
    }

    /// `clean_inv()`: the invariant holds and the obligation ledger is empty
    /// (`frame_obligations.len() == 0`) — no frame handle or segment is outstanding.
    public func cleanInv() -> Bool {
        inv() && frameObligations.allSatisfy { $0 == 0 }
    }

    /// The slots with outstanding obligations, as `(paddr, count)`: what `cleanInv()` found leaked.
    public func outstandingObligations() -> [(paddr: Paddr, count: Int)] {
        frameObligations.indices.compactMap { i in
            frameObligations[i] == 0 ? nil : (Paddr(UInt64(i) << UInt64(pageShift)), frameObligations[i])
        }
    }

    /// The indices of the 4 KiB pages whose address lies in `range` (`paddr % PAGE_SIZE == 0`).
    private func pages(of range: Range<Paddr>) -> StrideTo<Int> {
        let first = Int((range.lowerBound.rawValue + UInt64(pageSize) - 1) >> UInt64(pageShift))
        let end = Int((range.upperBound.rawValue + UInt64(pageSize) - 1) >> UInt64(pageShift))
        return stride(from: first, to: max(first, end), by: 1)
    }
}

extension Machine {
    /// A snapshot of the metadata region and the obligation ledger. O(frames): for tests and
    /// audits at quiescent points, not for hot paths.
    public func metaRegionOwners() -> MetaRegionOwners {
        metaRegionOwners(pathsInPt: [:])
    }

    /// A snapshot in which `paths_in_pt` of each frame is `pathsInPt[paddr]`: how many
    /// page-table entries (or table roots) reference it. `PageTable.pathsInPt()` supplies them.
    public func metaRegionOwners(pathsInPt: [Paddr: Int]) -> MetaRegionOwners {
        let regionSize = frameCount * MetaSlot.size
        var owners: [MetaSlotOwner] = []
        owners.reserveCapacity(frameCount)
        for i in 0..<frameCount {
            let paddr = Paddr(UInt64(i) << UInt64(pageShift))
            let slot = metaSlot(of: paddr)
            owners.append(MetaSlotOwner(
                index: i, refCount: slot.referenceCount, typeTag: slot.typeTag, inList: freeListWord(ofFrame: i),
                slotOffset: metaSlotOffset(ofFrame: i), regionSize: regionSize, pathsInPt: pathsInPt[paddr] ?? 0))
        }
        let obligations: [Int]
        if isAuditing {
            obligations = (0..<frameCount).map { obligationCount(ofFrame: $0) ?? 0 }
        } else {
            obligations = owners.map { MetaRegionOwners.derivedObligations($0) }
        }
        return MetaRegionOwners(slotOwners: owners, frameObligations: obligations, isExactLedger: isAuditing)
    }

    /// `clean_inv()` of the current state: nothing leaked, every slot consistent.
    public func cleanInv() -> Bool { metaRegionOwners().cleanInv() }
}

extension MetaRegionOwners {
    /// Without a ledger: references held on a frame the allocator handed out, less those its
    /// page-table entries hold.
    static func derivedObligations(_ owner: MetaSlotOwner) -> Int {
        // Free frames (free-chunk heads included) and the machine's own frames hold no handle.
        guard owner.holdsReferences else { return 0 }
        switch MetaSlotStatus(refCount: owner.refCount) {
        case .unused: return 0
        case .unique, .busy: return 1
        case .shared(let n), .overflow(let n): return max(0, Int(clamping: n) - owner.pathsInPt)
        }
    }

    /// The reference-count accounting of every frame in use (vostd `accounting_inv`, run-time
    /// check C.17): `rc == H + P + S`, live handles and segment frames (the obligation ledger)
    /// plus page-table paths. Returns the frames where it fails, in words; empty when it holds.
    /// Exact only with an exact ledger (a machine created with `audit: true`).
    public func accountingViolations() -> [String] {
        slotOwners.indices.compactMap { MetaRegionOwners.accountingViolation(slotOwners[$0], handles: frameObligations[$0]) }
    }

    /// Check C.17 for one slot: a shared frame's count is its `handles` plus its page-table
    /// paths; what is wrong, in words, or `nil`.
    @inline(__always)
    static func accountingViolation(_ owner: MetaSlotOwner, handles: Int) -> String? {
        guard case .shared(let count) = owner.status, Int(clamping: count) != handles + owner.pathsInPt,
              owner.holdsReferences else { return nil }
        return "frame \(Paddr(UInt64(owner.index) << UInt64(pageShift))): reference count \(count), but "
            + "\(handles) handle(s) and \(owner.pathsInPt) page-table path(s)"
    }
}

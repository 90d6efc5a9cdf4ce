// The per-frame obligation ledger of `MetaRegionOwners` (seed `meta_region_owners.rs`), counted.
//
// In the seeds, every live `Frame` handle and every frame held by a `Segment` is one entry of the
// multiset `frame_obligations`; `Drop` and `into_raw` redeem it, `from_unused`, `from_in_use`,
// `clone` and `from_raw` mint one. `clean_inv` — no outstanding obligation — is the leak check at
// a quiescent point. With auditing on, the machine keeps that multiset as one atomic counter per
// slot; with auditing off the hot paths skip it entirely (one predictable branch).

import Synchronization

// Sendable: a pointer to one atomic counter per frame, allocated before the machine is shared and
// freed after it is gone.
/// `@safe`: the `frameCount` counters are allocated by `init` and freed only by the `@unsafe`
/// `deallocate()`, when the machine's state is destroyed (MachineContext.swift's lifetime
/// statement). Every index is a frame index of the machine (`< frameCount`): a handle's slot, or
/// one checked by the caller.
@safe @usableFromInline
struct ObligationLedger: @unchecked Sendable {
    @usableFromInline let counts: UnsafeMutablePointer<Atomic<UInt32>>
    let frameCount: Int

    init(frameCount: Int) {
        self.frameCount = frameCount
        // SAFETY: a fresh allocation of `frameCount` counters, each initialised once, in bounds.
        unsafe counts = .allocate(capacity: frameCount)
        for i in 0..<frameCount { unsafe (counts + i).initialize(to: Atomic(0)) }
    }

    /// Frees the counters.
    ///
    /// - Safety: called once, by `MachineRef.destroy`; no copy of the ledger is used afterwards.
    @unsafe
    func deallocate() {
        // SAFETY: the allocation `init` made (atomic counters need no deinitialisation); the
        // caller's contract makes this its last use.
        unsafe counts.deallocate()
    }

    /// `mint_frame_obligation(slot_idx)`: one more outstanding handle at `index`.
    @inlinable @inline(__always)
    func mint(_ index: Int) {
        // SAFETY: `index < frameCount` (see the type); the counter is atomic.
        unsafe counts[index].add(1, ordering: .relaxed)
    }

    /// `redeem_frame_obligation(slot_idx)`: a handle at `index` was dropped or forgotten.
    ///
    /// - Precondition: `frame_obligations.count(slot_idx) > 0`, the seeds' requirement.
    @inlinable @inline(__always)
    func redeem(_ index: Int) {
        // SAFETY: `index < frameCount` (see the type); the counter is atomic.
        let old = unsafe counts[index].subtract(1, ordering: .relaxed).oldValue
        precondition(old > 0, "obligation ledger: a frame handle was redeemed twice")
    }

    /// `frame_obligations.count(index)`.
    func count(_ index: Int) -> Int {
        // SAFETY: `index < frameCount` (see the type); the counter is atomic.
        Int(unsafe counts[index].load(ordering: .relaxed))
    }
}

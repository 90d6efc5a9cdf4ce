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
@usableFromInline
struct ObligationLedger: @unchecked Sendable {
    @usableFromInline let counts: UnsafeMutablePointer<Atomic<UInt32>>
    let frameCount: Int

    init(frameCount: Int) {
        self.frameCount = frameCount
        counts = .allocate(capacity: frameCount)
        for i in 0..<frameCount { (counts + i).initialize(to: Atomic(0)) }
    }

    func deallocate() { counts.deallocate() }

    /// `mint_frame_obligation(slot_idx)`: one more outstanding handle at `index`.
    @inlinable @inline(__always)
    func mint(_ index: Int) {
        counts[index].add(1, ordering: .relaxed)
    }

    /// `redeem_frame_obligation(slot_idx)`: a handle at `index` was dropped or forgotten.
    ///
    /// - Precondition: `frame_obligations.count(slot_idx) > 0`, the seeds' requirement.
    @inlinable @inline(__always)
    func redeem(_ index: Int) {
        let old = counts[index].subtract(1, ordering: .relaxed).oldValue
        precondition(old > 0, "obligation ledger: a frame handle was redeemed twice")
    }

    /// `frame_obligations.count(index)`.
    func count(_ index: Int) -> Int { Int(counts[index].load(ordering: .relaxed)) }
}

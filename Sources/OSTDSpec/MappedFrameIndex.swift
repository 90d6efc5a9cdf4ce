// Which page-table leaves of the audited spaces map which frames: the seeds' `paths_in_pt`, for
// the frame checks' "never free a mapped frame" (checks 21 and 24).
//
// A frame's slot does not say who maps it, and walking every audited table at each frame
// operation would cost what the spaces hold. So the auditor keeps an index, updated from what it
// already computes around every cursor operation (the views before and after, over the range the
// operation touched): the tracked leaves that went, and those that came. The index only proposes;
// `pathsInPt` asks the live table whether each proposed leaf still maps the frame, so a leaf that
// went while its operation was still running (its frames released before the auditor saw the
// outcome) is not counted. Leaves of a space that is gone drop out with it (the index holds its
// spaces weakly; a dropped space's table is torn down after the reference is cleared).

@_spi(OSTDInternals) import OSTDMemory

/// Tracked leaves of audited spaces, by the physical address they start at.
struct MappedFrameIndex {
    /// One leaf: where it is, in which space.
    struct Leaf {
        weak var space: VmSpace?
        var va: Vaddr
        var level: PagingLevel
    }

    private var leaves: [Paddr: [Leaf]] = [:]

    /// Records that `before` became `after` in `space` (two views of the same range).
    mutating func update(from before: [Mapping], to after: [Mapping], in space: VmSpace) {
        let old = Set(before.filter(\.isTracked)), new = Set(after.filter(\.isTracked))
        for gone in old.subtracting(new) {
            leaves[gone.pa.lowerBound]?.removeAll { $0.space === space && $0.va == gone.va.lowerBound }
            if leaves[gone.pa.lowerBound]?.isEmpty == true { leaves[gone.pa.lowerBound] = nil }
        }
        for came in new.subtracting(old) {
            leaves[came.pa.lowerBound, default: []].append(Leaf(space: space, va: came.va.lowerBound, level: came.level))
        }
    }

    /// The recorded leaves that could map the frame at `paddr`: those starting at its address
    /// aligned down to each leaf size.
    func candidates(for paddr: Paddr) -> [Leaf] {
        (1...PagingConsts.highestTranslationLevel).flatMap { level -> [Leaf] in
            let size = UInt64(PagingConsts.pageSize(level))
            return (leaves[Paddr(paddr.rawValue & ~(size - 1))] ?? []).filter { $0.level == level }
        }
    }

    /// The seeds' `paths_in_pt(paddr).len()` over the audited spaces: the candidates whose space
    /// is alive and whose table still maps the frame with a tracked leaf.
    static func pathsInPt(_ paddr: Paddr, candidates: [Leaf]) -> Int {
        candidates.count { leaf in
            guard let space = leaf.space, let (item, _) = space.pageTable.translate(leaf.va) else { return false }
            let size = UInt64(PagingConsts.pageSize(item.level))
            return item.isTracked && item.level == leaf.level && item.paddr.rawValue == paddr.rawValue & ~(size - 1)
        }
    }
}

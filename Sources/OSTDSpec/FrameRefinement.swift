// Checks 19–24 and 32 of the specification's run-time list (vostd-spec-reference §10 C and E):
// what one operation on frame handles must have done to the slots it touched.
//
// Each function takes the slots of the operation's frames before and after it (as the core's
// `FrameAuditor` hook reads them) and returns what is wrong, in words; empty means the operation
// refines its specification. Two facts the slots do not hold come from the caller:
// `pathsInPt(paddr)`, how many page-table leaves of the audited spaces map a frame (the seeds'
// `paths_in_pt`, for "never free a mapped frame"), and the CPUs' cached translations (check 32).
//
// Deliberate differences from the seeds' text, each because the core's design differs:
// - "usage == Frame" after `from_unused` is "the slot carries a type tag": the core allocates
//   page-table nodes and typed kernel frames through the same path, each with its own usage.
// - A segment's frames need not be unmapped (§10's `P == 0` for `Segment`): OSTD maps a clone of
//   a segment, or a frame of it, while the segment lives, as it does with `Frame`s.
// - "Other slots unchanged" is not checked per operation (that would read every slot); the
//   quiescent audit's accounting notices any slot that changed without its operation.

@_spi(OSTDInternals) import OSTDMemory

/// The specifications of frame operations, as checks on slot states.
public enum FrameRefinement {
    /// The slots of an operation's frames, in frame order.
    public typealias Slots = [FrameSlotState]

    /// What is wrong with `operation` on a machine of `frameCount` frames, as
    /// (predicate, detail) pairs.
    public static func violations(
        _ operation: FrameOperation, outcome: FrameOperationOutcome, before: Slots, after: Slots, frameCount: Int,
        pathsInPt: (Paddr) -> Int, cachedTranslations: () -> [(cpu: Int, entry: TlbEntryInfo)]
    ) -> [(predicate: String, detail: String)] {
        var found: [(String, String)] = []
        func add(_ predicate: String, _ problems: [String]) { found += problems.map { (predicate, $0) } }
        switch operation {
        case .fromUnused(let paddr):
            add("fromUnusedSpec", fromUnusedSpec(paddr, outcome: outcome, before: before, after: after,
                                                 frameCount: frameCount, unique: false))
        case .uniqueFromUnused(let paddr):
            add("uniqueFrameSpec", fromUnusedSpec(paddr, outcome: outcome, before: before, after: after,
                                                  frameCount: frameCount, unique: true))
        case .fromInUse(let paddr):
            add("fromInUseSpec", fromInUseSpec(paddr, outcome: outcome, before: before, after: after, frameCount: frameCount))
        case .clone:
            add("cloneSpec", cloneSpec(before: before, after: after))
        case .drop(let paddr):
            add("dropSpec", dropSpec(paddr, before: before, after: after, pathsInPt: pathsInPt, redeems: true))
        case .entryReleased(let paddr):
            add("dropSpec", dropSpec(paddr, before: before, after: after, pathsInPt: { _ in 0 }, redeems: false))
        case .segmentFromUnused(let range):
            add("segmentSpec", segmentFromUnusedSpec(range, outcome: outcome, before: before, after: after,
                                                     frameCount: frameCount))
        case .segmentClone(let range):
            add("segmentSpec", segmentCloneSpec(range, before: before, after: after))
        case .segmentSplit(let range, let offset, let front, let back):
            add("segmentSpec", segmentSplitSpec(range, offset: offset, front: front, back: back)
                + unchanged(before, after, "a split"))
        case .segmentDrop(let range):
            add("dropSpec", zip(before.indices, range.pages).flatMap { i, paddr in
                dropSpec(paddr, before: [before[i]], after: [after[i]], pathsInPt: pathsInPt, redeems: true)
            })
        case .uniqueTryFrom(let paddr):
            add("uniqueFrameSpec", uniqueTryFromSpec(paddr, outcome: outcome, before: before, after: after))
        case .uniqueDrop(let paddr):
            add("uniqueFrameSpec", uniqueDropSpec(paddr, before: before, after: after, pathsInPt: pathsInPt))
        }
        add("flushedBeforeFree", flushedBeforeFree(operation.frames, before: before, after: after,
                                                   cachedTranslations: cachedTranslations))
        return found
    }

    // MARK: Check 19 (and 24's `from_unused`)

    /// Check 19, `Frame::from_unused(pa)`: "`!(pa%4K==0 ∧ pa<MAX_PADDR) ⟹ Err`; `Ok ⟹ pre
    /// rc==UNUSED ∧ post rc==1 ∧ usage==Frame ∧ in_list==0`; `Err ⟹ no state change`". With
    /// `unique`, `UniqueFrame::from_unused` (check 24): the same with `post rc==UNIQUE`. The
    /// refusal is also exact: a valid address is refused only when its slot is not unused.
    public static func fromUnusedSpec(_ paddr: Paddr, outcome: FrameOperationOutcome, before: Slots, after: Slots,
                                      frameCount: Int, unique: Bool) -> [String] {
        let valid = isValidFrame(paddr, frameCount: frameCount)
        switch outcome {
        case .refused(let error):
            if valid && before.first?.refCount == MetaSlot.refCountUnused {
                return ["\(paddr) is unused, but from_unused refused it (\(error))"]
            }
            return unchanged(before, after, "a refused from_unused")
        case .done, .rejected:
            guard valid, let old = before.first, let new = after.first else {
                return ["from_unused(\(paddr)) succeeded on an address that is not a frame's"]
            }
            let expected = unique ? MetaSlot.refCountUnique : 1
            var problems: [String] = []
            if old.refCount != MetaSlot.refCountUnused { problems.append("\(paddr) was \(describe(old.refCount)), not UNUSED") }
            if new.refCount != expected { problems.append("\(paddr) is \(describe(new.refCount)) after, not \(describe(expected))") }
            if new.tag.word == 0 { problems.append("\(paddr) has no type tag after from_unused") }
            if new.inList != 0 { problems.append("\(paddr) is still in free list \(new.inList)") }
            return problems + minted(old, new, by: 1, paddr)
        }
    }

    // MARK: Check 20

    /// Check 20, `Frame::from_in_use(pa)`: "`Ok ⟹ rc'==rc+1`"; a refusal changes nothing and
    /// happens exactly when the address is not a frame's or the frame has no shared reference.
    public static func fromInUseSpec(_ paddr: Paddr, outcome: FrameOperationOutcome, before: Slots, after: Slots,
                                     frameCount: Int) -> [String] {
        let valid = isValidFrame(paddr, frameCount: frameCount)
        switch outcome {
        case .refused(let error):
            if valid, let old = before.first, isShared(old.refCount) {
                return ["\(paddr) has \(old.refCount) reference(s), but from_in_use refused it (\(error))"]
            }
            return unchanged(before, after, "a refused from_in_use")
        case .done, .rejected:
            guard valid else { return ["from_in_use(\(paddr)) succeeded on an address that is not a frame's"] }
            return cloneSpec(before: before, after: after)
        }
    }

    /// Check 20, `Frame::clone`: "`rc'==rc+1`" on a shared frame (never wrapping: `rc ≥ i64::MAX`
    /// panics before), its metadata unchanged, one obligation minted.
    public static func cloneSpec(before: Slots, after: Slots) -> [String] {
        guard let old = before.first, let new = after.first else { return ["a clone of no slot"] }
        var problems: [String] = []
        if !isShared(old.refCount) { problems.append("cloned a frame that is \(describe(old.refCount))") }
        if new.refCount != old.refCount &+ 1 {
            problems.append("reference count \(describe(old.refCount)) became \(describe(new.refCount)), not one more")
        }
        if new.tag != old.tag { problems.append("the clone changed the type tag") }
        return problems + minted(old, new, by: 1, nil)
    }

    // MARK: Check 21

    /// Check 21, `Frame::drop`: "requires a live handle with `0<rc≤MAX` and `rc==1 ⟹ P==0`
    /// (never free a still-mapped frame); ensures `rc==1 ⟹ rc'==UNUSED`, `rc>1 ⟹ rc'==rc-1`;
    /// `usage`, `paths` and `slot_vaddr` unchanged". A freed frame may at once become the head of
    /// a free chunk, which the allocator holds as unique (`isFree`). `redeems`: a handle's drop redeems its
    /// obligation; a page-table entry's reference (`entryReleased`) had none.
    public static func dropSpec(_ paddr: Paddr, before: Slots, after: Slots, pathsInPt: (Paddr) -> Int,
                                redeems: Bool) -> [String] {
        guard let old = before.first, let new = after.first else { return ["a drop of no slot"] }
        guard isShared(old.refCount) else { return ["dropped \(paddr), which is \(describe(old.refCount))"] }
        var problems = minted(old, new, by: redeems ? -1 : 0, paddr)
        if old.refCount == 1 {
            let paths = pathsInPt(paddr)
            if paths > 0 { problems.append("freed \(paddr) while \(paths) page-table leaf(s) still map it") }
            if !isFree(new) {
                problems.append("the last reference of \(paddr) went, but it is \(describe(new.refCount)), not UNUSED")
            }
        } else {
            if new.refCount != old.refCount - 1 {
                problems.append("\(paddr): \(old.refCount) reference(s) became \(describe(new.refCount)), not one fewer")
            }
            if new.tag != old.tag { problems.append("\(paddr): a drop that was not the last changed the type tag") }
        }
        return problems
    }

    // MARK: Check 23

    /// Check 23, `Segment::from_unused`: "aligned, `start≤end≤MAX_PADDR`; every covered slot has
    /// `0<rc≤MAX ∧ usage==Frame`"; each frame was unused and now has one reference; a refusal
    /// changes nothing.
    public static func segmentFromUnusedSpec(_ range: Range<Paddr>, outcome: FrameOperationOutcome, before: Slots,
                                             after: Slots, frameCount: Int) -> [String] {
        if case .refused = outcome { return unchanged(before, after, "a refused Segment::from_unused") }
        guard isValidFrame(range.lowerBound, frameCount: frameCount), range.upperBound.isAligned(to: pageSize),
              Int(range.upperBound.rawValue >> UInt64(pageShift)) <= frameCount, !range.isEmpty else {
            return ["Segment::from_unused succeeded on \(range.lowerBound)..<\(range.upperBound)"]
        }
        return zip(zip(before, after), range.pages).flatMap { slots, paddr in
            fromUnusedSpec(paddr, outcome: .done, before: [slots.0], after: [slots.1], frameCount: frameCount, unique: false)
        }
    }

    /// Check 23 for a new segment over frames already held (`clone`, `slice`): every covered slot
    /// had `0<rc≤MAX` and has one more reference, one obligation more.
    public static func segmentCloneSpec(_ range: Range<Paddr>, before: Slots, after: Slots) -> [String] {
        zip(zip(before, after), range.pages).flatMap { slots, paddr in
            cloneSpec(before: [slots.0], after: [slots.1]).map { "\(paddr): \($0)" }
        }
    }

    /// Check 23, `Segment::split(off)`: "panics unless `off%4K==0 ∧ 0<off<size`, and halves are
    /// `[s,s+off)`, `[s+off,e)`".
    public static func segmentSplitSpec(_ range: Range<Paddr>, offset: Int, front: Range<Paddr>,
                                        back: Range<Paddr>) -> [String] {
        guard offset % pageSize == 0, offset > 0, offset < range.upperBound - range.lowerBound else {
            return ["split at \(offset) of \(range.lowerBound)..<\(range.upperBound) did not panic"]
        }
        let middle = range.lowerBound + offset
        guard front == range.lowerBound..<middle, back == middle..<range.upperBound else {
            return ["split at \(offset) gave \(front.lowerBound)..<\(front.upperBound) and "
                    + "\(back.lowerBound)..<\(back.upperBound), not halves at \(middle)"]
        }
        return []
    }

    // MARK: Check 24

    /// Check 24, `UniqueFrame::try_from(Frame)`: "`try_from_shared` succeeds iff `rc==1`", and
    /// then `rc==UNIQUE ∧ in_list==0`; on a rejection nothing changes.
    public static func uniqueTryFromSpec(_ paddr: Paddr, outcome: FrameOperationOutcome, before: Slots,
                                         after: Slots) -> [String] {
        guard let old = before.first, let new = after.first else { return ["a conversion of no slot"] }
        let converted = outcome == .done
        if converted != (old.refCount == 1) {
            return ["\(paddr) with \(describe(old.refCount)) reference(s) was \(converted ? "converted" : "rejected")"]
        }
        guard converted else { return unchanged(before, after, "a rejected conversion") }
        var problems = minted(old, new, by: 0, paddr)
        if new.refCount != MetaSlot.refCountUnique { problems.append("\(paddr) is \(describe(new.refCount)), not UNIQUE") }
        if new.inList != 0 { problems.append("\(paddr) is in free list \(new.inList)") }
        return problems
    }

    /// Check 24, `UniqueFrame::drop`: the handle owned "`rc==UNIQUE ∧ in_list==0 ∧ P==0`", and its
    /// drop frees the frame (`UNUSED`, or a free chunk's head) and redeems its obligation.
    public static func uniqueDropSpec(_ paddr: Paddr, before: Slots, after: Slots, pathsInPt: (Paddr) -> Int) -> [String] {
        guard let old = before.first, let new = after.first else { return ["a drop of no slot"] }
        var problems = minted(old, new, by: -1, paddr)
        if old.refCount != MetaSlot.refCountUnique { problems.append("a unique handle to \(paddr), which is \(describe(old.refCount))") }
        if old.inList != 0 { problems.append("a unique frame \(paddr) in free list \(old.inList)") }
        if pathsInPt(paddr) > 0 { problems.append("a unique frame \(paddr) is mapped") }
        if !isFree(new) { problems.append("\(paddr) is \(describe(new.refCount)) after its drop, not UNUSED") }
        return problems
    }

    // MARK: Check 32

    /// Check 32: "after `unmap` or the replace branch of `map`, a flush covering each removed
    /// mapping's VA range must be issued before the old frame's last reference is dropped". Checked
    /// where it matters: when a frame's last reference goes (its slot turns `UNUSED`, or becomes
    /// a free chunk's head), no CPU's TLB may still translate to it.
    public static func flushedBeforeFree(_ frames: Range<Paddr>, before: Slots, after: Slots,
                                         cachedTranslations: () -> [(cpu: Int, entry: TlbEntryInfo)]) -> [String] {
        let freed = zip(zip(before, after), frames.pages).filter { slots, _ in !isFree(slots.0) && isFree(slots.1) }.map(\.1)
        guard let first = freed.first, let last = freed.last else { return [] }
        let freedRange = first..<(last + pageSize)
        return cachedTranslations().compactMap { cpu, entry in
            let page = entry.paddr..<(entry.paddr + PagingConsts.pageSize(entry.level))
            guard page.overlaps(freedRange), freed.contains(where: page.contains) else { return nil }
            return "cpu \(cpu) still caches \(entry.va) -> \(entry.paddr) when the frame's last reference goes"
        }
    }

    // MARK: Helpers

    /// "`pa%4K==0 ∧ pa<MAX_PADDR`", with the machine's memory as `MAX_PADDR`.
    static func isValidFrame(_ paddr: Paddr, frameCount: Int) -> Bool {
        paddr.isAligned(to: pageSize) && paddr.rawValue >> UInt64(pageShift) < UInt64(frameCount)
    }

    /// Whether the slot is back with the allocator: `UNUSED`, or the head of a free chunk, which
    /// the allocator holds as a unique frame of usage `unused` (OSTD's `FreeHeadMeta`).
    static func isFree(_ slot: FrameSlotState) -> Bool {
        slot.refCount == MetaSlot.refCountUnused || (slot.refCount == MetaSlot.refCountUnique && slot.tag.usage == .unused)
    }

    /// `0 < rc ≤ MAX`.
    static func isShared(_ refCount: UInt64) -> Bool { refCount >= 1 && refCount <= MetaSlot.refCountMax }

    /// Check 22's per-operation part: "every drop / `into_raw` consumes one" obligation, every
    /// new handle mints one.
    static func minted(_ old: FrameSlotState, _ new: FrameSlotState, by delta: Int, _ paddr: Paddr?) -> [String] {
        guard new.obligations != old.obligations + delta else { return [] }
        let name = paddr.map { "\($0): " } ?? ""
        return ["\(name)obligations went from \(old.obligations) to \(new.obligations), not \(old.obligations + delta)"]
    }

    /// "`Err ⟹ no state change`".
    static func unchanged(_ before: Slots, _ after: Slots, _ what: String) -> [String] {
        before == after ? [] : ["\(what) changed its slots: \(before) became \(after)"]
    }

    static func describe(_ refCount: UInt64) -> String {
        switch MetaSlotStatus(refCount: refCount) {
        case .unused: "UNUSED"
        case .unique: "UNIQUE"
        case .busy: "0 (busy)"
        case .shared(let n), .overflow(let n): String(n)
        }
    }
}

extension Range where Bound == Paddr {
    /// The 4 KiB frames of the range, by physical address.
    var pages: [Paddr] {
        stride(from: lowerBound.rawValue, to: upperBound.rawValue, by: pageSize).map { Paddr($0) }
    }
}

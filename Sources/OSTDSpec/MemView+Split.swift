// Taking a `MemView` apart and putting it back: the seeds' `borrow_at`, `split` and `join`
// (vostd `virt_mem.rs`, ref §2.3), and the lemma `lemma_split_join_identity` as a check.
//
// Design. The seed's `split(vaddr, len)` is not a partition (docs/SPEC.md, defect 11): a mapping
// straddling `e = vaddr + len` lands in both halves with its whole frame (so two owners hold the
// same bytes), and a mapping wholly below `vaddr` lands in neither (so activating a writer above
// the bottom of the remaining view loses the pages below it). `split` here partitions *bytes*:
// - the left half holds the mappings meeting `[vaddr, e)`, the right half those with a byte
//   outside it (a straddling mapping is in both, a mapping below `vaddr` stays on the right);
// - each frame's contents go to the half whose addresses reach them: the left half keeps the
//   bytes that addresses in `[vaddr, e)` reach through its mappings, the right half those that
//   addresses outside reach; every other byte of a half is `.uninit` (not held);
// - `join` merges frames byte by byte instead of the seed's `union_prefer_right`, which would
//   drop the left half's bytes of a straddling frame.
// So `left.join(right) == original` whenever every frame of `memory` is mapped by some mapping,
// without the seed lemma's other precondition (every mapping starting at or after `vaddr`).
// `seedSplit` is the seed's text, kept for the tests that show the difference.

@_spi(OSTDInternals) import OSTDMemory

extension MemView {
    /// `borrow_at(vaddr, len)` (ref §2.3): "`mappings' = {m | m.va.start < e ∧ m.va.end > vaddr}`;
    /// `memory'` = memory restricted to `{pa | ∃ va ∈ [vaddr, e). is_mapped(va, pa)}`". Whole frames
    /// are kept, as in the seed: a reader shares its bytes, it does not take them.
    public func borrowAt(_ vaddr: Vaddr, _ len: Int) -> MemView {
        let e = vaddr + len
        let kept = mappings.filter { $0.va.lowerBound < e && $0.va.upperBound > vaddr }
        let frames = Set(kept.map(\.pa.lowerBound))
        return MemView(mappings: kept, memory: memory.filter { frames.contains($0.key) })
    }

    /// `split(vaddr, len)`, corrected to partition bytes (see the file comment): the left half
    /// holds `[vaddr, vaddr + len)`, the right half everything else.
    public func split(_ vaddr: Vaddr, _ len: Int) -> (MemView, MemView) {
        let e = vaddr + len
        let left = mappings.filter { len > 0 && $0.va.lowerBound < e && $0.va.upperBound > vaddr }
        let right = mappings.filter { $0.va.lowerBound < vaddr || $0.va.upperBound > e }
        return (holding(left, reachedFrom: [vaddr..<e]),
                holding(right, reachedFrom: [Vaddr(0)..<vaddr, e..<Vaddr(UInt64.max)]))
    }

    /// The seed's `split(vaddr, len)`, literally (ref §2.3): "`left.mappings = {m | m.va.start < e ∧
    /// m.va.end > vaddr}`, `right.mappings = {m | m.va.end > e}`, `left.memory = memory|{pa | ∃ va
    /// ∈ [vaddr,e). is_mapped(va,pa)}`, `right.memory = memory|{pa | ∃ va >= e. is_mapped(va,pa)}`".
    public func seedSplit(_ vaddr: Vaddr, _ len: Int) -> (MemView, MemView) {
        let e = vaddr + len
        let right = mappings.filter { $0.va.upperBound > e }
        let rightFrames = Set(right.map(\.pa.lowerBound))
        return (borrowAt(vaddr, len), MemView(mappings: right, memory: memory.filter { rightFrames.contains($0.key) }))
    }

    /// `join(other)` (ref §2.3): "`mappings ∪ other.mappings`; memory `union_prefer_right`", with
    /// frames present in both merged byte by byte, `other`'s initialised bytes winning (see the
    /// file comment).
    public mutating func join(_ other: MemView) {
        mappings.formUnion(other.mappings)
        for (pa, frame) in other.memory {
            if let mine = memory[pa] {
                memory[pa]!.contents = mine.contents.merging(frame.contents)
            } else {
                memory[pa] = frame
            }
        }
    }

    /// `lemma_split_join_identity` (ref §2.3) for the corrected `split`: splitting at `vaddr` and
    /// joining the halves gives the view back. Holds when every frame is mapped by a mapping.
    public func splitJoinIdentity(_ vaddr: Vaddr, _ len: Int) -> Bool {
        var (left, right) = split(vaddr, len)
        left.join(right)
        return left == self
    }

    /// The view of `kept` with each frame's bytes restricted to those addresses in `vas` reach
    /// through `kept`; frames no such address reaches are dropped.
    func holding(_ kept: Set<Mapping>, reachedFrom vas: [Range<Vaddr>]) -> MemView {
        var held: [Paddr: FrameContents] = [:]
        for (pa, frame) in memory {
            let offsets = MemView.offsets(into: pa, from: vas, through: kept)
            guard !offsets.isEmpty else { continue }
            var part = frame
            part.contents = frame.contents.keeping(offsets)
            held[pa] = part
        }
        return MemView(mappings: kept, memory: held)
    }

    /// The offsets into the frame at `pa` that addresses in `vas` reach through `mappings`.
    static func offsets(into pa: Paddr, from vas: [Range<Vaddr>], through mappings: Set<Mapping>) -> [Range<Int>] {
        var offsets: [Range<Int>] = []
        for m in mappings where m.pa.lowerBound == pa {
            for range in vas {
                let low = Swift.max(range.lowerBound, m.va.lowerBound)
                let high = Swift.min(range.upperBound, m.va.upperBound)
                if low < high { offsets.append((low - m.va.lowerBound)..<(high - m.va.lowerBound)) }
            }
        }
        return offsets
    }
}

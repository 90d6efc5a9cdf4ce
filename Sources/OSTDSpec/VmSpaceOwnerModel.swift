// The seeds' `VmSpaceOwner` with its memory views (seed 000, `ostd/specs/mm/vm_space.rs`; ref §4):
// readers and writers holding `MemView`s, the remaining view (`mem_view`) and the total view
// (`mv_range`), with every predicate of seed 000.
//
// Naming: `Model` suffix, as in VmIoOwnerModel.swift (the core's public `VmSpaceOwner` is the
// run-time snapshot without views). Building one from a live space is VmSpaceOwnerModel+Space.swift.
//
// Corrections (docs/SPEC.md), each next to the literal `seed…` version:
// - `memViewWf` (defects 1, 13 and 11): the seed's is unsatisfiable with any writer and makes
//   every view the whole space. Here ownership is by bytes, as the corrected `MemView.split`
//   hands it out: R agrees with T wherever R translates and wherever no writer's range lies; a
//   writer agrees with T on its range, R holds no byte of that range (looked up by the frames the
//   writer's range translates to, whether or not R maps them), and R and the writer share
//   only mappings that straddle an end of the writer's range; a reader agrees with T where it
//   translates. The seed's `!remaining_view.memory.contains_key(va)` (000:219) looks a *virtual*
//   address up among frame base PAs; "R holds no byte of the writer's range" is what it means.
// - `inv` uses the corrected `memViewWf`, `VmIoOwnerModel.inv` and `disjoint`.
// - `canCreateReader` / `canCreateWriter` use the half-open `overlapsWithRange` (defect 2).
// Predicates that can fail also say why (`…Violations`, empty when they hold), for the audit.

@_spi(OSTDInternals) import OSTDMemory

/// The seeds' `VmSpaceOwner { active, readers, writers, mem_view, mv_range, shared_reader }`
/// (without `page_table_owner`, whose `inv` is the page table's, checked by `PageTableView`).
public struct VmSpaceOwnerModel: Equatable, Sendable {
    public var active: Bool
    public var readers: [VmIoOwnerModel]
    public var writers: [VmIoOwnerModel]
    /// The remaining view: the total view less what the writers took (`mem_view`).
    public var memView: MemView?
    /// The total view (`mv_range`).
    public var mvRange: MemView?
    public var sharedReader: Bool

    public init(active: Bool, readers: [VmIoOwnerModel], writers: [VmIoOwnerModel], memView: MemView?,
                mvRange: MemView?, sharedReader: Bool) {
        self.active = active
        self.readers = readers
        self.writers = writers
        self.memView = memView
        self.mvRange = mvRange
        self.sharedReader = sharedReader
    }

    // MARK: mem_view_wf

    /// `mem_view_wf`, corrected (000:167-248; see the file comment).
    public func memViewWf() -> Bool { memViewWfViolations().isEmpty }

    /// What breaks the corrected `mem_view_wf`, in words.
    public func memViewWfViolations() -> [String] {
        guard (memView == nil) == (mvRange == nil) else { return ["mem_view and mv_range are not both present or both absent"] }
        guard let r = memView, let t = mvRange else { return [] }
        var problems: [String] = []
        if !r.mappingsAreDisjoint() { problems.append("the remaining view's mappings overlap") }
        if !t.mappingsAreDisjoint() { problems.append("the total view's mappings overlap") }
        if !r.mappings.isSubset(of: t.mappings) { problems.append("the remaining view has mappings the total view lacks") }
        if !Set(r.memory.keys).isSubset(of: t.memory.keys) { problems.append("the remaining view has frames the total view lacks") }
        let owned = writers.map(\.range)
        for va in MemView.probes([r, t], extra: owned.flatMap { [$0.lowerBound, $0.upperBound] }) {
            let mine = r.addrTransl(va)
            if (mine != nil || !owned.contains(where: { $0.contains(va) })) && !MemView.sameTransl(mine, t.addrTransl(va)) {
                problems.append("the remaining and total views translate \(va) differently")
                break
            }
        }
        for writer in writers { problems += writerViolations(writer, remaining: r, total: t) }
        for reader in readers { problems += readerViolations(reader, total: t) }
        return problems
    }

    /// The writer clauses of the corrected `mem_view_wf` for `writer`.
    func writerViolations(_ writer: VmIoOwnerModel, remaining r: MemView, total t: MemView) -> [String] {
        guard case .writeView(let w)? = writer.memView else { return ["writer \(writer.id) holds no write view"] }
        var problems: [String] = []
        let range = writer.range
        if !w.mappings.isSubset(of: t.mappings) { problems.append("writer \(writer.id) has mappings the total view lacks") }
        if !Set(w.memory.keys).isSubset(of: t.memory.keys) { problems.append("writer \(writer.id) has frames the total view lacks") }
        if w.mappings.intersection(r.mappings).contains(where: { range.lowerBound <= $0.va.lowerBound && $0.va.upperBound <= range.upperBound }) {
            problems.append("writer \(writer.id) shares a mapping inside its range with the remaining view")
        }
        if !w.translatesLike(t, extra: [range.lowerBound, range.upperBound], where: { range.contains($0) }) {
            problems.append("writer \(writer.id) translates its range unlike the total view")
        }
        // The bytes of the range, found through the writer's own translation (so R holding the
        // writer's frame without a mapping to it still counts).
        for piece in w.segments(range) {
            guard let m = piece.mapping, let frame = r.memory[m.pa.lowerBound] else { continue }
            if !frame.contents.noneInitialized((piece.range.lowerBound - m.va.lowerBound)..<(piece.range.upperBound - m.va.lowerBound)) {
                problems.append("the remaining view still holds bytes of writer \(writer.id)'s range \(piece.range.lowerBound)..<\(piece.range.upperBound)")
            }
        }
        return problems
    }

    /// The reader clause of the corrected `mem_view_wf` for `reader`.
    func readerViolations(_ reader: VmIoOwnerModel, total t: MemView) -> [String] {
        guard case .readView(let v)? = reader.memView else { return ["reader \(reader.id) holds no read view"] }
        let agrees = MemView.probes([v, t]).allSatisfy { v.addrTransl($0) == nil || MemView.sameTransl(v.addrTransl($0), t.addrTransl($0)) }
        return agrees ? [] : ["reader \(reader.id) translates an address unlike the total view"]
    }

    /// `mem_view_wf`, literally (000:167-248). Unsatisfiable with a writer that translates
    /// anything (defect 1); makes every view the whole space (defect 13).
    public func seedMemViewWf() -> Bool {
        guard (memView == nil) == (mvRange == nil) else { return false }
        guard let r = memView, let t = mvRange else { return true }
        let vas = MemView.probes([r, t] + (readers + writers).compactMap { $0.memView?.view })
        guard r.mappingsAreDisjoint(), t.mappingsAreDisjoint(), r.mappings.isSubset(of: t.mappings),
              Set(r.memory.keys).isSubset(of: t.memory.keys),
              vas.allSatisfy({ MemView.sameTransl(r.addrTransl($0), t.addrTransl($0)) }) else { return false }
        for writer in writers {
            guard case .writeView(let w)? = writer.memView else { return false }
            for va in vas {
                guard MemView.sameTransl(w.addrTransl(va), t.addrTransl(va)) else { return false }
                // 000:219 `!remaining_view.memory.contains_key(va)`: a VA among frame PAs, as written.
                if w.addrTransl(va) != nil && (r.addrTransl(va) != nil || r.memory[Paddr(va.rawValue)] != nil) { return false }
            }
            guard w.mappings.isDisjoint(with: r.mappings), w.mappings.isSubset(of: t.mappings),
                  Set(w.memory.keys).isSubset(of: t.memory.keys) else { return false }
        }
        for reader in readers {
            guard case .readView(let v)? = reader.memView,
                  vas.allSatisfy({ MemView.sameTransl(v.addrTransl($0), t.addrTransl($0)) }) else { return false }
        }
        return true
    }

    // MARK: inv

    /// `inv` (000:94-137), corrected (see the file comment): "`active ⟹ mem_view_wf() ∧ (mem_view
    /// is Some ⟹` every reader and writer `inv`, readers `disjoint` from writers, writers pairwise
    /// `disjoint`, and readers pairwise `disjoint` unless `shared_reader`)".
    public func inv() -> Bool { invViolations().isEmpty }

    /// What breaks the corrected `inv`, in words.
    public func invViolations() -> [String] {
        guard active else { return [] }
        var problems = memViewWfViolations()
        guard memView != nil else { return problems }
        for owner in readers + writers where !owner.inv() { problems.append("owner \(owner.id) breaks VmIoOwner::inv") }
        problems += VmSpaceOwnerModel.overlapViolations(readers: readers, writers: writers, sharedReader: sharedReader) { $0.disjoint($1) }
        return problems
    }

    /// `inv`, literally (000:94-137), over the literal `mem_view_wf`, `VmIoOwner::inv` and `disjoint`.
    public func seedInv() -> Bool {
        guard active else { return true }
        guard seedMemViewWf() else { return false }
        guard memView != nil else { return true }
        return (readers + writers).allSatisfy { $0.seedInv() }
            && VmSpaceOwnerModel.overlapViolations(readers: readers, writers: writers, sharedReader: sharedReader) { $0.seedDisjoint($1) }.isEmpty
    }

    /// The disjointness clauses of `inv` (000:112-134) under `disjoint`.
    static func overlapViolations(readers: [VmIoOwnerModel], writers: [VmIoOwnerModel], sharedReader: Bool,
                                  _ disjoint: (VmIoOwnerModel, VmIoOwnerModel) -> Bool) -> [String] {
        var problems: [String] = []
        for r in readers { for w in writers where !disjoint(r, w) { problems.append("reader \(r.id) and writer \(w.id) are not disjoint") } }
        for (i, a) in writers.enumerated() { for b in writers[(i + 1)...] where !disjoint(a, b) { problems.append("writers \(a.id) and \(b.id) are not disjoint") } }
        guard !sharedReader else { return problems }
        for (i, a) in readers.enumerated() { for b in readers[(i + 1)...] where !disjoint(a, b) { problems.append("readers \(a.id) and \(b.id) are not disjoint") } }
        return problems
    }

    // MARK: Admission

    /// `can_create_reader(vaddr, len)` (000:254-263): "no writer `overlaps_with_range(vaddr..vaddr+len)`",
    /// with the half-open overlap.
    public func canCreateReader(_ vaddr: Vaddr, _ len: Int) -> Bool {
        writers.allSatisfy { !$0.overlapsWithRange(vaddr..<(vaddr + len)) }
    }

    /// `can_create_writer(vaddr, len)` (000:268-282): "no reader and no writer overlaps", half-open.
    public func canCreateWriter(_ vaddr: Vaddr, _ len: Int) -> Bool {
        (readers + writers).allSatisfy { !$0.overlapsWithRange(vaddr..<(vaddr + len)) }
    }

    /// `can_create_reader`, literally (closed comparisons).
    public func seedCanCreateReader(_ vaddr: Vaddr, _ len: Int) -> Bool {
        writers.allSatisfy { !$0.seedOverlapsWithRange(vaddr..<(vaddr + len)) }
    }

    /// `can_create_writer`, literally (closed comparisons).
    public func seedCanCreateWriter(_ vaddr: Vaddr, _ len: Int) -> Bool {
        (readers + writers).allSatisfy { !$0.seedOverlapsWithRange(vaddr..<(vaddr + len)) }
    }

    /// `VmSpace::inv` (002:103-110): "every reader and every writer `inv`" — the handles'
    /// `cursor <= end` (`VmReader::inv`), which is each owner's `inv_wf`.
    public func vmSpaceInv() -> Bool { (readers + writers).allSatisfy { $0.invWf() } }
}

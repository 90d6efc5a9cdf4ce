// The seeds' `VmIoOwner` with its memory view (seed 001, `ostd/specs/mm/io.rs`; ref §3.1):
// the permission a reader or writer carries, as a value with every predicate of seed 001.
//
// Naming. The core already has public `VmIoOwner` and `VmIoMemView` (its run-time records: a
// range and the *kind* of view, without contents), and this module imports the core, so the same
// names here would be ambiguous at every use. The spec's types carry a `Model` suffix instead:
// `VmIoOwnerModel` is the seed's owner with a real `MemView` inside `VmIoMemViewModel`.
// `VmSpaceOwnerModel.init(space:)` builds them from a live space's records.
//
// Corrections (docs/SPEC.md), each next to the literal `seed…` version:
// - `overlapsWithRange` is half-open (defect 2): adjacent or empty ranges share no byte.
// - `disjoint` compares bytes, and allows two views to share a mapping only where neither owner's
//   range covers the whole mapping (byte ranges in one page, as the run time allows; defect 11).
// - `inv` does not require a fallible (user) handle's range to be translated: its faults are
//   reported (the seeds give such handles no view at all, ref §3.3, `from_user_space`).
//   `mappedBytesInitialized` is `readViewInitialized` for the same reason.

@_spi(OSTDInternals) import OSTDMemory

/// The view an owner holds (the seeds' `VmIoMemView { WriteView(MemView), ReadView(MemView) }`).
public enum VmIoMemViewModel: Equatable, Sendable {
    case writeView(MemView)
    case readView(MemView)

    /// The view inside.
    public var view: MemView {
        switch self {
        case .writeView(let mv), .readView(let mv): return mv
        }
    }

    /// The kind, as the core records it.
    public var kind: VmIoMemView {
        switch self {
        case .writeView: return .writeView
        case .readView: return .readView
        }
    }
}

/// The seeds' `VmIoOwner { id, range, is_fallible, is_kernel, mem_view }`.
public struct VmIoOwnerModel: Equatable, Sendable {
    public var id: UInt64
    public var range: Range<Vaddr>
    public var isFallible: Bool
    public var isKernel: Bool
    public var memView: VmIoMemViewModel?

    public init(id: UInt64, range: Range<Vaddr>, isFallible: Bool, isKernel: Bool, memView: VmIoMemViewModel?) {
        self.id = id
        self.range = range
        self.isFallible = isFallible
        self.isKernel = isKernel
        self.memView = memView
    }

    /// The core's record `owner` holding `view` (of the kind the record names; none if it holds none).
    public init(_ owner: VmIoOwner, view: MemView) {
        let model: VmIoMemViewModel? = switch owner.memView {
        case .readView?: .readView(view)
        case .writeView?: .writeView(view)
        case nil: nil
        }
        self.init(id: owner.id, range: owner.range, isFallible: owner.isFallible, isKernel: owner.isKernel, memView: model)
    }

    // MARK: Views

    /// `has_read_view` (001, file line 23): "`mem_view matches Some(ReadView(_))`".
    public func hasReadView() -> Bool { memView?.kind == .readView }

    /// `has_write_view` (001, file line 26): "`mem_view matches Some(WriteView(_))`".
    public func hasWriteView() -> Bool { memView?.kind == .writeView }

    /// `can_read` (001, file line 29): "`has_read_view()`".
    public func canRead() -> Bool { hasReadView() }

    /// `can_write` (001, file line 32): "`has_write_view()`".
    public func canWrite() -> Bool { hasWriteView() }

    /// `read_view_of` (001, file lines 183-189): the read view, "arbitrary" (nil) otherwise.
    public func readViewOf() -> MemView? {
        if case .readView(let mv)? = memView { return mv }
        return nil
    }

    // MARK: Invariants

    /// `inv_wf` (ref §3.1): "`range.start <= range.end`" (a Swift `Range` cannot break it).
    public func invWf() -> Bool { range.lowerBound <= range.upperBound }

    /// `inv` (001, file lines 214-240): "`inv_wf()`, and a view, if held, has
    /// `mappings_are_disjoint()` and `∀ va ∈ range. addr_transl(va) is Some`", without the
    /// translation clause for a fallible handle (see the file comment).
    public func inv() -> Bool {
        guard invWf() else { return false }
        guard let mv = memView?.view else { return true }
        return mv.mappingsAreDisjoint() && (isFallible || mv.translatesAll(range))
    }

    /// `inv`, literally (001, file lines 214-240).
    public func seedInv() -> Bool {
        guard invWf() else { return false }
        guard let mv = memView?.view else { return true }
        return mv.mappingsAreDisjoint() && mv.translatesAll(range)
    }

    /// `read_view_initialized` (001, file lines 34-53): "`mem_view = Some(ReadView(mv))` and for
    /// every `i` in range: `mv.addr_transl(i) is Some`, its frame is in `mv.memory`, and
    /// `contents[off] is Init`".
    public func readViewInitialized() -> Bool {
        guard let mv = readViewOf() else { return false }
        return mv.segments(range).allSatisfy { VmIoOwnerModel.initialized($0.range, $0.mapping, in: mv) }
    }

    /// `read_view_initialized` for a fallible handle: every byte of the range that the read view
    /// translates is present and initialised (untranslated bytes fault and are reported).
    public func mappedBytesInitialized() -> Bool {
        guard let mv = readViewOf() else { return false }
        return mv.segments(range).allSatisfy { $0.mapping == nil || VmIoOwnerModel.initialized($0.range, $0.mapping, in: mv) }
    }

    /// Whether `mv` holds initialised contents for every byte of `piece`, which `mapping` translates.
    static func initialized(_ piece: Range<Vaddr>, _ mapping: Mapping?, in mv: MemView) -> Bool {
        guard let m = mapping, let frame = mv.memory[m.pa.lowerBound] else { return false }
        return frame.contents.allInitialized((piece.lowerBound - m.va.lowerBound)..<(piece.upperBound - m.va.lowerBound))
    }

    // MARK: Overlap

    /// `overlaps_with_range(r)`, corrected (defect 2): the ranges share a byte.
    public func overlapsWithRange(_ other: Range<Vaddr>) -> Bool {
        !range.isEmpty && !other.isEmpty && range.lowerBound < other.upperBound && other.lowerBound < range.upperBound
    }

    /// `overlaps_with_range(r)`, literally (001, file lines 58-62): "`self.range.start <= range.end
    /// && range.start <= self.range.end`".
    public func seedOverlapsWithRange(_ other: Range<Vaddr>) -> Bool {
        range.lowerBound <= other.upperBound && other.lowerBound <= range.upperBound
    }

    /// `disjoint(other)`, corrected (see the file comment): no shared byte, and a mapping both
    /// views hold is not wholly inside either owner's range.
    public func disjoint(_ other: VmIoOwnerModel) -> Bool {
        guard !overlapsWithRange(other.range) else { return false }
        guard let a = memView?.view, let b = other.memView?.view else { return true }
        return a.mappings.intersection(b.mappings).allSatisfy { !covers(range, $0.va) && !covers(other.range, $0.va) }
    }

    /// `disjoint(other)`, literally (001, file lines 63-85): "`!overlaps_with_range(other.range)`
    /// and, when both hold views, `lmv.mappings.disjoint(rmv.mappings)`".
    public func seedDisjoint(_ other: VmIoOwnerModel) -> Bool {
        guard !seedOverlapsWithRange(other.range) else { return false }
        guard let a = memView?.view, let b = other.memView?.view else { return true }
        return a.mappings.isDisjoint(with: b.mappings)
    }

    /// `overlaps(other)` (001, file line 56): "`!self.disjoint(other)`".
    public func overlaps(_ other: VmIoOwnerModel) -> Bool { !disjoint(other) }

    /// `params_eq(other)` (001, file lines 87-91): "`range == other.range && is_fallible ==
    /// other.is_fallible`".
    public func paramsEq(_ other: VmIoOwnerModel) -> Bool { range == other.range && isFallible == other.isFallible }
}

/// Whether `outer` holds every address of `inner`.
private func covers(_ outer: Range<Vaddr>, _ inner: Range<Vaddr>) -> Bool {
    outer.lowerBound <= inner.lowerBound && inner.upperBound <= outer.upperBound
}

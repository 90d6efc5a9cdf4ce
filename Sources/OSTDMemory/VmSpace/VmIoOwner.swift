// The seeds' `VmIoOwner` (ostd/specs/mm/io.rs), as the run-time record of one reader or writer.
//
// In Verus the owner is a ghost permission that travels with a `VmReader` / `VmWriter`; here it
// is a small object shared by the handle and its space's `VmSpaceOwner`, so the space can check
// the admission rules against the live ranges. The handle keeps `range.start` equal to its
// cursor and `range.end` to its end (the seeds' `VmReader::wf`), so a reader or writer holds
// only the part it has not consumed yet.
//
// The seeds' `mem_view` carries a `MemView` (mappings and memory contents); the run time keeps
// which kind of view is held. Deliberate difference: overlap is tested on half-open byte ranges,
// where the seeds compare closed ends (`<=` on both sides), so that adjacent ranges `[a, b)` and
// `[b, c)`, which share no byte, may be held by a reader and a writer at once; and two handles
// are disjoint when their bytes are, even inside one page (the seeds also compare the views'
// mapping sets, which are page-granular).

import Synchronization

/// The kind of view a reader or writer holds (the seeds' `VmIoMemView`).
public enum VmIoMemView: UInt8, Equatable, Sendable {
    /// Shared permission to read (`ReadView`).
    case readView = 1
    /// Exclusive permission to write (`WriteView`).
    case writeView = 2
}

/// The permission record of one user-space reader or writer (the seeds' `VmIoOwner`).
public final class VmIoOwner: @unchecked Sendable {
    /// The owner's identity (the seeds' `id`, from `new_vm_io_id`).
    public internal(set) var id: UInt64
    @usableFromInline let start: Atomic<UInt64>
    @usableFromInline let end: Atomic<UInt64>
    @usableFromInline let view = Atomic<UInt8>(0)
    /// Whether the handle may fault (the seeds' `is_fallible`); user-space handles always may.
    public let isFallible: Bool
    /// Whether the memory is kernel memory (the seeds' `is_kernel`).
    public let isKernel: Bool

    init(id: UInt64, range: Range<Vaddr>, isFallible: Bool, isKernel: Bool) {
        self.id = id
        start = Atomic(range.lowerBound.rawValue)
        end = Atomic(range.upperBound.rawValue)
        self.isFallible = isFallible
        self.isKernel = isKernel
    }

    /// The bytes the handle still owns: from its cursor to its end (the seeds' `range`).
    public var range: Range<Vaddr> {
        let lower = start.load(ordering: .relaxed)
        return Vaddr(lower)..<Vaddr(max(lower, end.load(ordering: .relaxed)))
    }

    /// The view held, or `nil` while the handle is disposed (the seeds' `mem_view`).
    public internal(set) var memView: VmIoMemView? {
        get { VmIoMemView(rawValue: view.load(ordering: .relaxed)) }
        set { view.store(newValue?.rawValue ?? 0, ordering: .relaxed) }
    }

    // MARK: The seeds' predicates

    /// `inv_wf`: "`range.start <= range.end`".
    public func invWf() -> Bool { start.load(ordering: .relaxed) <= end.load(ordering: .relaxed) }

    /// `has_read_view`: "`mem_view matches Some(ReadView(_))`".
    public func hasReadView() -> Bool { memView == .readView }

    /// `has_write_view`: "`mem_view matches Some(WriteView(_))`".
    public func hasWriteView() -> Bool { memView == .writeView }

    /// `can_read`: "`has_read_view()`" — ready to be the readable side of a copy.
    public func canRead() -> Bool { hasReadView() }

    /// `can_write`: "`has_write_view()`" — ready to be the writable side of a copy.
    public func canWrite() -> Bool { hasWriteView() }

    /// `overlaps_with_range(r)`: the seeds check "`self.range.start <= r.end && r.start <=
    /// self.range.end`". Deliberately half-open here: the ranges share a byte, "`start < r.end
    /// && r.start < end`" (see the file comment).
    public func overlapsWithRange(_ other: Range<Vaddr>) -> Bool {
        let mine = range
        return mine.lowerBound < other.upperBound && other.lowerBound < mine.upperBound
    }

    /// `disjoint(other)`: "`!overlaps_with_range(other.range)`" and, when both hold views,
    /// disjoint view mappings. Byte ranges only here (see the file comment).
    public func disjoint(_ other: VmIoOwner) -> Bool { !overlapsWithRange(other.range) }

    /// `overlaps(other)`: "`!disjoint(other)`".
    public func overlaps(_ other: VmIoOwner) -> Bool { !disjoint(other) }

    /// `params_eq(other)`: "`range == other.range && is_fallible == other.is_fallible`".
    public func paramsEq(_ other: VmIoOwner) -> Bool { range == other.range && isFallible == other.isFallible }

    /// `inv`: "`inv_wf()`, and a view, if held, is well formed and translates the range". The
    /// run time holds no `MemView`, and a fallible handle's range need not be mapped (its faults
    /// are reported, or resolved by the space's handler), so only `inv_wf` is checked.
    public func inv() -> Bool { invWf() }
}

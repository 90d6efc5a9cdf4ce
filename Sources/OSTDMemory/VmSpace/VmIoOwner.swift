// The seeds' `VmIoOwner` (ostd/specs/mm/io.rs), and the run-time record of one reader or writer.
//
// In Verus the owner is a ghost permission that travels with a `VmReader` / `VmWriter`; here the
// handle and its space share a small record (`IoRecord`), so the space can check the admission
// rules against the live ranges, and `VmIoOwner` is the record read as the seeds' value. The handle keeps `range.start` equal to its
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

/// The live registration of one user-space reader or writer. Records live in slabs that the
/// space owns, so a handle reaches its record through a plain pointer (no reference counting):
/// the handle keeps `start` at its cursor and `end` at its end; the space reads them, and
/// changes `view` and `id`, under its owner lock.
@usableFromInline
struct IoRecord: ~Copyable {
    @usableFromInline let start = Atomic<UInt64>(0)
    @usableFromInline let end = Atomic<UInt64>(0)
    /// `VmIoMemView.rawValue`, or 0 while the handle is disposed.
    @usableFromInline let view = Atomic<UInt8>(0)
    /// Written under the owner lock before the handle exists.
    @usableFromInline var id: UInt64 = 0

    init() {}
}

// The invariant the members below rely on: `self` is a record in a space's registry slabs
// (`IoRegistry`), live while its handle (which holds the space) or the space's lock holder uses
// it; `start`, `end` and `view` are atomics, and `id` is written under the owner lock before the
// record is handed to a handle, then only read.
extension UnsafeMutablePointer where Pointee == IoRecord {
    /// The bytes the handle still owns: from its cursor to its end.
    var range: Range<Vaddr> {
        // SAFETY: a live record (see above); atomic loads.
        let lower = unsafe pointee.start.load(ordering: .relaxed)
        return unsafe Vaddr(lower)..<Vaddr(Swift.max(lower, pointee.end.load(ordering: .relaxed)))
    }

    /// The view held, or `nil` while disposed.
    var memView: VmIoMemView? {
        // SAFETY: a live record (see above); an atomic load.
        VmIoMemView(rawValue: unsafe pointee.view.load(ordering: .relaxed))
    }

    /// The record as the seeds' `VmIoOwner`.
    var snapshot: VmIoOwner {
        // SAFETY: a live record (see above); `id` is no longer written once the handle has it.
        unsafe VmIoOwner(id: pointee.id, range: range, isFallible: true, isKernel: false, memView: memView)
    }
}

/// The permission of one reader or writer (the seeds' `VmIoOwner`), as a value: what a handle's
/// registration held when it was read.
public struct VmIoOwner: Equatable, Sendable {
    /// The owner's identity (the seeds' `id`, from `new_vm_io_id`).
    public var id: UInt64
    /// The bytes the handle still owns: from its cursor to its end (the seeds' `range`).
    public var range: Range<Vaddr>
    /// Whether the handle may fault (the seeds' `is_fallible`); user-space handles always may.
    public var isFallible: Bool
    /// Whether the memory is kernel memory (the seeds' `is_kernel`).
    public var isKernel: Bool
    /// The view held, or `nil` while the handle is disposed (the seeds' `mem_view`).
    public var memView: VmIoMemView?

    public init(id: UInt64, range: Range<Vaddr>, isFallible: Bool, isKernel: Bool, memView: VmIoMemView?) {
        self.id = id
        self.range = range
        self.isFallible = isFallible
        self.isKernel = isKernel
        self.memView = memView
    }

    // MARK: The seeds' predicates

    /// `inv_wf`: "`range.start <= range.end`".
    public func invWf() -> Bool { range.lowerBound <= range.upperBound }

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
    /// && r.start < end`" with both non-empty (see the file comment), so a handle that has
    /// consumed all its bytes holds nothing.
    public func overlapsWithRange(_ other: Range<Vaddr>) -> Bool { halfOpenOverlap(range, other) }

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

/// Whether two byte ranges share a byte (an empty range shares none, even inside the other).
@inline(__always)
func halfOpenOverlap(_ a: Range<Vaddr>, _ b: Range<Vaddr>) -> Bool {
    !a.isEmpty && !b.isEmpty && a.lowerBound < b.upperBound && b.lowerBound < a.upperBound
}

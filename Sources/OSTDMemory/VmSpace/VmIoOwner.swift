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

/// The live registration of one user-space reader or writer. Records live in memory the space
/// owns (its fast slots, or the slabs of its locked registry: `IoRegistry`), so a handle reaches
/// its record through a plain pointer (no reference counting): the handle keeps `start` at its
/// cursor and `end` at its end; the space reads them, and changes `state` and `id`, by the rules
/// of `VmSpace+Registry.swift`. Every field is an atomic: a fast slot is read by other CPUs'
/// admissions while its owner reuses it.
@usableFromInline
struct IoRecord: ~Copyable {
    @usableFromInline let start = Atomic<UInt64>(0)
    @usableFromInline let end = Atomic<UInt64>(0)
    /// `IoRecordState`: the activation stamp, the phase of a fast slot and the view held
    /// (`VmIoMemView.rawValue` in the low two bits, 0 while the handle is disposed).
    @usableFromInline let state = Atomic<UInt64>(0)
    /// The seeds' `id` (from `new_vm_io_id`), written before the record is published.
    @usableFromInline let id = Atomic<UInt64>(0)

    init() {}
}

/// The bits of `IoRecord.state`: `stamp << 4 | phase << 2 | view`.
///
/// - `view` (bits 0–1): `VmIoMemView.rawValue`, 0 while disposed.
/// - `phase` (bits 2–3), meaningful for fast slots: `free` (the whole word is 0), `claimed` (a
///   pool slot taken by a compare-exchange, its range being written), `pending` (range and view
///   published, the admission deciding), `active` (a live handle's, disposed or not). A record of
///   the locked registry is always `active`.
/// - `stamp` (bits 4–63): the ticket of the handle's last activation; the owner's lists are in
///   stamp order (the seeds' lists are in activation order).
@usableFromInline
enum IoRecordState {
    @inlinable static var viewMask: UInt64 { 0b11 }
    @inlinable static var free: UInt64 { 0 }
    @inlinable static var claimed: UInt64 { 1 << 2 }
    @inlinable static var pending: UInt64 { 2 << 2 }
    @inlinable static var active: UInt64 { 3 << 2 }
    @inlinable static var phaseMask: UInt64 { 3 << 2 }

    /// The state of a handle activated with `stamp`, holding `view` (`nil`: disposed).
    @inlinable @inline(__always)
    static func active(stamp: UInt64, view: VmIoMemView?) -> UInt64 {
        stamp << 4 | active | UInt64(view?.rawValue ?? 0)
    }

    @inlinable @inline(__always)
    static func stamp(_ state: UInt64) -> UInt64 { state >> 4 }
}

// The invariant the members below rely on: `self` is a record of a space's registry (a fast slot
// or a slab record, `IoRegistry`), live while its handle (which holds the space) or the space's
// lock holder uses it; every field is an atomic.
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
        VmIoMemView(rawValue: UInt8(truncatingIfNeeded: unsafe pointee.state.load(ordering: .relaxed) & IoRecordState.viewMask))
    }

    /// The record as the seeds' `VmIoOwner`.
    var snapshot: VmIoOwner {
        // SAFETY: a live record (see above); atomic loads.
        unsafe VmIoOwner(id: pointee.id.load(ordering: .relaxed), range: range, isFallible: true, isKernel: false,
                         memView: memView)
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

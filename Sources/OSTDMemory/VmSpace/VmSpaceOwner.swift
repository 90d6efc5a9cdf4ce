// The seeds' `VmSpaceOwner` (ostd/specs/mm/vm_space.rs): which readers and writers of a space hold
// a view, and the admission rules for new ones.
//
// The seeds' lifecycle of a reader or writer is create → activate → use → dispose → remove. Here:
// - `createReader` / `createWriter` check the preconditions and `can_create_reader` /
//   `can_create_writer`, then activate at once (a handle without a view is of no use);
// - `readers` and `writers` list the handles that hold a view: activation adds to them, disposal
//   takes out (the permission comes back; the handle can be activated again), removal ends the
//   handle (dropping it does the same, so no registration outlives its handle).
// The seeds' text is ambiguous on where a disposed owner goes (`dispose_*` pushes it to the
// lists that `inv` checks for overlap); the reading above is the one under which disposal returns
// the permission, which is what the seeds' documentation says it does.
//
// Two types: `IoRegistry` is the live bookkeeping a space keeps under its owner lock (records in
// slabs, lists of record pointers); `VmSpaceOwner` is the seeds' owner as a value, a snapshot of
// it, with the seeds' predicates. Admission runs on the registry with the same overlap test.

import Synchronization

/// The readers and writers of a space at one moment, with the seeds' predicates (the seeds'
/// `VmSpaceOwner`).
public struct VmSpaceOwner: Equatable, Sendable {
    /// Handles holding a read view (the seeds' `readers`).
    public internal(set) var readers: [VmIoOwner]
    /// Handles holding the write view of their range (the seeds' `writers`).
    public internal(set) var writers: [VmIoOwner]
    /// Whether readers may overlap one another (the seeds' `shared_reader`).
    public internal(set) var sharedReader: Bool
    /// Whether the space is active on the CPU that took this snapshot (the seeds' `active`).
    public internal(set) var active: Bool

    /// `can_create_reader(vaddr, len)`: "no active writer `overlaps_with_range(vaddr..vaddr+len)`".
    public func canCreateReader(_ vaddr: Vaddr, _ len: Int) -> Bool {
        firstConflict(vaddr..<(vaddr + len), readersKeepOut: false) == nil
    }

    /// `can_create_writer(vaddr, len)`: "no active reader and no active writer
    /// `overlaps_with_range(vaddr..vaddr+len)`".
    public func canCreateWriter(_ vaddr: Vaddr, _ len: Int) -> Bool {
        firstConflict(vaddr..<(vaddr + len),
                      readersKeepOut: VmSpaceOwner.readersKeepOut(.writeView, sharedReader: sharedReader)) == nil
    }

    /// What `createReader` admits: `canCreateReader`, and, unless `shared_reader`, no active
    /// reader overlapping either (the reader-disjointness clause of `inv`, which the seeds leave
    /// to the proof of `dispose_reader`).
    public func admitsReader(_ vaddr: Vaddr, _ len: Int) -> Bool {
        firstConflict(vaddr..<(vaddr + len),
                      readersKeepOut: VmSpaceOwner.readersKeepOut(.readView, sharedReader: sharedReader)) == nil
    }

    /// The admission rule, defined once: an overlapping active writer keeps every new handle
    /// out; overlapping active readers keep out a handle holding `view` exactly when this is
    /// `true` (a writer, or a reader when readers are not shared). The predicates above and the
    /// space's admission of new and re-activated handles (`IoRegistry.firstConflict`) apply it.
    @inline(__always)
    static func readersKeepOut(_ view: VmIoMemView, sharedReader: Bool) -> Bool {
        view == .writeView || !sharedReader
    }

    /// The first active handle whose range overlaps `range`: a writer, or, when
    /// `readersKeepOut`, a reader.
    func firstConflict(_ range: Range<Vaddr>, readersKeepOut: Bool) -> Range<Vaddr>? {
        for writer in writers where writer.overlapsWithRange(range) { return writer.range }
        guard readersKeepOut else { return nil }
        for reader in readers where reader.overlapsWithRange(range) { return reader.range }
        return nil
    }

    /// `inv`, the clauses that hold at run time: "readers and writers are valid (`inv`); every
    /// reader is `disjoint` from every writer; writers are pairwise disjoint; and, unless
    /// `shared_reader`, readers are pairwise disjoint". (`mem_view_wf` relates `MemView`s, which
    /// the run time does not keep.)
    public func inv() -> Bool {
        guard readers.allSatisfy({ $0.inv() }), writers.allSatisfy({ $0.inv() }) else { return false }
        for reader in readers where writers.contains(where: { !reader.disjoint($0) }) { return false }
        for (i, a) in writers.enumerated() where writers[(i + 1)...].contains(where: { !a.disjoint($0) }) {
            return false
        }
        if !sharedReader {
            for (i, a) in readers.enumerated() where readers[(i + 1)...].contains(where: { !a.disjoint($0) }) {
                return false
            }
        }
        return true
    }
}

/// A space's live reader and writer bookkeeping, used under its owner lock.
///
/// `@safe`: every record pointer it holds or hands out points into one of its slabs, which are
/// allocated by `makeRecord`, never moved, and freed only by `deinit` (with the space, which
/// every handle holding a record keeps alive); `readers`, `writers` and `free` hold records of
/// these slabs only. A record's range and view are atomics; the rest is changed under the
/// space's owner lock.
@safe
struct IoRegistry: ~Copyable {
    typealias Record = UnsafeMutablePointer<IoRecord>

    // SAFETY: empty arrays of record pointers; nothing is dereferenced.
    var readers: [Record] = unsafe []
    var writers: [Record] = unsafe []
    var sharedReader: Bool
    var lastId: UInt64 = 0
    /// Slabs of records (never moved, so handles may point into them) and the free ones.
    // SAFETY: empty arrays of record pointers; nothing is dereferenced.
    var slabs: [Record] = unsafe []
    var free: [Record] = unsafe []

    static var slabSize: Int { 32 }

    init(sharedReader: Bool) { self.sharedReader = sharedReader }

    deinit {
        // SAFETY: each slab was allocated and initialised whole by `makeRecord`; the registry is
        // noncopyable and goes with its space, after the last handle (each holds the space).
        for unsafe slab in unsafe slabs {
            unsafe slab.deinitialize(count: IoRegistry.slabSize)
            unsafe slab.deallocate()
        }
    }

    /// The seeds' owner as a value.
    func snapshot(active: Bool) -> VmSpaceOwner {
        // SAFETY: the active records are in this registry's slabs (see the type).
        unsafe VmSpaceOwner(readers: readers.map { unsafe $0.snapshot }, writers: writers.map { unsafe $0.snapshot },
                            sharedReader: sharedReader, active: active)
    }

    /// `new_vm_io_id`: a fresh id, never used by another handle of this space.
    mutating func newVmIoId() -> UInt64 {
        lastId += 1
        return lastId
    }

    /// The range of the first active handle that keeps a handle holding `view` over `range` out,
    /// ignoring `excluded`: any writer; for a writer also any reader; for a reader also any
    /// reader unless readers are shared (`can_create_*` and the disjointness clauses of `inv`).
    /// `ignoringWriters` is for a mutation test only (`CoreMutants.readerAdmissionIgnoresWriters`).
    func firstConflict(_ range: Range<Vaddr>, view: VmIoMemView, excluding excluded: Record? = nil,
                       ignoringWriters: Bool = false) -> Range<Vaddr>? {
        // SAFETY: the active records are in this registry's slabs (see the type); their ranges
        // are atomics, and `excluded` is only compared.
        for unsafe writer in unsafe writers where unsafe writer != excluded && !ignoringWriters {
            let other = unsafe writer.range
            if halfOpenOverlap(other, range) { return other }
        }
        guard VmSpaceOwner.readersKeepOut(view, sharedReader: sharedReader) else { return nil }
        for unsafe reader in unsafe readers where unsafe reader != excluded {
            let other = unsafe reader.range
            if halfOpenOverlap(other, range) { return other }
        }
        return nil
    }

    /// A fresh record over `range` with a new id, not yet holding a view.
    mutating func makeRecord(_ range: Range<Vaddr>) -> Record {
        // SAFETY: a new slab is allocated and initialised whole (`i < slabSize`), and only its own
        // records go to `free`; the record taken is a free one of this registry's slabs, not used
        // by any handle, so writing its `id` races with no one (the owner lock is held).
        if unsafe free.isEmpty {
            let slab = Record.allocate(capacity: IoRegistry.slabSize)
            for i in 0..<IoRegistry.slabSize { unsafe (slab + i).initialize(to: IoRecord()) }
            unsafe slabs.append(slab)
            for i in stride(from: IoRegistry.slabSize - 1, through: 0, by: -1) { unsafe free.append(slab + i) }
        }
        let record = unsafe free.removeLast()
        unsafe record.pointee.id = newVmIoId()
        unsafe record.pointee.start.store(range.lowerBound.rawValue, ordering: .relaxed)
        unsafe record.pointee.end.store(range.upperBound.rawValue, ordering: .relaxed)
        unsafe record.pointee.view.store(0, ordering: .relaxed)
        return unsafe record
    }

    /// Gives `record` `view` (the seeds' `activate_reader` / `activate_writer`).
    mutating func activate(_ record: Record, view: VmIoMemView) {
        // SAFETY: `record` is one of this registry's records (its callers' contract: made by
        // `makeRecord`, held by a live handle); `view` is an atomic.
        unsafe record.pointee.view.store(view.rawValue, ordering: .relaxed)
        if view == .readView { unsafe readers.append(record) } else { unsafe writers.append(record) }
    }

    /// Takes `record`'s view back (the seeds' `dispose_*`).
    mutating func dispose(_ record: Record) {
        // SAFETY: `record` is one of this registry's records, as in `activate`.
        switch unsafe record.memView {
        case .readView?: if let i = unsafe readers.lastIndex(of: record) { unsafe readers.remove(at: i) }
        case .writeView?: if let i = unsafe writers.lastIndex(of: record) { unsafe writers.remove(at: i) }
        case nil: break
        }
        unsafe record.pointee.view.store(0, ordering: .relaxed)
    }

    /// Ends `record` (the seeds' `remove_*`): its view comes back and the record is reused.
    mutating func remove(_ record: Record) {
        // SAFETY: `record` is one of this registry's records, as in `activate`; its handle is
        // ending, so it may be reused.
        unsafe dispose(record)
        unsafe free.append(record)
    }
}

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
struct IoRegistry: ~Copyable {
    typealias Record = UnsafeMutablePointer<IoRecord>

    var readers: [Record] = []
    var writers: [Record] = []
    var sharedReader: Bool
    var lastId: UInt64 = 0
    /// Slabs of records (never moved, so handles may point into them) and the free ones.
    var slabs: [Record] = []
    var free: [Record] = []

    static var slabSize: Int { 32 }

    init(sharedReader: Bool) { self.sharedReader = sharedReader }

    deinit {
        for slab in slabs {
            slab.deinitialize(count: IoRegistry.slabSize)
            slab.deallocate()
        }
    }

    /// The seeds' owner as a value.
    func snapshot(active: Bool) -> VmSpaceOwner {
        VmSpaceOwner(readers: readers.map { $0.snapshot }, writers: writers.map { $0.snapshot },
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
        for writer in writers where writer != excluded && !ignoringWriters {
            let other = writer.range
            if halfOpenOverlap(other, range) { return other }
        }
        guard VmSpaceOwner.readersKeepOut(view, sharedReader: sharedReader) else { return nil }
        for reader in readers where reader != excluded {
            let other = reader.range
            if halfOpenOverlap(other, range) { return other }
        }
        return nil
    }

    /// A fresh record over `range` with a new id, not yet holding a view.
    mutating func makeRecord(_ range: Range<Vaddr>) -> Record {
        if free.isEmpty {
            let slab = Record.allocate(capacity: IoRegistry.slabSize)
            for i in 0..<IoRegistry.slabSize { (slab + i).initialize(to: IoRecord()) }
            slabs.append(slab)
            for i in stride(from: IoRegistry.slabSize - 1, through: 0, by: -1) { free.append(slab + i) }
        }
        let record = free.removeLast()
        record.pointee.id = newVmIoId()
        record.pointee.start.store(range.lowerBound.rawValue, ordering: .relaxed)
        record.pointee.end.store(range.upperBound.rawValue, ordering: .relaxed)
        record.pointee.view.store(0, ordering: .relaxed)
        return record
    }

    /// Gives `record` `view` (the seeds' `activate_reader` / `activate_writer`).
    mutating func activate(_ record: Record, view: VmIoMemView) {
        record.pointee.view.store(view.rawValue, ordering: .relaxed)
        if view == .readView { readers.append(record) } else { writers.append(record) }
    }

    /// Takes `record`'s view back (the seeds' `dispose_*`).
    mutating func dispose(_ record: Record) {
        switch record.memView {
        case .readView?: if let i = readers.lastIndex(of: record) { readers.remove(at: i) }
        case .writeView?: if let i = writers.lastIndex(of: record) { writers.remove(at: i) }
        case nil: break
        }
        record.pointee.view.store(0, ordering: .relaxed)
    }

    /// Ends `record` (the seeds' `remove_*`): its view comes back and the record is reused.
    mutating func remove(_ record: Record) {
        dispose(record)
        free.append(record)
    }
}

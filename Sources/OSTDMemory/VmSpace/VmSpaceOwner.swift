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

/// The run-time bookkeeping of a space's readers and writers (the seeds' `VmSpaceOwner`).
public struct VmSpaceOwner {
    /// Handles holding a read view (the seeds' `readers`).
    public internal(set) var readers: [VmIoOwner] = []
    /// Handles holding the write view of their range (the seeds' `writers`).
    public internal(set) var writers: [VmIoOwner] = []
    /// Whether readers may overlap one another (the seeds' `shared_reader`).
    public internal(set) var sharedReader: Bool
    /// Whether the space is active on the CPU that took this snapshot (the seeds' `active`).
    public internal(set) var active = false
    var lastId: UInt64 = 0

    init(sharedReader: Bool) { self.sharedReader = sharedReader }

    // MARK: The seeds' predicates

    /// `can_create_reader(vaddr, len)`: "no active writer `overlaps_with_range(vaddr..vaddr+len)`".
    public func canCreateReader(_ vaddr: Vaddr, _ len: Int) -> Bool {
        firstConflict(vaddr..<(vaddr + len), view: .readView, excluding: nil, sharedReaders: true) == nil
    }

    /// `can_create_writer(vaddr, len)`: "no active reader and no active writer
    /// `overlaps_with_range(vaddr..vaddr+len)`".
    public func canCreateWriter(_ vaddr: Vaddr, _ len: Int) -> Bool {
        firstConflict(vaddr..<(vaddr + len), view: .writeView, excluding: nil) == nil
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

    /// `new_vm_io_id`: a fresh id, never used by another handle of this space.
    mutating func newVmIoId() -> UInt64 {
        lastId += 1
        return lastId
    }

    // MARK: Admission and the lifecycle

    /// The first active handle that keeps a handle holding `view` over `range` out, ignoring
    /// `excluded`: any writer; for a writer also any reader; for a reader also any reader unless
    /// readers are shared.
    func firstConflict(_ range: Range<Vaddr>, view: VmIoMemView, excluding excluded: VmIoOwner?,
                       sharedReaders: Bool? = nil) -> VmIoOwner? {
        let checkReaders = view == .writeView || !(sharedReaders ?? sharedReader)
        if let writer = writers.first(where: { $0 !== excluded && $0.overlapsWithRange(range) }) { return writer }
        guard checkReaders else { return nil }
        return readers.first(where: { $0 !== excluded && $0.overlapsWithRange(range) })
    }

    /// Gives `handle` `view` (the seeds' `activate_reader` / `activate_writer`).
    mutating func activate(_ handle: VmIoOwner, view: VmIoMemView) {
        handle.memView = view
        if view == .readView { readers.append(handle) } else { writers.append(handle) }
    }

    /// Takes `handle`'s view back (the seeds' `dispose_*` and `remove_*`).
    mutating func dispose(_ handle: VmIoOwner) {
        switch handle.memView {
        case .readView?: if let i = readers.lastIndex(where: { $0 === handle }) { readers.remove(at: i) }
        case .writeView?: if let i = writers.lastIndex(where: { $0 === handle }) { writers.remove(at: i) }
        case nil: break
        }
        handle.memView = nil
    }
}

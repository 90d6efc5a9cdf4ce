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
// The types: `IoRegistry` is the live bookkeeping a space keeps (fast slots that admissions claim
// without a lock, and behind them `LockedIoRegistry`, records in slabs and lists of record
// pointers under the space's owner lock; the protocol is `VmSpace+Registry.swift`'s);
// `VmSpaceOwner` is the seeds' owner as a value, a snapshot of it, with the seeds' predicates.
// Admission runs on the registry with the same rule (`readersKeepOut`) and overlap test.

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

/// A space's live reader and writer bookkeeping: a small table of fast slots, which admissions
/// claim without the owner lock when nothing conflicts, and the locked registry behind it (records
/// in slabs, lists of record pointers) for what does not fit in the table. The protocol that
/// keeps the two consistent is `VmSpace+Registry.swift`'s; this type holds the state and does the
/// bookkeeping under it.
///
/// `@safe`: `slots` (`slotCount` records) and `locked` are allocated by `init` and freed only by
/// `deinit`, with the space, after the last handle (each holds the space); the records of
/// `locked`'s slabs likewise. Every record pointer it holds or hands out points into `slots` or
/// one of those slabs. `admission`, `sharedReader` and every field of a record are atomics;
/// `locked.pointee` is changed only under the space's owner lock.
@safe
struct IoRegistry: ~Copyable {
    typealias Record = UnsafeMutablePointer<IoRecord>

    /// Fast slots shared by every thread, claimed with a compare-exchange: threads on no CPU, CPUs
    /// without slots of their own, CPUs whose own slots are taken. They come first in `slots`.
    static var poolSlots: Int { 4 }
    /// Fast slots each of the first `ownedCpus` CPUs has of its own, claimed with a plain store by
    /// the one thread on that CPU (a reader and a writer at once, as a copy takes).
    static var slotsPerCpu: Int { 2 }
    static var ownedCpus: Int { 8 }
    static var slotCount: Int { poolSlots + ownedCpus * slotsPerCpu }

    /// `admission`'s low byte counts the holds that keep fast admissions off (`slowOne` each: a
    /// locked section in progress, and the locked registry while it holds active records); the
    /// rest is the ticket counter (`ticketOne` per ticket): every admission, fast or locked,
    /// takes a ticket (its id and stamp) with a read-modify-write of this word.
    static var slowOne: UInt64 { 1 }
    static var slowMask: UInt64 { 0xff }
    static var ticketOne: UInt64 { 1 << 8 }

    /// The ticket counter and the slow holds (see `slowOne`).
    let admission = Atomic<UInt64>(IoRegistry.ticketOne)
    /// Whether readers may overlap one another (the seeds' `shared_reader`), behind
    /// `sharedReader`.
    let sharedReaderFlag: Atomic<Bool>
    /// The fast slots: the pool, then `slotsPerCpu` for each of the first `ownedCpus` CPUs.
    let slots: Record
    /// The locked registry.
    let locked: UnsafeMutablePointer<LockedIoRegistry>

    init(sharedReader: Bool) {
        sharedReaderFlag = Atomic(sharedReader)
        // SAFETY: fresh allocations, each record initialised once (`i < slotCount`); the slots
        // are on their own cache lines (64-byte aligned, two records a line: one CPU's pair).
        let raw = UnsafeMutableRawPointer.allocate(byteCount: IoRegistry.slotCount * MemoryLayout<IoRecord>.stride,
                                                   alignment: 64)
        let slots = unsafe raw.bindMemory(to: IoRecord.self, capacity: IoRegistry.slotCount)
        for i in 0..<IoRegistry.slotCount { unsafe (slots + i).initialize(to: IoRecord()) }
        unsafe self.slots = slots
        // SAFETY: a fresh allocation, initialised once; freed by `deinit` with the slots.
        unsafe locked = .allocate(capacity: 1)
        unsafe locked.initialize(to: LockedIoRegistry())
    }

    /// Whether readers may overlap one another. `VmSpace.sharedReader` changes it in a locked
    /// section, after checking `inv` still holds; a test sets it behind the rule's back.
    var sharedReader: Bool {
        get { sharedReaderFlag.load(ordering: .relaxed) }
        nonmutating set { sharedReaderFlag.store(newValue, ordering: .relaxed) }
    }

    deinit {
        // SAFETY: the allocations `init` made; the registry is noncopyable and goes with its
        // space, after the last handle (each holds the space), so no record is used again.
        unsafe slots.deinitialize(count: IoRegistry.slotCount)
        unsafe UnsafeMutableRawPointer(slots).deallocate()
        unsafe locked.deinitialize(count: 1)
        unsafe locked.deallocate()
    }

    /// Whether `record` is a fast slot (else a record of the locked registry's slabs).
    @inline(__always)
    func isSlot(_ record: Record) -> Bool {
        // SAFETY: compares addresses only.
        unsafe UInt(bitPattern: record) &- UInt(bitPattern: slots)
            < UInt(IoRegistry.slotCount * MemoryLayout<IoRecord>.stride)
    }

    /// The number of slots admissions look at on a machine of `cpuCount` CPUs: the pool and the
    /// slots of the CPUs that exist.
    @inline(__always)
    static func slotsInUse(cpuCount: Int) -> Int {
        poolSlots &+ Swift.min(cpuCount, ownedCpus) &* slotsPerCpu
    }

    /// The first slot `cpu` owns, if it owns any.
    @inline(__always)
    static func ownedSlots(of cpu: Int?) -> Int? {
        guard let cpu, cpu >= 0, cpu < ownedCpus else { return nil }
        return poolSlots &+ cpu &* slotsPerCpu
    }

    /// Whether a slot of `slots[from ..< to]` is pending or active with a view in `keptOutBy`
    /// (a mask of `VmIoMemView` raw values) and shares a byte with `lower ..< upper` (not
    /// empty).
    @inline(__always)
    static func anyOverlap(_ slots: Record, _ from: Int, _ to: Int, keptOutBy: UInt64,
                           _ lower: UInt64, _ upper: UInt64) -> Bool {
        var i = from
        while i < to {
            // SAFETY: `i < to <= slotCount`: a slot of the table, live with its registry; atomic
            // loads. Free and claimed slots have no view bits.
            let other = unsafe slots + i
            if unsafe other.pointee.state.load(ordering: .acquiring) & keptOutBy != 0,
               unsafe other.pointee.start.load(ordering: .relaxed) < upper,
               unsafe lower < other.pointee.end.load(ordering: .relaxed) {
                return true
            }
            i &+= 1
        }
        return false
    }

    /// Every record that holds a view now, each with its state: the locked registry's, and the
    /// slots that are `active` with a view, read consistently (the state before and after the
    /// range agree).
    ///
    /// - Precondition: called in a locked section (`VmSpace.withLockedSection`), where a slot
    ///   can stop being active (its handle dropped) but cannot become active.
    func forEachActive(slotsInUse: Int, _ body: (Record, UInt64, Range<Vaddr>) -> Void) {
        // SAFETY: the locked registry is used in the section's lock; its lists hold records of
        // its slabs, and the slots are this registry's; every field read is an atomic.
        for unsafe record in unsafe locked.pointee.writers + locked.pointee.readers {
            unsafe body(record, record.pointee.state.load(ordering: .relaxed), record.range)
        }
        for i in 0..<slotsInUse {
            let record = unsafe slots + i
            while true {
                // SAFETY: `record` is slot `i < slotsInUse` of this registry's slots; atomic loads.
                let before = unsafe record.pointee.state.load(ordering: .acquiring)
                guard before & IoRecordState.phaseMask == IoRecordState.active,
                      before & IoRecordState.viewMask != 0 else { break }
                let range = unsafe record.range
                // The range belongs to the state read before it if the state is unchanged: in a
                // section a slot does not become active again (see above), so no ABA.
                atomicMemoryFence(ordering: .acquiring)
                if unsafe record.pointee.state.load(ordering: .relaxed) == before {
                    unsafe body(record, before, range)
                    break
                }
            }
        }
    }

    /// The range of the active handle, other than `excluded`, that keeps a handle holding `view`
    /// over `range` out, the earliest activated of them: a writer if any (`can_create_*`), else,
    /// for a writer or when readers are not shared, a reader (the disjointness clauses of `inv`).
    /// `ignoringWriters` is for a mutation test only (`CoreMutants.readerAdmissionIgnoresWriters`).
    ///
    /// - Precondition: as `forEachActive`.
    func firstConflict(_ range: Range<Vaddr>, view: VmIoMemView, slotsInUse: Int, excluding excluded: Record? = nil,
                       ignoringWriters: Bool = false) -> Range<Vaddr>? {
        let readersKeepOut = VmSpaceOwner.readersKeepOut(view, sharedReader: sharedReader)
        var writer: (stamp: UInt64, range: Range<Vaddr>)? = nil
        var reader: (stamp: UInt64, range: Range<Vaddr>)? = nil
        // SAFETY: `excluded` is only compared.
        unsafe forEachActive(slotsInUse: slotsInUse) { record, state, other in
            guard unsafe record != excluded, halfOpenOverlap(other, range) else { return }
            let stamp = IoRecordState.stamp(state)
            if state & IoRecordState.viewMask == UInt64(VmIoMemView.writeView.rawValue) {
                if !ignoringWriters, stamp < writer?.stamp ?? .max { writer = (stamp, other) }
            } else if readersKeepOut, stamp < reader?.stamp ?? .max {
                reader = (stamp, other)
            }
        }
        return writer?.range ?? reader?.range
    }

    /// The seeds' owner as a value: the handles holding a view, in activation order.
    ///
    /// - Precondition: as `forEachActive`.
    func snapshot(active: Bool, slotsInUse: Int) -> VmSpaceOwner {
        var readers: [(stamp: UInt64, owner: VmIoOwner)] = []
        var writers: [(stamp: UInt64, owner: VmIoOwner)] = []
        // SAFETY: the caller is in a locked section, as `forEachActive` requires.
        unsafe forEachActive(slotsInUse: slotsInUse) { record, state, range in
            // SAFETY: a live record (`forEachActive`); `id` is an atomic written before the
            // record was published.
            let view = VmIoMemView(rawValue: UInt8(truncatingIfNeeded: state & IoRecordState.viewMask))
            let owner = unsafe VmIoOwner(id: record.pointee.id.load(ordering: .relaxed), range: range, isFallible: true,
                                         isKernel: false, memView: view)
            if view == .writeView {
                writers.append((IoRecordState.stamp(state), owner))
            } else {
                readers.append((IoRecordState.stamp(state), owner))
            }
        }
        return VmSpaceOwner(readers: readers.sorted { $0.stamp < $1.stamp }.map { $0.owner },
                            writers: writers.sorted { $0.stamp < $1.stamp }.map { $0.owner },
                            sharedReader: sharedReader, active: active)
    }
}

/// The locked part of a space's registry: the records that did not fit in the fast slots (and
/// every record of an audited space's handles but those placed in slots), used under the space's
/// owner lock.
///
/// `@safe`: every record pointer it holds or hands out points into one of its slabs, which are
/// allocated by `makeRecord`, never moved, and freed only by `deinit` (with the space, which
/// every handle holding a record keeps alive); `readers`, `writers` and `free` hold records of
/// these slabs only.
@safe
struct LockedIoRegistry: ~Copyable {
    typealias Record = UnsafeMutablePointer<IoRecord>

    /// The active records (holding a view), by view.
    // SAFETY: empty arrays of record pointers; nothing is dereferenced.
    var readers: [Record] = unsafe []
    var writers: [Record] = unsafe []
    /// Slabs of records (never moved, so handles may point into them) and the free ones.
    // SAFETY: empty arrays of record pointers; nothing is dereferenced.
    var slabs: [Record] = unsafe []
    var free: [Record] = unsafe []
    /// Whether `admission` counts a slow hold for the active records here.
    var holdsSlowMode = false

    static var slabSize: Int { 32 }

    init() {}

    deinit {
        // SAFETY: each slab was allocated and initialised whole by `makeRecord`; the registry goes
        // with its space, after the last handle (each holds the space).
        for unsafe slab in unsafe slabs {
            unsafe slab.deinitialize(count: LockedIoRegistry.slabSize)
            unsafe slab.deallocate()
        }
    }

    /// Whether some record here holds a view (then fast admissions must not run).
    var hasActive: Bool {
        // SAFETY: counts the lists; nothing is dereferenced.
        unsafe !readers.isEmpty || !writers.isEmpty
    }

    /// A fresh record over `range` with id `id`, not yet holding a view.
    mutating func makeRecord(_ range: Range<Vaddr>, id: UInt64) -> Record {
        // SAFETY: a new slab is allocated and initialised whole (`i < slabSize`), and only its own
        // records go to `free`; the record taken is a free one of this registry's slabs, not used
        // by any handle (the owner lock is held).
        if unsafe free.isEmpty {
            let slab = Record.allocate(capacity: LockedIoRegistry.slabSize)
            for i in 0..<LockedIoRegistry.slabSize { unsafe (slab + i).initialize(to: IoRecord()) }
            unsafe slabs.append(slab)
            for i in stride(from: LockedIoRegistry.slabSize - 1, through: 0, by: -1) { unsafe free.append(slab + i) }
        }
        let record = unsafe free.removeLast()
        // SAFETY: a free record of this registry's slabs, handed to no handle yet; its fields are atomics.
        unsafe record.pointee.id.store(id, ordering: .relaxed)
        unsafe record.pointee.start.store(range.lowerBound.rawValue, ordering: .relaxed)
        unsafe record.pointee.end.store(range.upperBound.rawValue, ordering: .relaxed)
        unsafe record.pointee.state.store(IoRecordState.active(stamp: id, view: nil), ordering: .relaxed)
        return unsafe record
    }

    /// Gives `record` `view` with activation stamp `stamp` (the seeds' `activate_reader` /
    /// `activate_writer`).
    mutating func activate(_ record: Record, view: VmIoMemView, stamp: UInt64) {
        // SAFETY: `record` is one of this registry's records (its callers' contract: made by
        // `makeRecord`, held by a live handle); `state` is an atomic.
        unsafe record.pointee.state.store(IoRecordState.active(stamp: stamp, view: view), ordering: .relaxed)
        if view == .readView { unsafe readers.append(record) } else { unsafe writers.append(record) }
    }

    /// Takes `record`'s view back (the seeds' `dispose_*`).
    mutating func dispose(_ record: Record) {
        // SAFETY: `record` is one of this registry's records, as in `activate`.
        let state = unsafe record.pointee.state.load(ordering: .relaxed)
        switch unsafe record.memView {
        case .readView?: if let i = unsafe readers.lastIndex(of: record) { unsafe readers.remove(at: i) }
        case .writeView?: if let i = unsafe writers.lastIndex(of: record) { unsafe writers.remove(at: i) }
        case nil: break
        }
        unsafe record.pointee.state.store(state & ~IoRecordState.viewMask, ordering: .relaxed)
    }

    /// Ends `record` (the seeds' `remove_*`): its view comes back and the record is reused.
    mutating func remove(_ record: Record) {
        // SAFETY: `record` is one of this registry's records, as in `activate`; its handle is
        // ending, so it may be reused.
        unsafe dispose(record)
        unsafe free.append(record)
    }
}

// The ownership protocol's bookkeeping on a space: admission of readers and writers, their
// registrations, and the seeds' `VmSpaceOwner` as a snapshot (see `VmSpaceOwner.swift`). The
// handles themselves (`VmReader`, `VmWriter`) are the I/O layer's; it calls these.

import Synchronization

extension VmSpace {
    /// Checks the seeds' preconditions on a user range: `len > 0` and `vaddr + len <=
    /// MAX_USERSPACE_VADDR` without overflow (`reader_requires` / `writer_requires`).
    static func userRange(_ vaddr: Vaddr, _ len: Int) throws(OSTDError) -> Range<Vaddr> {
        let (end, overflow) = vaddr.rawValue.addingReportingOverflow(UInt64(truncatingIfNeeded: len))
        guard len > 0, !overflow, end <= maxUserspaceVaddr.rawValue else {
            throw .invalidUserRange(vaddr: vaddr, len: len)
        }
        return vaddr..<Vaddr(end)
    }

    /// A snapshot of the ownership bookkeeping (the seeds' `VmSpaceOwner`).
    public var ownerSnapshot: VmSpaceOwner {
        let active = context.platform.isActive(root: rootPaddr, on: context.platform.executingCpu())
        ownerLock.lock()
        defer { ownerLock.unlock() }
        // SAFETY: the registry lives as long as the space and is used under `ownerLock`, held here.
        return unsafe registry.pointee.snapshot(active: active)
    }

    /// Whether readers may overlap one another (the seeds' `shared_reader`).
    ///
    /// - Precondition: turning it off while active readers overlap is refused ("overlapping
    ///   readers are active"): `inv` would no longer hold.
    public var sharedReader: Bool {
        get {
            ownerLock.lock()
            defer { ownerLock.unlock() }
            // SAFETY: the registry lives as long as the space and is used under `ownerLock`, held.
            return unsafe registry.pointee.sharedReader
        }
        set {
            ownerLock.lock()
            defer { ownerLock.unlock() }
            // SAFETY: the registry is used under `ownerLock`, held; the active readers' records are
            // in its slabs, live while the space is, and their ranges are atomics.
            if !newValue {
                let readers = unsafe registry.pointee.readers
                for unsafe (i, a) in unsafe readers.enumerated() {
                    for unsafe b in unsafe readers[(i + 1)...] {
                        precondition(unsafe !halfOpenOverlap(a.range, b.range),
                                     "overlapping readers are active; sharedReader cannot be turned off")
                    }
                }
            }
            unsafe registry.pointee.sharedReader = newValue
        }
    }

    // MARK: Registration

    typealias Record = UnsafeMutablePointer<IoRecord>

    /// Registers a new handle over `range` holding `view`, if the admission rules allow it.
    func admit(_ range: Range<Vaddr>, view: VmIoMemView) throws(OSTDError) -> Record {
        // SAFETY: the registry lives as long as the space and is used under `ownerLock`, which
        // `withOwnerLock` holds; the new record is in its slabs, live while the space is.
        let record = try unsafe withOwnerLock { () throws(OSTDError) in
            var conflict = unsafe registry.pointee.firstConflict(range, view: view)
            #if DEBUG
            if view == .readView && context.hasMutant(.readerAdmissionIgnoresWriters) {
                conflict = unsafe registry.pointee.firstConflict(range, view: view, ignoringWriters: true)
            }
            #endif
            if let conflict { throw .accessConflict(requested: range, conflicting: conflict) }
            let record = unsafe registry.pointee.makeRecord(range)
            unsafe registry.pointee.activate(record, view: view)
            return unsafe record
        }
        auditOwnership(.admitted(range: range, view: view))
        // SAFETY: hands the new registration to the handle being made (see above).
        return unsafe record
    }

    /// Gives a disposed handle its view back, if the admission rules allow it.
    func reactivate(_ record: Record?, view: VmIoMemView) throws(OSTDError) {
        // SAFETY: `record` is the registration of a live handle of this space, in the registry's
        // slabs; the registry is used under `ownerLock`, which `withOwnerLock` holds, and the
        // record's fields read outside it are atomics.
        guard let record = unsafe record else { return }
        _ = try executingCpu()
        let activated = try withOwnerLock { () throws(OSTDError) -> Bool in
            guard unsafe record.memView == nil else { return false }
            if let conflict = unsafe registry.pointee.firstConflict(record.range, view: view, excluding: record) {
                throw .accessConflict(requested: unsafe record.range, conflicting: conflict)
            }
            unsafe registry.pointee.activate(record, view: view)
            return true
        }
        if activated { auditOwnership(.reactivated(range: unsafe record.range, view: view)) }
    }

    /// Runs `body` holding the owner lock.
    func withOwnerLock<R>(_ body: () throws(OSTDError) -> R) throws(OSTDError) -> R {
        ownerLock.lock()
        defer { ownerLock.unlock() }
        return try body()
    }

    func dispose(_ record: Record?) {
        // SAFETY: `record` is the registration of a live handle of this space, in the registry's
        // slabs; the registry is used under `ownerLock`, held here.
        guard let record = unsafe record else { return }
        ownerLock.lock()
        let range = unsafe auditor != nil ? record.range : nil
        unsafe registry.pointee.dispose(record)
        ownerLock.unlock()
        if let range { auditOwnership(.disposed(range: range)) }
    }

    func remove(_ record: Record) {
        ownerLock.lock()
        // SAFETY: `record` is the registration of the handle being ended, in the registry's slabs;
        // the registry is used under `ownerLock`, held here.
        let range = unsafe auditor != nil ? record.range : nil
        unsafe registry.pointee.remove(record)
        ownerLock.unlock()
        if let range { auditOwnership(.removed(range: range)) }
    }

    /// Registers the first `count` bytes of `record`, split off it, with the same view, and
    /// moves `record`'s start past them, both under the owner lock: a snapshot sees either the
    /// whole range in `record` or the two halves, never the front bytes twice (the seeds'
    /// `VmIoOwner::split` is one step).
    func registerSplit(of record: Record, count: Int) -> Record {
        ownerLock.lock()
        // SAFETY: `record` is the registration of the live handle being split, and `front` a new
        // one, both in the registry's slabs; the registry is used under `ownerLock`, held here,
        // and the records' ranges and views are atomics.
        let start = unsafe Vaddr(record.pointee.start.load(ordering: .relaxed))
        let end = unsafe Vaddr(record.pointee.end.load(ordering: .relaxed))
        let front = unsafe registry.pointee.makeRecord(start..<(start + count))
        unsafe record.pointee.start.store((start + count).rawValue, ordering: .relaxed)
        if let view = unsafe record.memView { unsafe registry.pointee.activate(front, view: view) }
        ownerLock.unlock()
        auditOwnership(.split(range: start..<end, count: count))
        return unsafe front
    }

    /// Turns an active writer's registration into a reader's (the seeds' `write_to_read`).
    func convertToReader(_ record: Record) {
        ownerLock.lock()
        // SAFETY: `record` is the registration of the live writer being converted, in the
        // registry's slabs; the registry is used under `ownerLock`, held here.
        let converted = unsafe record.memView == .writeView
        if converted {
            unsafe registry.pointee.dispose(record)
            unsafe registry.pointee.activate(record, view: .readView)
        }
        let range = unsafe auditor != nil && converted ? record.range : nil
        ownerLock.unlock()
        if let range { auditOwnership(.convertedToReader(range: range)) }
    }
}

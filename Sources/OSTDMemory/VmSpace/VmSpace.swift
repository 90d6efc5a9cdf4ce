// A user address space (OSTD `mm/vm_space.rs`; the seeds' `VmSpace`).
//
// A `VmSpace` is a user page table that shares the kernel half, the set of CPUs on which it is
// (or may still be) active, and the run-time `VmSpaceOwner` that admits readers and writers. Its
// cursors edit the table and flush TLBs through a `TlbFlusher`; its readers and writers access
// user memory as the user program would, through the CPU's TLB.
//
// Activation is OSTD's: making a space current on a CPU writes CR3 (here: the CPU's active root,
// and a flush of its TLB) and adds the CPU to the space's set; the CPU leaves the set when it
// activates another space. Deliberate differences:
// - A CPU does not keep its active space alive (OSTD stores an `Arc`); instead a space that goes
//   away deactivates itself on every CPU, so no CPU keeps a dangling CR3.
// - A page-fault handler is attached per space (OSTD has one global hook).

import Synchronization

/// Called when a user-space access through a reader or writer of `space` faults. Return `true`
/// after making the access possible (for example by mapping a frame: demand paging); the access
/// is then retried once. Return `false` to let the access fail with `pageFault`.
public typealias PageFaultHandler = (_ space: VmSpace, _ fault: PageFaultInfo) -> Bool

/// What a page-fault handler is told.
public struct PageFaultInfo: Equatable, Sendable {
    /// The first byte that could not be accessed.
    public var address: Vaddr
    /// Whether the access was a write.
    public var isWrite: Bool
    /// The CPU the access ran on.
    public var cpu: Int

    @inlinable
    public init(address: Vaddr, isWrite: Bool, cpu: Int) {
        self.address = address
        self.isWrite = isWrite
        self.cpu = cpu
    }
}

/// A user address space (OSTD `VmSpace`).
///
///     let space = try VmSpace(machine: machine)
///     var cursor = try space.cursorMut(Vaddr(0x40_0000)..<Vaddr(0x40_1000))
///     cursor.map(try FrameAllocOptions().allocFrame(in: machine), .user(.rw))
///     _ = consume cursor
///     space.activate(on: 0)
///     try space.withWriter(at: Vaddr(0x40_0000), count: 4) { writer in try writer.writeVal(UInt32(7)) }
public final class VmSpace: @unchecked Sendable {
    /// The user page table.
    public let pageTable: PageTable<UserPtConfig>
    /// The CPUs on which this space is, or may still be, active (OSTD `cpus`): a TLB flush must
    /// reach all of them.
    public let cpus = AtomicCpuSet()
    /// The root's physical address, what CR3 holds while the space is active.
    public let rootPaddr: Paddr
    /// Resolves faults of this space's user-space accesses; set it before the space is shared.
    /// The handler is given the space: capturing it instead would keep the space alive forever.
    public var pageFaultHandler: PageFaultHandler?

    /// Guards `registry`.
    let ownerLock = SpinLock()
    /// The readers and writers that hold a view of this space (the seeds' `VmSpaceOwner`). Out
    /// of line: it is mutated under `ownerLock`, and a class property would also pay Swift's
    /// dynamic exclusivity checks on every access.
    let registry: UnsafeMutablePointer<IoRegistry>

    /// The machine's context, kept at hand (reaching it through `pageTable` costs a retain).
    @usableFromInline let context: UnsafeMutablePointer<MachineContext>

    /// A space whose page table shares `kernelPageTable`'s kernel half (OSTD `VmSpace::new`).
    ///
    /// - Parameter sharedReader: whether readers may overlap one another (the seeds'
    ///   `shared_reader`); writers never overlap anything.
    /// - Throws: `outOfMemory` when there is no frame for the root.
    public init(kernelPageTable: PageTable<KernelPtConfig>, sharedReader: Bool = false) throws(OSTDError) {
        pageTable = try kernelPageTable.createUserPageTable()
        context = pageTable.context
        rootPaddr = pageTable.rootPaddr
        registry = .allocate(capacity: 1)
        registry.initialize(to: IoRegistry(sharedReader: sharedReader))
        pageTable.walkerCpus = cpus
    }

    /// A space on `machine` with a kernel page table of its own (257 frames). Spaces that should
    /// share one kernel half use `init(kernelPageTable:)`.
    public convenience init(machine: Machine, sharedReader: Bool = false) throws(OSTDError) {
        try self.init(kernelPageTable: PageTable.newKernelPageTable(machine: machine), sharedReader: sharedReader)
    }

    deinit {
        let me = identity
        for cpu in cpus.load() {
            let state = context.pointee.cpus + cpu
            state.pointee.mmuLock.lock()
            if state.pointee.activeSpace.load(ordering: .relaxed) == me {
                state.pointee.activeSpace.store(0, ordering: .relaxed)
                state.pointee.activeRoot.store(0, ordering: .relaxed)
                state.pointee.tlb.pointee.flushAll()
            }
            state.pointee.mmuLock.unlock()
        }
        registry.deinitialize(count: 1)
        registry.deallocate()
    }

    /// The machine the space lives on.
    public var machine: Machine { pageTable.machine }

    /// The value a CPU records as its active space: this object's address.
    var identity: UInt { UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque()) }

    // MARK: Activation

    /// Makes this space current on `cpu` (OSTD `activate`): the CPU joins `cpus`, its CR3 is
    /// written (which flushes its TLB) and the previously active space loses the CPU.
    ///
    /// - Precondition: the machine has `cpu`.
    public func activate(on cpu: Int) {
        precondition((0..<context.pointee.cpuCount).contains(cpu),
                     "cpu \(cpu) does not exist (the machine has \(context.pointee.cpuCount))")
        let state = context.pointee.cpus + cpu
        let me = identity
        state.pointee.mmuLock.lock()
        defer { state.pointee.mmuLock.unlock() }
        let previous = state.pointee.activeSpace.load(ordering: .relaxed)
        guard previous != me else { return }
        cpus.add(cpu)
        state.pointee.activeSpace.store(me, ordering: .relaxed)
        state.pointee.activeRoot.store(rootPaddr.rawValue, ordering: .releasing)
        state.pointee.tlb.pointee.flushAll()
        if previous != 0 {
            // SAFETY: a space clears itself from every CPU (under this lock) before it goes, so
            // the identity stored here names a live object while the lock is held.
            let other = unsafe Unmanaged<VmSpace>.fromOpaque(UnsafeRawPointer(bitPattern: previous)!).takeUnretainedValue()
            other.cpus.remove(cpu)
        }
    }

    /// Whether this space is the one active on `cpu` (OSTD's CPU-local `ACTIVATED_VM_SPACE`).
    public func isActive(on cpu: Int) -> Bool {
        precondition((0..<context.pointee.cpuCount).contains(cpu), "cpu \(cpu) does not exist")
        return context.pointee.cpus[cpu].activeSpace.load(ordering: .relaxed) == identity
    }

    /// The CPU the caller runs on (the bound one, or CPU 0), checked to have this space active.
    @inlinable @inline(__always)
    func executingCpu() throws(OSTDError) -> UnsafeMutablePointer<CpuLocalState> {
        let cpu = context.pointee.executingCpu(of: context)
        guard cpu.pointee.activeRoot.load(ordering: .relaxed) == rootPaddr.rawValue else {
            throw .notActive(cpu: cpu.pointee.id)
        }
        return cpu
    }

    /// The TLB statistics of `cpu`.
    public func tlbStatistics(cpu: Int) -> TlbStatistics {
        let state = context.pointee.cpus + cpu
        state.pointee.mmuLock.lock()
        defer { state.pointee.mmuLock.unlock() }
        return state.pointee.tlb.pointee.statistics
    }

    // MARK: Cursors

    /// A read-only cursor over `range` (OSTD `VmSpace::cursor`). It may wait for cursors whose
    /// ranges overlap.
    ///
    /// - Throws: `pageTable(invalidVaddrRange)` / `pageTable(unalignedVaddr)` for a bad range.
    public func cursor(_ range: Range<Vaddr>) throws(OSTDError) -> Cursor {
        Cursor(ptCursor: try pageTableCall { () throws(PageTableError) in try pageTable.cursor(range) })
    }

    /// A cursor that may map, unmap and protect in `range` (OSTD `VmSpace::cursor_mut`).
    ///
    /// - Throws: as `cursor(_:)`.
    public func cursorMut(_ range: Range<Vaddr>) throws(OSTDError) -> CursorMut {
        CursorMut(ptCursor: try pageTableCall { () throws(PageTableError) in try pageTable.cursorMut(range) },
                  flusher: TlbFlusher(space: self))
    }

    // MARK: Readers and writers

    /// Checks the seeds' preconditions on a user range: `len > 0` and `vaddr + len <=
    /// MAX_USERSPACE_VADDR` without overflow (`reader_requires` / `writer_requires`).
    static func userRange(_ vaddr: Vaddr, _ len: Int) throws(OSTDError) -> Range<Vaddr> {
        let (end, overflow) = vaddr.rawValue.addingReportingOverflow(UInt64(truncatingIfNeeded: len))
        guard len > 0, !overflow, end <= maxUserspaceVaddr.rawValue else {
            throw .invalidUserRange(vaddr: vaddr, len: len)
        }
        return vaddr..<Vaddr(end)
    }

    /// A reader of the user memory `vaddr ..< vaddr + len` (the seeds' `create_reader` followed by
    /// `activate_reader`; OSTD `VmSpace::reader`). It holds a read view until it is disposed or
    /// dropped.
    ///
    /// - Throws: `notActive` when the space is not active on the caller's CPU; `invalidUserRange`
    ///   for an empty, overflowing or non-user range; `accessConflict` when an active writer (or,
    ///   without `sharedReader`, an active reader) overlaps the range.
    public func createReader(_ vaddr: Vaddr, _ len: Int) throws(OSTDError) -> VmReader<Fallible> {
        _ = try executingCpu()
        let range = try VmSpace.userRange(vaddr, len)
        return VmReader(user: self, record: try admit(range, view: .readView))
    }

    /// A writer of the user memory `vaddr ..< vaddr + len` (the seeds' `create_writer` followed by
    /// `activate_writer`; OSTD `VmSpace::writer`). It holds the write view until it is disposed or
    /// dropped.
    ///
    /// - Throws: as `createReader`, with `accessConflict` when any active reader or writer
    ///   overlaps the range.
    public func createWriter(_ vaddr: Vaddr, _ len: Int) throws(OSTDError) -> VmWriter<Fallible> {
        _ = try executingCpu()
        let range = try VmSpace.userRange(vaddr, len)
        return VmWriter(user: self, record: try admit(range, view: .writeView))
    }

    /// Runs `body` with a reader of `vaddr ..< vaddr + count`, removed when `body` returns: the
    /// scoped form of create, activate, use, dispose and remove, which cannot leak a registration.
    ///
    /// - Throws: what `createReader` throws, or what `body` throws.
    public func withReader<R>(
        at vaddr: Vaddr, count: Int, _ body: (inout VmReader<Fallible>) throws(OSTDError) -> R
    ) throws(OSTDError) -> R {
        var reader = try createReader(vaddr, count)
        return try body(&reader)
    }

    /// Runs `body` with a writer of `vaddr ..< vaddr + count`, removed when `body` returns.
    ///
    /// - Throws: what `createWriter` throws, or what `body` throws.
    public func withWriter<R>(
        at vaddr: Vaddr, count: Int, _ body: (inout VmWriter<Fallible>) throws(OSTDError) -> R
    ) throws(OSTDError) -> R {
        var writer = try createWriter(vaddr, count)
        return try body(&writer)
    }

    #if !hasFeature(Embedded)
    /// `withReader` for a body that throws untyped errors.
    public func withReader<R>(at vaddr: Vaddr, count: Int, _ body: (inout VmReader<Fallible>) throws -> R) throws -> R {
        var reader = try createReader(vaddr, count)
        return try body(&reader)
    }

    /// `withWriter` for a body that throws untyped errors.
    public func withWriter<R>(at vaddr: Vaddr, count: Int, _ body: (inout VmWriter<Fallible>) throws -> R) throws -> R {
        var writer = try createWriter(vaddr, count)
        return try body(&writer)
    }
    #endif

    // MARK: The ownership protocol's explicit steps

    /// Gives a disposed reader its read view back (the seeds' `activate_reader`).
    ///
    /// - Throws: `accessConflict` as `createReader`; `notActive`. Nothing changes then.
    public func activateReader(_ reader: inout VmReader<Fallible>) throws(OSTDError) {
        try reactivate(reader.window.record, view: .readView)
    }

    /// Gives a disposed writer its write view back (the seeds' `activate_writer`).
    ///
    /// - Throws: `accessConflict` as `createWriter`; `notActive`. Nothing changes then.
    public func activateWriter(_ writer: inout VmWriter<Fallible>) throws(OSTDError) {
        try reactivate(writer.window.record, view: .writeView)
    }

    /// Returns a reader's permission (the seeds' `dispose_reader`): the reader stays registered
    /// and can be activated again, but reads fail with `disposed` until then.
    public func disposeReader(_ reader: inout VmReader<Fallible>) { dispose(reader.window.record) }

    /// Returns a writer's permission (the seeds' `dispose_writer`), as `disposeReader`.
    public func disposeWriter(_ writer: inout VmWriter<Fallible>) { dispose(writer.window.record) }

    /// Ends a reader for good (the seeds' `remove_reader`); dropping it does the same.
    public func removeReader(_ reader: consuming VmReader<Fallible>) { _ = consume reader }

    /// Ends a writer for good (the seeds' `remove_writer`); dropping it does the same.
    public func removeWriter(_ writer: consuming VmWriter<Fallible>) { _ = consume writer }

    /// A snapshot of the ownership bookkeeping (the seeds' `VmSpaceOwner`).
    public var ownerSnapshot: VmSpaceOwner {
        let active = context.pointee.executingCpu(of: context).pointee.activeRoot.load(ordering: .relaxed) == rootPaddr.rawValue
        ownerLock.lock()
        defer { ownerLock.unlock() }
        return registry.pointee.snapshot(active: active)
    }

    /// Whether readers may overlap one another (the seeds' `shared_reader`).
    ///
    /// - Precondition: turning it off while active readers overlap is refused ("overlapping
    ///   readers are active"): `inv` would no longer hold.
    public var sharedReader: Bool {
        get {
            ownerLock.lock()
            defer { ownerLock.unlock() }
            return registry.pointee.sharedReader
        }
        set {
            ownerLock.lock()
            defer { ownerLock.unlock() }
            if !newValue {
                let readers = registry.pointee.readers
                for (i, a) in readers.enumerated() {
                    for b in readers[(i + 1)...] {
                        precondition(!halfOpenOverlap(a.range, b.range),
                                     "overlapping readers are active; sharedReader cannot be turned off")
                    }
                }
            }
            registry.pointee.sharedReader = newValue
        }
    }

    // MARK: Registration

    typealias Record = UnsafeMutablePointer<IoRecord>

    /// Registers a new handle over `range` holding `view`, if the admission rules allow it.
    func admit(_ range: Range<Vaddr>, view: VmIoMemView) throws(OSTDError) -> Record {
        ownerLock.lock()
        defer { ownerLock.unlock() }
        if let conflict = registry.pointee.firstConflict(range, view: view) {
            throw .accessConflict(requested: range, conflicting: conflict)
        }
        let record = registry.pointee.makeRecord(range)
        registry.pointee.activate(record, view: view)
        return record
    }

    func reactivate(_ record: Record?, view: VmIoMemView) throws(OSTDError) {
        guard let record else { return }
        _ = try executingCpu()
        ownerLock.lock()
        defer { ownerLock.unlock() }
        guard record.memView == nil else { return }
        if let conflict = registry.pointee.firstConflict(record.range, view: view, excluding: record) {
            throw .accessConflict(requested: record.range, conflicting: conflict)
        }
        registry.pointee.activate(record, view: view)
    }

    func dispose(_ record: Record?) {
        guard let record else { return }
        ownerLock.lock()
        registry.pointee.dispose(record)
        ownerLock.unlock()
    }

    func remove(_ record: Record) {
        ownerLock.lock()
        registry.pointee.remove(record)
        ownerLock.unlock()
    }

    /// Registers the first `count` bytes of `record`, split off it, with the same view.
    func registerSplit(of record: Record, count: Int) -> Record {
        ownerLock.lock()
        defer { ownerLock.unlock() }
        let start = Vaddr(record.pointee.start.load(ordering: .relaxed))
        let front = registry.pointee.makeRecord(start..<(start + count))
        if let view = record.memView { registry.pointee.activate(front, view: view) }
        return front
    }

    /// Turns an active writer's registration into a reader's (the seeds' `write_to_read`).
    func convertToReader(_ record: Record) {
        ownerLock.lock()
        if record.memView == .writeView {
            registry.pointee.dispose(record)
            registry.pointee.activate(record, view: .readView)
        }
        ownerLock.unlock()
    }
}

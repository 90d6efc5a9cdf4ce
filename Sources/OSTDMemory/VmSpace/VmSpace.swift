// A user address space (OSTD `mm/vm_space.rs`; the seeds' `VmSpace`).
//
// A `VmSpace` is a user page table that shares the kernel half, the set of CPUs on which it is
// (or may still be) active, and the run-time `VmSpaceOwner` that admits readers and writers. Its
// cursors edit the table and flush TLBs through a `TlbFlusher`; its readers and writers (the I/O
// layer's `VmSpace+Io.swift`) access user memory as the user program would, through the CPU's TLB.
//
// This file: the space, its creation and its cursors. Activation is in `VmSpace+Activation.swift`,
// the ownership protocol's bookkeeping in `VmSpace+Registry.swift`. A page-fault handler is
// attached per space (OSTD has one global hook).

import Synchronization

// Sendable: the page table (see `PageTable`), the atomic CPU set, the registry of readers and
// writers under its lock, and the `@Sendable` page-fault handler (read in read-side sections,
// replaced after a grace period, see `pageFaultHandler`); every other
// stored property is immutable.
/// A user address space (OSTD `VmSpace`).
///
///     let space = try VmSpace(machine: machine)
///     var cursor = try space.cursorMut(Vaddr(0x40_0000)..<Vaddr(0x40_1000))
///     cursor.map(try FrameAllocOptions().allocFrame(in: machine), .user(.rw))
///     _ = consume cursor
///     space.activate(on: 0)
///     try space.withWriter(at: Vaddr(0x40_0000), count: 4) { writer in try writer.writeVal(UInt32(7)) }
///
/// `@safe`: `registry` is allocated by `init` and freed by `deinit`; its locked part is used only
/// under `ownerLock`, the rest through atomics by the protocol of `VmSpace+Registry.swift`; the
/// records it hands out live in its slots and slabs until then (`IoRegistry`).
/// `handlerSlots` (two slots) is allocated by `init` and freed by `deinit`; its active slot is
/// read in read-side sections and the other written only by a setter holding `handlerLock`
/// (`pageFaultHandler`).
@safe
public final class VmSpace: @unchecked Sendable {
    /// The user page table.
    @_spi(OSTDInternals) public let pageTable: PageTable<UserPtConfig>
    /// The CPUs on which this space is, or may still be, active (OSTD `cpus`): a TLB flush must
    /// reach all of them.
    public let cpus = AtomicCpuSet()
    /// The root's physical address, what CR3 holds while the space is active.
    public let rootPaddr: Paddr
    /// Resolves faults of this space's user-space accesses: given at creation, or set later (a
    /// fault already in its handler finishes with the old one). The handler is given the space:
    /// capturing it instead would keep the space alive forever.
    ///
    /// A fault calls the handler inside a read-side section of its CPU, without a lock or a
    /// reference count (`callPageFaultHandler`); setting a handler therefore waits for a grace
    /// period before it lets the old one go, and must not be done from inside a handler or any
    /// other read-side section (a precondition: it would wait for itself).
    public var pageFaultHandler: PageFaultHandler? {
        get {
            let section = context.readSection()
            // SAFETY: `handlerSlots` holds two initialised slots for the space's life; the active
            // one is not written while a read-side section that may have seen it is open (the
            // setter waits for a grace period first).
            let handler = unsafe handlerSlots[activeHandler.load(ordering: .acquiring)].box?.takeUnretainedValue().handler
            _ = consume section
            return handler
        }
        set {
            precondition(!context.inReadSection, "pageFaultHandler set inside a read-side section (a handler?)")
            handlerLock.lock()
            let old = activeHandler.load(ordering: .relaxed)
            // SAFETY: setters are serialised by `handlerLock`; the inactive slot is read by no one
            // (no reader loaded its index since the last grace period, below), and the release
            // store publishes it.
            unsafe handlerSlots[1 &- old] = PageFaultHandlerSlot(newValue)
            activeHandler.store(1 &- old, ordering: .releasing)
            context.rcu.wait(for: context.startGracePeriod())
            // SAFETY: every section that could have loaded the old index has ended (the grace
            // period); sections from now on load the new one.
            unsafe handlerSlots[old].release()
            handlerLock.unlock()
        }
    }
    /// Asks the page-fault handler about `fault`: `false` when there is none or it refuses. The
    /// handler is called where it lies, inside `section`, a read-side section of the caller's CPU
    /// (or of no CPU), which keeps its slot from being cleared (no lock, no retain of its
    /// context); the page-table walks it makes (`mapPage`) nest in that section for free. The
    /// section ends when the handler returns.
    @usableFromInline
    func callPageFaultHandler(_ fault: PageFaultInfo, in section: consuming RcuReadGuard) -> Bool {
        // SAFETY: the active slot is initialised and is not written while this section is open
        // (the setter waits for a grace period before clearing it; see `pageFaultHandler`).
        let handled = unsafe handlerSlots[activeHandler.load(ordering: .acquiring)].call(self, fault)
        _ = consume section
        return handled
    }

    /// Serialises the setters of `pageFaultHandler`.
    let handlerLock = SpinLock()
    /// The handler's two slots: the active one (`activeHandler`) and the one the next setter
    /// fills. Out of line, read without a lock (see `pageFaultHandler`).
    let handlerSlots: UnsafeMutablePointer<PageFaultHandlerSlot>
    /// The index of the slot faults read.
    let activeHandler = Atomic<Int>(0)
    /// The auditor every cursor operation and registration of this space is shown to, if the
    /// space is audited (`VmSpaceAuditor.swift`); `nil`, the default, costs one test per operation.
    public let auditor: (any VmSpaceAuditor)?

    /// Guards `registry`'s locked part and serialises its locked sections.
    let ownerLock = SpinLock()
    /// The readers and writers that hold a view of this space (the seeds' `VmSpaceOwner`). Out
    /// of line: its locked part is mutated under `ownerLock`, and a class property would also
    /// pay Swift's dynamic exclusivity checks on every access.
    let registry: UnsafeMutablePointer<IoRegistry>

    /// The machine's state, kept at hand (reaching it through `pageTable` costs a retain).
    @usableFromInline let context: MachineRef

    /// A space whose page table shares `kernelPageTable`'s kernel half (OSTD `VmSpace::new`).
    ///
    /// - Parameters:
    ///   - sharedReader: whether readers may overlap one another (the seeds' `shared_reader`);
    ///     writers never overlap anything.
    ///   - auditor: checks every operation of the space against the specification (off when `nil`).
    ///   - pageFaultHandler: resolves faults of the space's user-space accesses (`pageFaultHandler`).
    /// - Throws: `outOfMemory` when there is no frame for the root.
    public init(kernelPageTable: PageTable<KernelPtConfig>, sharedReader: Bool = false,
                auditor: (any VmSpaceAuditor)? = nil, pageFaultHandler: PageFaultHandler? = nil) throws(OSTDError) {
        self.auditor = auditor
        // SAFETY: a fresh two-element allocation, initialised whole; freed by `deinit`.
        unsafe handlerSlots = .allocate(capacity: 2)
        unsafe handlerSlots.initialize(to: PageFaultHandlerSlot(pageFaultHandler))
        unsafe (handlerSlots + 1).initialize(to: PageFaultHandlerSlot(nil))
        pageTable = try pageTableCall { () throws(PageTableError) in try kernelPageTable.createUserPageTable() }
        context = pageTable.context
        machine = pageTable.machine
        rootPaddr = pageTable.rootPaddr
        // SAFETY: a fresh allocation, initialised once; freed only by `deinit`.
        unsafe registry = .allocate(capacity: 1)
        unsafe registry.initialize(to: IoRegistry(sharedReader: sharedReader))
    }

    /// A space on `machine` with a kernel page table of its own (257 frames). Spaces that should
    /// share one kernel half use `init(kernelPageTable:)`.
    public convenience init(machine: Machine, sharedReader: Bool = false,
                            auditor: (any VmSpaceAuditor)? = nil, pageFaultHandler: PageFaultHandler? = nil) throws(OSTDError) {
        let kernel = try pageTableCall { () throws(PageTableError) in try PageTable.newKernelPageTable(machine: machine) }
        try self.init(kernelPageTable: kernel, sharedReader: sharedReader, auditor: auditor,
                      pageFaultHandler: pageFaultHandler)
    }

    deinit {
        deactivateEverywhere()
        // SAFETY: the registry `init` made; no handle is left (each holds the space), so no record
        // in its slabs is used again.
        unsafe registry.deinitialize(count: 1)
        unsafe registry.deallocate()
        // SAFETY: the handler slots `init` made; the space is gone, so no fault reads them.
        unsafe handlerSlots[0].release()
        unsafe handlerSlots[1].release()
        // SAFETY: the two slots `init` initialised, released above; nothing reads them again.
        unsafe handlerSlots.deinitialize(count: 2)
        unsafe handlerSlots.deallocate()
    }

    /// The machine the space lives on. Stored, not reached through the page table, so that a
    /// fault handler's `FrameAllocOptions().allocFrame(in: space.machine)` borrows it.
    public let machine: Machine

    // MARK: Cursors

    /// A read-only cursor over `range` (OSTD `VmSpace::cursor`). It may wait for cursors whose
    /// ranges overlap.
    ///
    /// - Throws: `pageTable(invalidVaddrRange)` / `pageTable(unalignedVaddr)` for a bad range.
    public func cursor(_ range: Range<Vaddr>) throws(OSTDError) -> Cursor {
        do throws(OSTDError) {
            let cursor = Cursor(ptCursor: try pageTableCall { () throws(PageTableError) in try pageTable.cursor(range) },
                                audit: auditor.map { SpaceAudit(auditor: $0, space: self) })
            auditor?.didCreateCursor(over: range, mutable: false, result: .success(cursor.auditState), in: self)
            return cursor
        } catch {
            auditor?.didCreateCursor(over: range, mutable: false, result: .failure(error), in: self)
            throw error
        }
    }

    /// A cursor that may map, unmap and protect in `range` (OSTD `VmSpace::cursor_mut`).
    ///
    /// - Throws: as `cursor(_:)`.
    public func cursorMut(_ range: Range<Vaddr>) throws(OSTDError) -> CursorMut {
        do throws(OSTDError) {
            let cursor = CursorMut(ptCursor: try pageTableCall { () throws(PageTableError) in try pageTable.cursorMut(range) },
                                   flusher: TlbFlusher(space: self), audit: auditor.map { SpaceAudit(auditor: $0, space: self) })
            auditor?.didCreateCursor(over: range, mutable: true, result: .success(cursor.auditState), in: self)
            return cursor
        } catch {
            auditor?.didCreateCursor(over: range, mutable: true, result: .failure(error), in: self)
            throw error
        }
    }

    // `cursorMut` and `tryCursorMut` repeat their few lines rather than share a helper returning
    // an optional cursor: on the fault path that optional cost a memcpy of the whole cursor.

    /// `cursorMut`, or `nil` at once when another cursor holds a lock the new one needs: the
    /// caller does something else instead of waiting. Nothing is taken or changed then.
    ///
    /// - Throws: as `cursor(_:)`.
    public func tryCursorMut(_ range: Range<Vaddr>) throws(OSTDError) -> CursorMut? {
        do throws(OSTDError) {
            guard let made = try pageTableCall({ () throws(PageTableError) in try pageTable.tryCursorMut(range) }) else {
                return nil
            }
            let cursor = CursorMut(ptCursor: made, flusher: TlbFlusher(space: self),
                                   audit: auditor.map { SpaceAudit(auditor: $0, space: self) })
            auditor?.didCreateCursor(over: range, mutable: true, result: .success(cursor.auditState), in: self)
            return cursor
        } catch {
            auditor?.didCreateCursor(over: range, mutable: true, result: .failure(error), in: self)
            throw error
        }
    }
}

/// One slot of a space's page-fault handler: the handler in a box of its own, which the slot
/// holds one reference on, unmanaged. A fault calls it through the box without retaining the box
/// or the closure's context (`call`): the handler is a `let` of an object the slot keeps alive,
/// so Swift borrows it; a closure read out of mutable memory would be copied, its context
/// retained and released — two locked instructions per fault for a handler that captures.
///
/// `@safe`: `box` is nil or holds the one reference the slot took in `init`, given back once by
/// `release()`; the slot's owner (`VmSpace`) calls `call` only while no `release()` can run
/// (a read-side section, see `pageFaultHandler`).
@safe
struct PageFaultHandlerSlot {
    final class Box {
        let handler: PageFaultHandler
        init(_ handler: @escaping PageFaultHandler) { self.handler = handler }
    }

    var box: Unmanaged<Box>?

    init(_ handler: PageFaultHandler?) {
        // SAFETY: the reference taken here is the slot's, given back by `release()`.
        unsafe box = unsafe handler.map { unsafe Unmanaged.passRetained(Box($0)) }
    }

    /// Calls the handler, or answers `false` when there is none.
    @inline(__always)
    func call(_ space: VmSpace, _ fault: PageFaultInfo) -> Bool {
        // SAFETY: the box is alive: the slot's reference is not given back while a fault may
        // call it (see the type).
        guard let box = unsafe box else { return false }
        return unsafe box._withUnsafeGuaranteedRef { $0.handler(space, fault) }
    }

    /// Gives the slot's reference back and empties it.
    mutating func release() {
        // SAFETY: the slot's own reference (see the type), given back once: `box` is cleared.
        unsafe box?.release()
        unsafe box = nil
    }
}

/// Runs a page-table operation, reporting its refusal as an `OSTDError`.
@inlinable
func pageTableCall<R: ~Copyable>(_ body: () throws(PageTableError) -> R) throws(OSTDError) -> R {
    do throws(PageTableError) { return try body() } catch { throw OSTDError(error) }
}

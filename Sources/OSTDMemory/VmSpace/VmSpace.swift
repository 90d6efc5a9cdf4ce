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
// writers under its lock, and the `@Sendable` page-fault handler under its own lock; every other
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
    public var pageFaultHandler: PageFaultHandler? {
        get {
            handlerLock.lock()
            defer { handlerLock.unlock() }
            // SAFETY: the box lives as long as the space, and is read under `handlerLock`.
            return unsafe handlerStorage.pointee
        }
        set {
            handlerLock.lock()
            // SAFETY: the box lives as long as the space, and is written under `handlerLock`.
            unsafe handlerStorage.pointee = newValue
            handlerLock.unlock()
        }
    }
    /// Guards `handlerStorage`, out of line for the same reason as `registry`.
    let handlerLock = SpinLock()
    let handlerStorage: UnsafeMutablePointer<PageFaultHandler?>
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
        // SAFETY: a fresh one-element allocation, initialised once; freed by `deinit`.
        unsafe handlerStorage = .allocate(capacity: 1)
        unsafe handlerStorage.initialize(to: pageFaultHandler)
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
        // SAFETY: the handler's box `init` made; the space is gone, so no fault reads it.
        unsafe handlerStorage.deinitialize(count: 1)
        unsafe handlerStorage.deallocate()
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

/// Runs a page-table operation, reporting its refusal as an `OSTDError`.
@inlinable
func pageTableCall<R: ~Copyable>(_ body: () throws(PageTableError) -> R) throws(OSTDError) -> R {
    do throws(PageTableError) { return try body() } catch { throw OSTDError(error) }
}

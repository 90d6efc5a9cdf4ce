// Readers and writers of a space's user memory: the I/O layer's half of the ownership protocol
// (the seeds' `create_*`, `activate_*`, `dispose_*`, `remove_*`). Admission and registration are
// the address-space layer's (`VmSpace+Registry.swift`); this file makes the handles.

extension VmSpace {
    /// A reader of the user memory `vaddr ..< vaddr + len` (the seeds' `create_reader` followed by
    /// `activate_reader`; OSTD `VmSpace::reader`). It holds a read view until it is disposed or
    /// dropped, and a reference on the space, so it may outlive the caller's; where the reader's
    /// use fits in one call, `withReader` borrows the space instead (two locked instructions
    /// fewer).
    ///
    /// - Throws: `notActive` when the space is not active on the caller's CPU; `invalidUserRange`
    ///   for an empty, overflowing or non-user range; `accessConflict` when an active writer (or,
    ///   without `sharedReader`, an active reader) overlaps the range.
    @inlinable
    public func createReader(_ vaddr: Vaddr, _ len: Int) throws(OSTDError) -> VmReader<Fallible> {
        // SAFETY: the registration just admitted over these bytes, in this space's registry, goes
        // to the new reader.
        unsafe VmReader(user: self, record: try admitHandle(vaddr, len, view: .readView), start: vaddr, length: len)
    }

    /// A writer of the user memory `vaddr ..< vaddr + len` (the seeds' `create_writer` followed by
    /// `activate_writer`; OSTD `VmSpace::writer`). It holds the write view until it is disposed or
    /// dropped, and a reference on the space (see `createReader`; `withWriter` borrows it).
    ///
    /// - Throws: as `createReader`, with `accessConflict` when any active reader or writer
    ///   overlaps the range.
    @inlinable
    public func createWriter(_ vaddr: Vaddr, _ len: Int) throws(OSTDError) -> VmWriter<Fallible> {
        // SAFETY: the registration just admitted over these bytes, in this space's registry, goes
        // to the new writer.
        unsafe VmWriter(user: self, record: try admitHandle(vaddr, len, view: .writeView), start: vaddr, length: len)
    }

    /// The registration of a new handle over `vaddr ..< vaddr + len` holding `view`, after the
    /// checks of `createReader` / `createWriter`; a refusal is shown to the auditor. Admission runs
    /// with preemption disabled: a fast admission claims a slot of the caller's CPU. Out of line,
    /// while the handle is made inline, in the caller's own storage (`createReader` is
    /// inlinable): a handle returned through memory was copied again by the caller, re-reading
    /// the fields just stored with wider loads the CPU cannot forward.
    @usableFromInline
    func admitHandle(_ vaddr: Vaddr, _ len: Int, view: VmIoMemView) throws(OSTDError) -> Record {
        do throws(OSTDError) {
            // SAFETY: passes on the registration `admit` makes in this space's registry.
            return try unsafe context.platform.withPreemptionDisabled { (cpu) throws(OSTDError) -> Record in
                // The CPU whose MMU the handle uses (`executingCpu()`).
                let executing = cpu ?? context.platform.executingCpu()
                guard context.platform.isActive(root: rootPaddr, on: executing) else { throw .notActive(cpu: executing) }
                // SAFETY: passes on the registration `admit` makes in this space's registry.
                return try unsafe admit(try VmSpace.userRange(vaddr, len), view: view, cpu: cpu)
            }
        } catch {
            auditOwnership(.refused(vaddr: vaddr, len: len, view: view, error: error))
            throw error
        }
    }

    /// Runs `body` with a reader of `vaddr ..< vaddr + count`, removed when `body` returns: the
    /// scoped form of create, activate, use, dispose and remove, which cannot leak a registration.
    /// The reader borrows the space for the call, as OSTD's `VmReader<'a>` borrows `&'a VmSpace`:
    /// it takes no reference on it, two locked instructions fewer than `createReader` and its drop
    /// (readers split off it take references of their own and may outlive the call).
    ///
    /// - Throws: what `createReader` throws, or what `body` throws.
    /// - Precondition: `body` leaves the reader it was given in its parameter. One that moves it
    ///   out (swapping another in) traps when it returns: the reader would outlive the borrow.
    @inlinable
    public func withReader<R: ~Copyable>(
        at vaddr: Vaddr, count: Int, _ body: (inout VmReader<Fallible>) throws(OSTDError) -> R
    ) throws(OSTDError) -> R {
        // SAFETY: the registration just admitted goes to the reader; `self` is alive for the whole
        // call, and the reader ends in it (checked after `body`, comparing addresses only).
        let record = try unsafe admitHandle(vaddr, count, view: .readView)
        var reader = unsafe VmReader<Fallible>(borrowing: self, record: record, start: vaddr, length: count)
        defer { unsafe IoWindow.checkScoped(borrowsSpace: reader.window.borrowsSpace, reader.window.record, madeOver: record) }
        return try body(&reader)
    }

    /// Runs `body` with a writer of `vaddr ..< vaddr + count`, removed when `body` returns; the
    /// writer borrows the space, as in `withReader`.
    ///
    /// - Throws: what `createWriter` throws, or what `body` throws.
    /// - Precondition: `body` leaves the writer it was given in its parameter (see `withReader`).
    @inlinable
    public func withWriter<R: ~Copyable>(
        at vaddr: Vaddr, count: Int, _ body: (inout VmWriter<Fallible>) throws(OSTDError) -> R
    ) throws(OSTDError) -> R {
        // SAFETY: the registration just admitted goes to the writer; `self` is alive for the whole
        // call, and the writer ends in it (checked after `body`, comparing addresses only).
        let record = try unsafe admitHandle(vaddr, count, view: .writeView)
        var writer = unsafe VmWriter<Fallible>(borrowing: self, record: record, start: vaddr, length: count)
        defer { unsafe IoWindow.checkScoped(borrowsSpace: writer.window.borrowsSpace, writer.window.record, madeOver: record) }
        return try body(&writer)
    }

    #if !hasFeature(Embedded)
    /// `withReader` for a body that throws untyped errors.
    @inlinable
    public func withReader<R: ~Copyable>(at vaddr: Vaddr, count: Int, _ body: (inout VmReader<Fallible>) throws -> R) throws -> R {
        // SAFETY: the registration just admitted goes to the reader; `self` is alive for the whole
        // call, and the reader ends in it (checked after `body`, comparing addresses only).
        let record = try unsafe admitHandle(vaddr, count, view: .readView)
        var reader = unsafe VmReader<Fallible>(borrowing: self, record: record, start: vaddr, length: count)
        defer { unsafe IoWindow.checkScoped(borrowsSpace: reader.window.borrowsSpace, reader.window.record, madeOver: record) }
        return try body(&reader)
    }

    /// `withWriter` for a body that throws untyped errors.
    @inlinable
    public func withWriter<R: ~Copyable>(at vaddr: Vaddr, count: Int, _ body: (inout VmWriter<Fallible>) throws -> R) throws -> R {
        // SAFETY: the registration just admitted goes to the writer; `self` is alive for the whole
        // call, and the writer ends in it (checked after `body`, comparing addresses only).
        let record = try unsafe admitHandle(vaddr, count, view: .writeView)
        var writer = unsafe VmWriter<Fallible>(borrowing: self, record: record, start: vaddr, length: count)
        defer { unsafe IoWindow.checkScoped(borrowsSpace: writer.window.borrowsSpace, writer.window.record, madeOver: record) }
        return try body(&writer)
    }
    #endif

    // MARK: The ownership protocol's explicit steps

    /// Gives a disposed reader its read view back (the seeds' `activate_reader`).
    ///
    /// - Throws: `accessConflict` as `createReader`; `notActive`. Nothing changes then.
    public func activateReader(_ reader: inout VmReader<Fallible>) throws(OSTDError) {
        // SAFETY: the reader's own registration (nil for kernel memory), live while the reader
        // is. That it belongs to this space is the caller's to ensure, and is not checked: a
        // reader of another space would put that space's record in this registry (a known gap).
        try unsafe reactivate(reader.window.record, view: .readView)
    }

    /// Gives a disposed writer its write view back (the seeds' `activate_writer`).
    ///
    /// - Throws: `accessConflict` as `createWriter`; `notActive`. Nothing changes then.
    public func activateWriter(_ writer: inout VmWriter<Fallible>) throws(OSTDError) {
        // SAFETY: the writer's own registration (nil for kernel memory), live while the writer
        // is. That it belongs to this space is the caller's to ensure, and is not checked: a
        // writer of another space would put that space's record in this registry (a known gap).
        try unsafe reactivate(writer.window.record, view: .writeView)
    }

    /// Returns a reader's permission (the seeds' `dispose_reader`): the reader stays registered
    /// and can be activated again, but reads fail with `disposed` until then.
    public func disposeReader(_ reader: inout VmReader<Fallible>) {
        // SAFETY: the reader's own registration (nil for kernel memory), live while the reader
        // is. That it belongs to this space is the caller's to ensure, and is not checked: a
        // reader of another space would put that space's record in this registry (a known gap).
        unsafe dispose(reader.window.record)
    }

    /// Returns a writer's permission (the seeds' `dispose_writer`), as `disposeReader`.
    public func disposeWriter(_ writer: inout VmWriter<Fallible>) {
        // SAFETY: the writer's own registration (nil for kernel memory), live while the writer
        // is. That it belongs to this space is the caller's to ensure, and is not checked: a
        // writer of another space would put that space's record in this registry (a known gap).
        unsafe dispose(writer.window.record)
    }

    /// Ends a reader for good (the seeds' `remove_reader`); dropping it does the same.
    public func removeReader(_ reader: consuming VmReader<Fallible>) { reader.window.close() }

    /// Ends a writer for good (the seeds' `remove_writer`); dropping it does the same.
    public func removeWriter(_ writer: consuming VmWriter<Fallible>) { writer.window.close() }
}

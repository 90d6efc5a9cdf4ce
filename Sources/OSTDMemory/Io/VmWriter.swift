// `VmWriter`: writes memory through a moving cursor (OSTD `io/mod.rs`; the seeds' `VmWriter`).
//
// The mirror of `VmReader`. A user-space writer holds its space's write view of the bytes it has
// not written yet: no other reader or writer may overlap them while it is active. Like the reader,
// it has no `deinit` of its own: its `IoWindow` gives the registration and references back.

import Synchronization

/// A writer of memory (OSTD `VmWriter`).
public struct VmWriter<F: Fallibility>: ~Copyable {
    @usableFromInline var window: IoWindow

    @inlinable
    init(window: consuming IoWindow) { self.window = window }

    @inlinable @inline(__always)
    init(user space: VmSpace, record: UnsafeMutablePointer<IoRecord>, start: Vaddr, length: Int) {
        // SAFETY: `record` is the registration `space` just admitted for this writer, over these
        // bytes.
        window = unsafe IoWindow(user: space, record: record, start: start, length: length)
    }

    /// A user writer that borrows `space` (see `IoWindow.init(borrowing:record:start:length:)`).
    ///
    /// - Safety: `space` outlives the writer: the caller is a scope that ends it before returning.
    @unsafe @inlinable @inline(__always)
    init(borrowing space: VmSpace, record: UnsafeMutablePointer<IoRecord>, start: Vaddr, length: Int) {
        // SAFETY: `record` as above; the caller keeps `space` alive while the writer lives.
        window = unsafe IoWindow(borrowing: space, record: record, start: start, length: length)
    }

    /// Bytes left to write (OSTD `avail`; the seeds' `avail_spec`).
    @inlinable public var avail: Int { window.length }

    /// Whether bytes are left (OSTD `has_avail`).
    @inlinable public var hasAvail: Bool { avail > 0 }

    /// The cursor as a number: a virtual address for user memory, the host address of the next
    /// byte for kernel memory (for display, comparison and alignment only; never turned back
    /// into a pointer), as `VmReader.cursor`.
    @inlinable public var cursor: UInt64 { window.cursor }

    /// The registration of a user-space writer (the seeds' `VmIoOwner`), `nil` for kernel memory.
    public var owner: VmIoOwner? { window.owner }

    /// Caps the bytes left at `max` (OSTD `limit`).
    public mutating func limit(_ max: Int) {
        if window.here.isAudited { window.auditedLimit(max, as: .writer) } else { window.limit(max) }
    }

    /// Moves the cursor `count` bytes on without writing (OSTD `skip`).
    ///
    /// - Precondition: `count <= avail`.
    public mutating func skip(_ count: Int) {
        checkSkip(count, within: avail)
        if window.here.isAudited { window.auditedSkip(count, as: .writer) } else { window.advance(count) }
    }

    /// The seeds' `VmIoOwner::advance`: gives up the first `count` bytes (same as `skip`).
    public mutating func advance(_ count: Int) { skip(count) }

    /// Splits off the first `count` bytes as a writer of their own (the seeds' `split`).
    ///
    /// - Precondition: `count <= avail`.
    public mutating func split(_ count: Int) -> VmWriter<F> {
        VmWriter(window: window.here.isAudited ? window.auditedSplit(count, as: .writer) : window.splitFront(count))
    }

    /// The same bytes as a reader, holding a read view instead of the write view (the seeds'
    /// `write_to_read`).
    public consuming func writeToRead() -> VmReader<F> {
        // SAFETY: the window's own registration, in its space's registry (live while the window
        // retains the space).
        if let record = unsafe window.record, let space = window.space { unsafe space.convertToReader(record) }
        return VmReader(window: window)
    }

    /// Copies from `reader` into this writer (OSTD `write_fallible`); see `VmReader.readFallible`.
    @inlinable
    public mutating func writeFallible<R: Fallibility>(_ reader: inout VmReader<R>) throws(OSTDError) -> Int {
        try reader.readFallible(&self)
    }

    /// Writes `value` and moves past it (OSTD `write_val`).
    ///
    /// - Throws: `invalidArgs` when fewer than `MemoryLayout<T>.size` bytes are left; a fault
    ///   throws `pageFault` with the bytes written before it, and the cursor stays where it was.
    @inlinable
    public mutating func writeVal<T: BitwiseCopyable>(_ value: T) throws(OSTDError) {
        if window.here.isAudited { return try auditedWriteVal(value) }
        try writeValUnaudited(value)
    }

    /// `writeVal` without the audit.
    @inlinable
    mutating func writeValUnaudited<T: BitwiseCopyable>(_ value: T) throws(OSTDError) {
        let size = MemoryLayout<T>.size
        guard avail >= size else {
            throw .invalidArgs("writing a \(size)-byte value with \(avail) byte(s) left")
        }
        // SAFETY: the window's own registration; the field is read in place (`IoWindow.isDisposed`).
        if unsafe IoWindow.isDisposed(window.record) { throw .disposed(range: window.range) }
        let here = window.here
        if case .user(let space, let va) = here, isSmallValue(at: va, count: size) {
            // SAFETY: the window holds (or its scope keeps) the space; a small value (checked).
            // The cursor moves only after a complete write: a fault leaves it where it was.
            if let fault = try unsafe storeUserValue(value, space, at: va) { throw .pageFault(address: fault.address, copied: 0) }
            window.advance(size)
            return
        }
        // SAFETY: the destination is this live window's cursor with `size` bytes left (checked
        // above); the source is `value`'s `size` bytes, valid for the duration of the closure.
        let (copied, fault) = try unsafe withUnsafeBytes(of: value) { buffer in
            Result { () throws(OSTDError) in
                // SAFETY: `transfer` only reads from its source; the pointer is mutable only
                // because that is the type of a host end. It is valid for `size` bytes in here.
                try unsafe transfer(from: .host(UnsafeMutableRawPointer(mutating: buffer.baseAddress)), to: here, count: size)
            }
        }.get()
        // The cursor moves only after a complete write: a fault leaves it where it was.
        if let fault { throw .pageFault(address: fault.address, copied: copied) }
        window.advance(size)
    }
}

extension VmWriter where F == Infallible {
    /// A writer of the host bytes `bytes` (OSTD `From<&mut [u8]>` and `from_kernel_space`).
    ///
    /// - Safety: the bytes must stay valid while the writer lives, and while any writer split
    ///   from it (or reader made of it) lives (OSTD's lifetime `'a` covers them all).
    @unsafe
    public init(_ bytes: UnsafeMutableRawBufferPointer) {
        // SAFETY: the caller's contract (above) is the window's host invariant.
        window = unsafe IoWindow(host: bytes.baseAddress, count: bytes.count, kept: nil)
    }

    /// Copies from `reader` (OSTD `write`): `reader.read(&self)`.
    @inlinable
    public mutating func write(_ reader: inout VmReader<Infallible>) -> Int { reader.read(&self) }

    /// Writes `min(count, avail)` zero bytes and returns how many (OSTD `fill_zeros`).
    @discardableResult
    public mutating func fillZeros(_ count: Int) -> Int {
        let filled = min(max(count, 0), avail)
        guard filled > 0 else { return 0 }
        // SAFETY: a host window with at least `filled <= avail` bytes left; bytes are trivial.
        unsafe window.here.host.initializeMemory(as: UInt8.self, repeating: 0, count: filled)
        window.advance(filled)
        return filled
    }

    /// Writes a 1-, 2-, 4- or 8-byte integer in one access (OSTD `write_once`).
    ///
    /// - Throws: `invalidArgs` when too few bytes are left.
    /// - Precondition: the cursor is aligned for `T`.
    @inlinable
    public mutating func writeOnce<T: FixedWidthInteger & BitwiseCopyable>(_ value: T) throws(OSTDError) {
        guard avail >= MemoryLayout<T>.size else {
            throw .invalidArgs("writing a \(MemoryLayout<T>.size)-byte value with \(avail) byte(s) left")
        }
        checkOnce(T.self, at: window.cursor)
        // SAFETY: a host window with at least `size` bytes left (checked), at a cursor aligned for
        // `T` (checked).
        unsafe window.here.host.storeBytes(of: value, as: T.self)
        window.advance(MemoryLayout<T>.size)
    }

    /// The same writer, typed as one that may fault (OSTD `to_fallible`; the seeds'
    /// `change_fallible`).
    public consuming func toFallible() -> VmWriter<Fallible> { VmWriter<Fallible>(window: window) }
}

extension VmWriter where F == Fallible {
    /// Writes `min(count, avail)` zero bytes (OSTD's fallible `fill_zeros`).
    ///
    /// - Returns: the bytes written.
    /// - Throws: `pageFault(address:copied:)` when it stopped at a byte it could not write; the
    ///   bytes before it stay written.
    @discardableResult
    public mutating func fillZeros(_ count: Int) throws(OSTDError) -> Int {
        if window.here.isAudited { return try auditedFillZeros(count) }
        return try fillZerosUnaudited(count)
    }

    /// `fillZeros` without the audit.
    mutating func fillZerosUnaudited(_ count: Int) throws(OSTDError) -> Int {
        // SAFETY: the window's own registration; the field is read in place (`IoWindow.isDisposed`).
        if unsafe IoWindow.isDisposed(window.record) { throw .disposed(range: window.range) }
        // SAFETY: the live window's cursor, with at least the count filled (`<= avail`) left.
        let (filled, fault) = try unsafe zeroFill(window.here, count: min(max(count, 0), avail))
        window.advance(filled)
        if let fault { throw .pageFault(address: fault.address, copied: filled) }
        return filled
    }

    /// Compares the `UInt32` at the cursor with `old` and, if equal, replaces it with `new`,
    /// atomically (Relaxed) and without moving (OSTD `atomic_compare_exchange`).
    ///
    /// - Returns: the previous value and whether it was replaced.
    /// - Throws: `invalidArgs` when fewer than 4 bytes are left; `pageFault` (with `copied: 0`)
    ///   when the page is not writable.
    /// - Precondition: `reader` is at the same address, and the cursor is 4-byte aligned.
    public func atomicCompareExchange(
        _ reader: borrowing VmReader<Fallible>, old: UInt32, new: UInt32
    ) throws(OSTDError) -> (previous: UInt32, exchanged: Bool) {
        if window.here.isAudited { return try auditedAtomicCompareExchange(reader, old: old, new: new) }
        return try atomicCompareExchangeUnaudited(reader, old: old, new: new)
    }

    /// `atomicCompareExchange` without the audit.
    func atomicCompareExchangeUnaudited(
        _ reader: borrowing VmReader<Fallible>, old: UInt32, new: UInt32
    ) throws(OSTDError) -> (previous: UInt32, exchanged: Bool) {
        precondition(reader.cursor == cursor, "the reader and the writer of a compare-exchange are at different addresses")
        guard avail >= 4 else { throw .invalidArgs("atomic compare-exchange of 4 bytes with \(avail) byte(s) left") }
        precondition(window.cursor % 4 == 0, "unaligned atomic compare-exchange at 0x\(String(window.cursor, radix: 16))")
        // SAFETY: the window's own registration; the field is read in place (`IoWindow.isDisposed`).
        if unsafe IoWindow.isDisposed(window.record) { throw .disposed(range: window.range) }
        // SAFETY: the live window's cursor, with at least 4 bytes left and 4-byte aligned (both
        // checked above); the word is used atomically.
        let outcome = try unsafe atomicAccess(window.here, write: true) {
            unsafe $0.pointee.compareExchange(expected: old, desired: new, ordering: .relaxed)
        }
        switch outcome {
        case .success(let (exchanged, previous)): return (previous, exchanged)
        case .failure(let fault): throw .pageFault(address: fault.address, copied: 0)
        }
    }
}

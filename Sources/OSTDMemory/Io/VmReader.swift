// `VmReader`: reads memory through a moving cursor (OSTD `io/mod.rs`; the seeds' `VmReader`).
//
// A user-space reader comes from `VmSpace.createReader` and is registered with its space while it
// lives; dropping it removes the registration (Rust's `Drop`, here the `deinit` of the
// noncopyable `IoWindow` it holds; the reader itself needs none, so consuming methods can move
// the window out). Kernel readers cover host buffers,
// frames or segments. Every read moves the cursor by the bytes it transferred; a fault in a
// fallible read stops it there and reports `pageFault` with that count, except `readVal`, which
// puts the cursor back.

import Synchronization

/// A reader of memory (OSTD `VmReader`).
public struct VmReader<F: Fallibility>: ~Copyable {
    @usableFromInline var window: IoWindow

    @inlinable
    init(window: consuming IoWindow) { self.window = window }

    @inlinable @inline(__always)
    init(user space: VmSpace, record: UnsafeMutablePointer<IoRecord>, start: Vaddr, length: Int) {
        // SAFETY: `record` is the registration `space` just admitted for this reader, over these
        // bytes.
        window = unsafe IoWindow(user: space, record: record, start: start, length: length)
    }

    /// A user reader that borrows `space` (see `IoWindow.init(borrowing:record:start:length:)`).
    ///
    /// - Safety: `space` outlives the reader: the caller is a scope that ends it before returning.
    @unsafe @inlinable @inline(__always)
    init(borrowing space: VmSpace, record: UnsafeMutablePointer<IoRecord>, start: Vaddr, length: Int) {
        // SAFETY: `record` as above; the caller keeps `space` alive while the reader lives.
        window = unsafe IoWindow(borrowing: space, record: record, start: start, length: length)
    }

    /// Bytes left to read (OSTD `remain`; the seeds' `remain_spec`).
    @inlinable public var remain: Int { window.length }

    /// Whether bytes are left (OSTD `has_remain`).
    @inlinable public var hasRemain: Bool { remain > 0 }

    /// The cursor as a number: a virtual address for user memory, the host address of the next
    /// byte for kernel memory. For kernel memory the number is for display, comparison and
    /// alignment only: the reader keeps the pointer itself, and this value is never turned back
    /// into one.
    @inlinable public var cursor: UInt64 { window.cursor }

    /// The registration of a user-space reader (the seeds' `VmIoOwner`), `nil` for kernel memory.
    public var owner: VmIoOwner? { window.owner }

    /// Caps the bytes left at `max` (OSTD `limit`): afterwards `remain <= max`.
    public mutating func limit(_ max: Int) {
        if window.here.isAudited { window.auditedLimit(max, as: .reader) } else { window.limit(max) }
    }

    /// Moves the cursor `count` bytes on without reading (OSTD `skip`).
    ///
    /// - Precondition: `count <= remain`.
    public mutating func skip(_ count: Int) {
        checkSkip(count, within: remain)
        if window.here.isAudited { window.auditedSkip(count, as: .reader) } else { window.advance(count) }
    }

    /// The seeds' `VmIoOwner::advance`: gives up the first `count` bytes (same as `skip`).
    public mutating func advance(_ count: Int) { skip(count) }

    /// Splits off the first `count` bytes as a reader of their own, registered with the same view
    /// (the seeds' `VmIoOwner::split`); this reader keeps the rest.
    ///
    /// - Precondition: `count <= remain`.
    public mutating func split(_ count: Int) -> VmReader<F> {
        VmReader(window: window.here.isAudited ? window.auditedSplit(count, as: .reader) : window.splitFront(count))
    }

    /// Copies `min(remain, writer.avail)` bytes into `writer`, faulting user pages in through
    /// the space's handler (OSTD `read_fallible`). Both cursors move by the bytes copied.
    ///
    /// - Throws: `pageFault(address:copied:)` when it stopped at a byte it could not access;
    ///   `disposed`; `notActive`.
    @inlinable
    public mutating func readFallible<W: Fallibility>(_ writer: inout VmWriter<W>) throws(OSTDError) -> Int {
        if window.here.isAudited || writer.window.here.isAudited { return try auditedReadFallible(&writer) }
        return try copyFallible(&writer)
    }

    /// `readFallible` without the audit.
    @inlinable
    mutating func copyFallible<W: Fallibility>(_ writer: inout VmWriter<W>) throws(OSTDError) -> Int {
        // SAFETY: each window's own registration.
        if unsafe IoWindow.isDisposed(window.record) { throw .disposed(range: window.range) }
        // SAFETY: as above.
        if unsafe IoWindow.isDisposed(writer.window.record) { throw .disposed(range: writer.window.range) }
        // SAFETY: both ends are live windows' cursors, each with at least the count copied left.
        // The fields themselves, not `remain` and `avail`: those borrowed each window whole, and
        // the writer's even through its generic metadata.
        let (copied, fault) = try unsafe transfer(from: window.here, to: writer.window.here,
                                                  count: min(window.length, writer.window.length))
        window.advance(copied)
        writer.window.advance(copied)
        if let fault { throw .pageFault(address: fault.address, copied: copied) }
        return copied
    }

    /// Reads a `T` and moves past it (OSTD `read_val`).
    ///
    /// - Throws: `invalidArgs` when fewer than `MemoryLayout<T>.size` bytes are left; a fault
    ///   throws `pageFault` (with the bytes that were read before it) and leaves the cursor where
    ///   it was.
    @inlinable
    public mutating func readVal<T: BitwiseCopyable>(_: T.Type = T.self) throws(OSTDError) -> T {
        if window.here.isAudited { return try auditedReadVal(T.self) }
        return try readValUnaudited(T.self)
    }

    /// `readVal` without the audit.
    @inlinable
    mutating func readValUnaudited<T: BitwiseCopyable>(_: T.Type) throws(OSTDError) -> T {
        let size = MemoryLayout<T>.size
        guard remain >= size else {
            throw .invalidArgs("reading a \(size)-byte value with \(remain) byte(s) left")
        }
        // SAFETY: the window's own registration; the field is read in place (`IoWindow.isDisposed`).
        if unsafe IoWindow.isDisposed(window.record) { throw .disposed(range: window.range) }
        let here = window.here
        if case .user(let space, let va) = here, isSmallValue(at: va, count: size) {
            // SAFETY: the window holds (or its scope keeps) the space; a small value (checked).
            switch try unsafe loadUserValue(space, at: va, as: T.self) {
            case .success(let value):
                window.advance(size)
                return value
            case .failure(let fault):
                throw readValFault(fault, at: here, size: size)
            }
        }
        var value = zeroedBits(T.self)
        // SAFETY: the source is this live window's cursor with `size` bytes left (checked above);
        // the destination is `value`'s `size` bytes, valid for the duration of the closure, which
        // the transfer does not outlive.
        let (copied, fault) = try unsafe withUnsafeMutableBytes(of: &value) { buffer in
            Result { () throws(OSTDError) in
                try unsafe transfer(from: here, to: .host(buffer.baseAddress), count: size)
            }
        }.get()
        if let fault { throw readValFault(fault, at: here, size: size, copied: copied) }
        window.advance(size)
        return value
    }

    /// The error of a `readVal` that faulted. The cursor moves only after a complete read: a fault
    /// leaves it where it was.
    @inlinable
    mutating func readValFault(_ fault: AccessFault, at here: IoEnd, size: Int, copied: Int = 0) -> OSTDError {
        #if DEBUG
        if here.space?.context.hasMutant(.readValAdvancesOnFault) == true { window.advance(size) }
        #endif
        return .pageFault(address: fault.address, copied: copied)
    }
}

/// An all-zero value of `T`, for the slot a read fills (OSTD starts from `T::new_zeroed()`).
@inlinable
func zeroedBits<T: BitwiseCopyable>(_: T.Type) -> T {
    // SAFETY: the temporary allocation holds one `T`, whose `size` bytes are zeroed before they
    // are loaded. That all-zero bits (and, in `readVal`, any bytes read) are a valid `T` is
    // OSTD's `Pod` bound; `BitwiseCopyable` does not promise it (an enum without a zero case),
    // so it rests on callers reading plain-data types, as the package's do.
    unsafe withUnsafeTemporaryAllocation(of: T.self, capacity: 1) { buffer in
        let raw = UnsafeMutableRawPointer(buffer.baseAddress!)
        unsafe raw.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<T>.size)
        return unsafe raw.load(as: T.self)
    }
}

extension VmReader where F == Infallible {
    /// A reader of the host bytes `bytes` (OSTD `From<&[u8]>` and `from_kernel_space`).
    ///
    /// - Safety: the bytes must stay valid while the reader lives, and while any reader split or
    ///   cloned from it lives (OSTD's lifetime `'a` covers them all).
    @unsafe
    public init(_ bytes: UnsafeRawBufferPointer) {
        // SAFETY: a reader never writes through the pointer (the mutable type is the window's
        // common currency); the caller keeps the bytes valid while the reader lives.
        window = unsafe IoWindow(host: UnsafeMutableRawPointer(mutating: bytes.baseAddress), count: bytes.count, kept: nil)
    }

    /// Copies `min(remain, writer.avail)` bytes into `writer`; both cursors move (OSTD `read`).
    @inlinable
    public mutating func read(_ writer: inout VmWriter<Infallible>) -> Int {
        let count = min(remain, writer.avail)
        guard count > 0 else { return 0 }
        // SAFETY: two infallible (host) windows with at least `count` bytes left each (IoWindow's
        // invariant); `copyMemory` is a `memmove`.
        unsafe writer.window.here.host.copyMemory(from: window.here.host, byteCount: count)
        window.advance(count)
        writer.window.advance(count)
        return count
    }

    /// Reads a 1-, 2-, 4- or 8-byte integer in one access (OSTD `read_once`).
    ///
    /// - Throws: `invalidArgs` when too few bytes are left.
    /// - Precondition: the cursor is aligned for `T`.
    @inlinable
    public mutating func readOnce<T: FixedWidthInteger & BitwiseCopyable>(_: T.Type = T.self) throws(OSTDError) -> T {
        guard remain >= MemoryLayout<T>.size else {
            throw .invalidArgs("reading a \(MemoryLayout<T>.size)-byte value with \(remain) byte(s) left")
        }
        checkOnce(T.self, at: window.cursor)
        // SAFETY: a host window with at least `size` bytes left (checked), at a cursor aligned for
        // `T` (checked); `T` is an integer, so any bits are a value.
        let value = unsafe window.here.host.load(as: T.self)
        window.advance(MemoryLayout<T>.size)
        return value
    }

    /// Another reader of the same bytes (OSTD `Clone`).
    public func clone() -> VmReader<Infallible> { VmReader(window: window.cloneKernel()) }

    /// The same reader, typed as one that may fault (OSTD `to_fallible`; the seeds'
    /// `change_fallible`).
    public consuming func toFallible() -> VmReader<Fallible> { VmReader<Fallible>(window: window) }
}

extension VmReader where F == Fallible {
    /// Loads the `UInt32` at the cursor atomically (Relaxed), without moving (OSTD
    /// `atomic_load`).
    ///
    /// - Throws: `invalidArgs` when fewer than 4 bytes are left; `pageFault` (with `copied: 0`)
    ///   when the page is not readable.
    /// - Precondition: the cursor is 4-byte aligned.
    public func atomicLoad() throws(OSTDError) -> UInt32 {
        if window.here.isAudited { return try auditedAtomicLoad() }
        return try atomicLoadUnaudited()
    }

    /// `atomicLoad` without the audit.
    func atomicLoadUnaudited() throws(OSTDError) -> UInt32 {
        guard remain >= 4 else { throw .invalidArgs("atomic load of 4 bytes with \(remain) byte(s) left") }
        precondition(window.cursor % 4 == 0, "unaligned atomic load at 0x\(String(window.cursor, radix: 16))")
        // SAFETY: the window's own registration; the field is read in place (`IoWindow.isDisposed`).
        if unsafe IoWindow.isDisposed(window.record) { throw .disposed(range: window.range) }
        // SAFETY: the live window's cursor, with at least 4 bytes left and 4-byte aligned (both
        // checked above); the word is used atomically.
        switch try unsafe atomicAccess(window.here, write: false, { unsafe $0.pointee.load(ordering: .relaxed) }) {
        case .success(let value): return value
        case .failure(let fault): throw .pageFault(address: fault.address, copied: 0)
        }
    }
}

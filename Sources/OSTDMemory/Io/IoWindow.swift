// What a reader and a writer have in common: a cursor, the bytes left, and what they belong to.
//
// OSTD's `VmReader` / `VmWriter` are two raw pointers. Here a window also says whose memory it
// covers: a user space (the addresses are virtual and go through the TLB, and the window holds a
// `VmIoOwner` registration) or kernel memory (the addresses are host pointers; a window over
// frames keeps a reference to them so they outlive it). The two kinds of address have two types
// (`IoEnd.user` holds a `Vaddr`, `IoEnd.host` a pointer), so a host address is never stored as an
// integer and turned back into a pointer. The fallibility of a handle is its type parameter:
// `Fallible` handles may fault, `Infallible` ones are kernel memory and cannot.
//
// A window is noncopyable and owns what it holds: the registration of a user window and, unless
// it borrows its space, a reference on that space; the frame references of a kernel window over
// frames. Its `deinit` gives them back, exactly once; handing a window to another handle is a
// move. A window that borrows its space is a scoped handle's (`VmSpace.withReader` /
// `withWriter`, OSTD's `VmReader<'a>` borrowing `&'a VmSpace`): the scope keeps the space alive
// and ends the window before it returns, so the window takes no reference.

import Synchronization

/// Whether accesses through a reader or writer may fault (OSTD's `Fallibility` parameter).
public protocol Fallibility {}

/// Accesses may fault: user memory, or kernel memory viewed as such (OSTD `Fallible`).
public enum Fallible: Fallibility {}

/// Accesses never fault: kernel memory (OSTD `Infallible`).
public enum Infallible: Fallibility {}

/// One end of a transfer, and a window's cursor: user memory of a space at a virtual address, or
/// kernel memory at a host address.
///
/// `@safe`: an end is a window's cursor, or taken from one for an access through that window
/// (`IoWindow`'s invariant): a user end's space is retained by the window, and a host end's
/// pointer is valid for the window's bytes. Deriving an end is address arithmetic; every
/// dereference is marked where it happens.
@safe @usableFromInline
enum IoEnd {
    /// User memory of the space at a virtual address. The space is unretained here: the window
    /// the end comes from holds the reference, or the scope it is borrowed for keeps the space.
    case user(Unmanaged<VmSpace>, Vaddr)
    /// Kernel memory at a host address. `nil` only as the start of an empty host buffer (a
    /// buffer pointer without a base address), which no access of one byte or more reaches.
    case host(UnsafeMutableRawPointer?)

    /// The user space, if any.
    @inlinable var space: VmSpace? {
        guard case .user(let space, _) = self else { return nil }
        // SAFETY: the window the end comes from holds a reference on the space while the end is
        // in use (ends are taken from a live window and do not outlive the access).
        return unsafe space.takeUnretainedValue()
    }

    /// The user space's unmanaged reference, if any.
    @inlinable var spaceRef: Unmanaged<VmSpace>? {
        guard case .user(let space, _) = self else { return nil }
        // SAFETY: hands out the unmanaged reference without using it; its users take the value
        // while the window holds the space.
        return unsafe space
    }

    /// The host pointer, for kernel memory.
    ///
    /// - Precondition: this is a kernel end, with bytes at it.
    @inlinable var host: UnsafeMutableRawPointer {
        // SAFETY: hands out the host pointer without dereferencing it; its users access at most
        // the window's bytes, marked where they do.
        guard case .host(let pointer) = self, let pointer = unsafe pointer else {
            preconditionFailure("a host access at a user address or an empty host buffer")
        }
        return unsafe pointer
    }

    /// The address as a number: the virtual address of user memory, the host address of kernel
    /// memory (for display, comparison and alignment checks; never turned back into a pointer).
    @inlinable var bits: UInt64 {
        switch self {
        case .user(_, let va): va.rawValue
        case .host(let pointer): UInt64(UInt(bitPattern: pointer))
        }
    }

    /// The same end, with a new reference on its space for a new window to own.
    func retained() -> IoEnd {
        // SAFETY: the end comes from a live window, which holds its space; the new reference is
        // the new window's, given back by its `deinit`.
        if case .user(let space, _) = self { _ = unsafe space.retain() }
        return self
    }

    /// The end `count` bytes further on.
    @inlinable @inline(__always)
    func advanced(by count: Int) -> IoEnd {
        // SAFETY: address arithmetic only; callers advance by at most the window's bytes.
        switch self {
        case .user(let space, let va): unsafe .user(space, va + count)
        case .host(let pointer): unsafe .host(pointer.map { unsafe $0 + count })
        }
    }
}

/// Frames a kernel-memory window keeps alive: one reference on each (what a `Segment` over them
/// would hold), owned by the window that stores them.
@usableFromInline
typealias KeptFrames = (frames: Range<Int>, context: MachineRef)

/// The cursor, length and backing of a reader or writer.
///
/// The references are plain data, taken when the window is made and given back by its `deinit`:
/// the space is unmanaged and the kept frames are a range, so the per-access paths pass `IoEnd`s
/// around without reference counting, and destroying a window needs no generic metadata (a
/// `Segment<DynFrameMeta>?` field would). The window being noncopyable is what makes each
/// reference given back exactly once.
///
/// `@safe`: the window may access `length` bytes from `here`. A user window's are virtual
/// addresses of the space it retains (or borrows for a scope that outlives it), translated and
/// checked by the MMU on every access, and `record` is its registration in that space's
/// registry. A host window's are valid host bytes: frames whose references `kept` owns, or a
/// buffer whose lender keeps it valid while the window lives (`VmReader.init(_:)` /
/// `VmWriter.init(_:)`, whose callers vouch for it, or a value's bytes during one access).
/// Advancing, limiting and splitting keep `here ..< here + length` inside those bytes.
@safe @usableFromInline
struct IoWindow: ~Copyable {
    /// The cursor; for a user window, its space is retained by this window unless it borrows it.
    @usableFromInline var here: IoEnd
    /// Whether a user window borrows its space instead of holding a reference on it: it belongs
    /// to a scoped handle, ended by its scope while the space's caller keeps the space alive
    /// (`VmSpace.withReader` / `withWriter`). Windows split off it hold references of their own.
    @usableFromInline var borrowsSpace: Bool
    /// Bytes between the cursor and the end.
    @usableFromInline var length: Int
    /// The registration of a user-space handle, in memory its space owns (a fast slot or a slab
    /// record of its registry).
    @usableFromInline var record: UnsafeMutablePointer<IoRecord>?
    /// Frames a kernel-memory window keeps alive; their references are this window's.
    @usableFromInline var kept: KeptFrames?

    /// A window at `here` over `length` bytes, taking over a reference on `here`'s space (if
    /// any), the registration `record` and the references of `kept`.
    @inlinable
    init(owning here: IoEnd, length: Int, record: UnsafeMutablePointer<IoRecord>?, kept: KeptFrames?,
         borrowsSpace: Bool = false) {
        self.here = here
        self.borrowsSpace = borrowsSpace
        self.length = length
        // SAFETY: stores the registration the new window owns (see the type).
        unsafe self.record = record
        self.kept = kept
    }

    /// A user window over `start ..< start + length`, the range `record` was just admitted with,
    /// holding a reference on `space`.
    @inlinable @inline(__always)
    init(user space: VmSpace, record: UnsafeMutablePointer<IoRecord>, start: Vaddr, length: Int) {
        // SAFETY: `record` is the registration just admitted for this window over these bytes, in
        // `space`'s registry (live while the window retains `space`); the reference taken here
        // is the window's, and its `deinit` gives it back once.
        unsafe self.init(owning: .user(Unmanaged.passRetained(space), start), length: length, record: record, kept: nil)
    }

    /// A user window as `init(user:record:start:length:)` that borrows `space` instead: no
    /// reference is taken, and none is given back.
    ///
    /// - Safety: `space` stays alive until the window ends: the caller is a scope that holds the
    ///   space and ends the window before it returns (`VmSpace.withReader` / `withWriter`).
    @unsafe @inlinable @inline(__always)
    init(borrowing space: VmSpace, record: UnsafeMutablePointer<IoRecord>, start: Vaddr, length: Int) {
        // SAFETY: `record` as above; the caller's contract keeps `space` alive while the window
        // lives, so its unretained reference stays valid.
        unsafe self.init(owning: .user(Unmanaged.passUnretained(space), start), length: length, record: record,
                         kept: nil, borrowsSpace: true)
    }

    /// A kernel window over the host bytes `start ..< start + count`, taking over the references
    /// of `kept`.
    ///
    /// - Safety: `start ..< start + count` stays valid while the window lives (`kept` keeps the
    ///   frames it covers, or the caller keeps its buffer).
    @unsafe
    init(host start: UnsafeMutableRawPointer?, count: Int, kept: KeptFrames?) {
        // SAFETY: the caller's contract is the window's host invariant.
        unsafe self.init(owning: .host(start), length: count, record: nil, kept: kept)
    }

    /// Ends the window: the registration is removed, the space released (unless borrowed) and
    /// the kept frames dropped.
    ///
    /// Inlined, with the work out of line in functions that take the window's fields, not the
    /// window: a handle dropped right after a copy that moved its cursor is then not copied
    /// whole to a new place first (which re-read the fields just stored, with wider loads that
    /// the CPU cannot forward from those stores).
    @inlinable
    deinit {
        switch here {
        // SAFETY: the window holds one reference on its space from `init` (the window is
        // noncopyable, so only its one `deinit` comes here), or borrows the space from a scope
        // that keeps it alive until after this `deinit`; `record` is its own registration, in
        // memory that space owns.
        case .user(let space, _): unsafe IoWindow.giveBack(space, record, release: !borrowsSpace)
        // The window owns one reference on each kept frame (taken by `kernelWindow` or
        // `keptRetained`), dropped here once.
        case .host: if let kept { IoWindow.dropKept(kept) }
        }
    }

    /// Ends the window now (what dropping it does): the registration is removed, the space
    /// released and the kept frames dropped. The window is gone afterwards, so it cannot be
    /// closed twice.
    @inlinable
    consuming func close() {}

    /// What a user window's `deinit` does: removes its registration `record` (if any) and, with
    /// `release`, releases its reference on `space`.
    ///
    /// - Safety: the caller's window holds that registration and, with `release`, that reference
    ///   (without, its scope keeps the space alive), and gives them up here once.
    @unsafe @usableFromInline @inline(never)
    static func giveBack(_ space: Unmanaged<VmSpace>, _ record: UnsafeMutablePointer<IoRecord>?, release: Bool) {
        // SAFETY: the caller's contract: its reference or its scope keeps the space alive while
        // its record is removed from the space's registry; a reference is then released once.
        if let record = unsafe record { unsafe space._withUnsafeGuaranteedRef { unsafe $0.remove(record) } }
        if release { unsafe space.release() }
    }

    /// Traps unless a scoped handle's window is still the one its scope made over `record`: a
    /// body that moved the handle out of its `inout` parameter (swapping another in) would
    /// otherwise let a window that borrows its space outlive the scope that keeps the space
    /// alive. Asked of the window's fields, read in place (see `isDisposed`).
    @inlinable @inline(__always)
    static func checkScoped(borrowsSpace: Bool, _ record: UnsafeMutablePointer<IoRecord>?,
                            madeOver made: UnsafeMutablePointer<IoRecord>) {
        // SAFETY: compares the addresses only; nothing is dereferenced.
        let same = unsafe record == made
        precondition(borrowsSpace && same,
                     "a scoped reader or writer was moved out of its withReader / withWriter scope")
    }

    /// Drops the references of kept frames (out of line: a user window's drop has none).
    @usableFromInline @inline(never)
    static func dropKept(_ kept: KeptFrames) {
        Segment<DynFrameMeta>.dropReferences(kept.frames, context: kept.context)
    }

    /// Another reference on each kept frame, for a new window over them.
    func keptRetained() -> KeptFrames? {
        guard let kept else { return nil }
        Segment<DynFrameMeta>.addReferences(kept.frames, context: kept.context)
        return kept
    }

    /// The user space, if any.
    @inlinable var space: VmSpace? { here.space }

    /// The registration as the seeds' `VmIoOwner`, if any.
    var owner: VmIoOwner? {
        // SAFETY: the window's own registration, live while the window retains its space.
        unsafe record?.snapshot
    }

    /// The cursor as a number (see `IoEnd.bits`).
    @inlinable var cursor: UInt64 { here.bits }

    /// The window's range as virtual addresses (meaningful for user windows).
    @usableFromInline var range: Range<Vaddr> { Vaddr(cursor)..<(Vaddr(cursor) + length) }

    /// Moves the cursor `count` bytes on; the registration follows (the seeds' `advance`).
    @inlinable @inline(__always)
    mutating func advance(_ count: Int) {
        here = here.advanced(by: count)
        length -= count
        // SAFETY: the window's own registration, live while the window retains its space; `start`
        // is an atomic.
        if let record = unsafe record, case .user(_, let va) = here { unsafe record.pointee.start.store(va.rawValue, ordering: .relaxed) }
    }

    /// Shrinks the window to at most `max` bytes (OSTD `limit`).
    mutating func limit(_ max: Int) {
        guard max >= 0, length > max else { return }
        length = max
        // SAFETY: the window's own registration, live while the window retains its space; `end`
        // is an atomic.
        if let record = unsafe record, case .user(_, let va) = here {
            unsafe record.pointee.end.store((va + max).rawValue, ordering: .relaxed)
        }
    }

    /// Whether the user handle registered as `record` has given its view back (its accesses then
    /// throw `disposed`). Asked of `window.record`, one field read in place: a method borrowing
    /// the whole window made the hot paths copy all of it first, with wide loads of fields just
    /// stored narrow, which the CPU cannot forward (a stall per handle per copy).
    ///
    /// - Safety: `record` is a live window's own registration (or `nil`).
    @unsafe @inlinable @inline(__always)
    static func isDisposed(_ record: UnsafeMutablePointer<IoRecord>?) -> Bool {
        // SAFETY: the caller's contract: a registration live while its window retains its space;
        // `state` is an atomic.
        guard let record = unsafe record else { return false }
        return unsafe record.pointee.state.load(ordering: .relaxed) & IoRecordState.viewMask == 0
    }

    /// Splits off the first `count` bytes as a window of their own, registered with the same
    /// view (the seeds' `VmIoOwner::split`), with its own references on the space or the frames.
    mutating func splitFront(_ count: Int) -> IoWindow {
        precondition(count >= 0 && count <= length, "split at \(count) exceeds the \(length) bytes left")
        // SAFETY: `record` is the window's own registration in `space`'s registry; the front
        // window takes over the new registration and a new reference on the space or frames, and
        // covers the first `count <= length` bytes (checked above).
        var frontRecord: UnsafeMutablePointer<IoRecord>? = nil
        if let record = unsafe record, let space { unsafe frontRecord = space.registerSplit(of: record, count: count) }
        let front = unsafe IoWindow(owning: here.retained(), length: count, record: frontRecord, kept: keptRetained())
        advance(count)
        return front
    }

    /// Another kernel window over the same bytes, with its own references on the kept frames
    /// (a reader's `clone`).
    ///
    /// - Precondition: this is a kernel window (it has no registration to share).
    func cloneKernel() -> IoWindow {
        // SAFETY: a kernel window (checked): the clone covers the same host bytes with its own
        // references on the kept frames (or the same lender's buffer).
        precondition(unsafe record == nil, "a user window cannot be cloned")
        return unsafe IoWindow(owning: here.retained(), length: length, record: nil, kept: keptRetained())
    }
}

/// The panic of `skip` past the end (OSTD's assertion).
@usableFromInline
func checkSkip(_ count: Int, within length: Int) {
    precondition(count >= 0 && count <= length, "skip(\(count)) exceeds the \(length) bytes left")
}

/// The checks of `readOnce` / `writeOnce`: a size of 1, 2, 4 or 8 bytes, at an aligned cursor.
@usableFromInline
func checkOnce<T>(_: T.Type, at address: UInt64) {
    let size = MemoryLayout<T>.size
    precondition(size == 1 || size == 2 || size == 4 || size == 8, "once-access of a \(size)-byte value")
    precondition(address % UInt64(MemoryLayout<T>.alignment) == 0,
                 "unaligned once-access of \(size) bytes at 0x\(String(address, radix: 16))")
}

// What a reader and a writer have in common: a cursor, an end, and what the bytes belong to.
//
// OSTD's `VmReader` / `VmWriter` are two raw pointers. Here a window also says whose memory it
// covers: a user space (the addresses are virtual and go through the TLB, and the window holds a
// `VmIoOwner` registration) or kernel memory (the addresses are host addresses; a window over
// frames keeps a reference to them so they outlive it). The fallibility of a handle is its type
// parameter: `Fallible` handles may fault, `Infallible` ones are kernel memory and cannot.

import Synchronization

/// Whether accesses through a reader or writer may fault (OSTD's `Fallibility` parameter).
public protocol Fallibility {}

/// Accesses may fault: user memory, or kernel memory viewed as such (OSTD `Fallible`).
public enum Fallible: Fallibility {}

/// Accesses never fault: kernel memory (OSTD `Infallible`).
public enum Infallible: Fallibility {}

/// Frames a kernel-memory window keeps alive: one reference on each.
@usableFromInline
struct KeptSegment {
    let frames: Range<Int>
    let context: MachineRef

    init<M: AnyFrameMeta>(_ segment: consuming Segment<M>) {
        (frames, context) = segment.intoParts()
    }

    /// Another reference to the same frames.
    func retained() -> KeptSegment {
        let segment = Segment<DynFrameMeta>(adopting: frames, context: context)
        let copy = segment.clone()
        _ = segment.intoParts()
        return KeptSegment(copy)
    }

    /// Drops the reference.
    func release() { _ = Segment<DynFrameMeta>(adopting: frames, context: context) }
}

/// The cursor, end and backing of a reader or writer.
///
/// The references are unmanaged, retained when the window is made and released by `close()`:
/// the window is then plain data, so the generic handles that embed it destroy it without
/// reference counting or value witnesses.
@usableFromInline
struct IoWindow {
    @usableFromInline var cursor: UInt64
    @usableFromInline var end: UInt64
    /// The user space the addresses belong to (retained), or `nil` for kernel (host) addresses.
    @usableFromInline var spaceRef: Unmanaged<VmSpace>?
    /// The registration of a user-space handle, in a slab its space owns.
    @usableFromInline var record: UnsafeMutablePointer<IoRecord>?
    @usableFromInline var kept: KeptSegment?

    @inlinable
    init(cursor: UInt64, end: UInt64, space: VmSpace?, record: UnsafeMutablePointer<IoRecord>?,
         kept: KeptSegment?) {
        self.cursor = cursor
        self.end = end
        spaceRef = space.map { Unmanaged.passRetained($0) }
        self.record = record
        self.kept = kept
    }

    /// A user window over `record`'s range.
    init(user space: VmSpace, record: UnsafeMutablePointer<IoRecord>) {
        let range = record.range
        self.init(cursor: range.lowerBound.rawValue, end: range.upperBound.rawValue, space: space,
                  record: record, kept: nil)
    }

    /// The user space, if any.
    @inlinable var space: VmSpace? { spaceRef?.takeUnretainedValue() }

    /// The registration as the seeds' `VmIoOwner`, if any.
    var owner: VmIoOwner? { record?.snapshot }

    /// Bytes between the cursor and the end.
    @inlinable var length: Int { Int(end - cursor) }

    /// The transfer end at the cursor.
    @inlinable var here: IoEnd { IoEnd(spaceRef, cursor) }

    /// The window's range as virtual addresses (meaningful for user windows).
    @usableFromInline var range: Range<Vaddr> { Vaddr(cursor)..<Vaddr(end) }

    /// Moves the cursor `count` bytes on; the registration follows (the seeds' `advance`).
    @inlinable @inline(__always)
    mutating func advance(_ count: Int) {
        cursor += UInt64(count)
        record?.pointee.start.store(cursor, ordering: .relaxed)
    }

    /// Moves the cursor back to `position` (a fallible `readVal` / `writeVal` that faulted).
    @inlinable
    mutating func rewind(to position: UInt64) {
        cursor = position
        record?.pointee.start.store(cursor, ordering: .relaxed)
    }

    /// Shrinks the window to at most `max` bytes (OSTD `limit`).
    mutating func limit(_ max: Int) {
        guard max >= 0, length > max else { return }
        end = cursor + UInt64(max)
        record?.pointee.end.store(end, ordering: .relaxed)
    }

    /// Throws `disposed` when a user handle has given its view back.
    @inlinable @inline(__always)
    func checkUsable() throws(OSTDError) {
        if let record, record.pointee.view.load(ordering: .relaxed) == 0 { throw .disposed(range: range) }
    }

    /// Splits off the first `count` bytes as a window of their own, registered with the same
    /// view (the seeds' `VmIoOwner::split`).
    mutating func splitFront(_ count: Int) -> IoWindow {
        precondition(count >= 0 && count <= length, "split at \(count) exceeds the \(length) bytes left")
        var frontRecord: UnsafeMutablePointer<IoRecord>? = nil
        if let record, let space { frontRecord = space.registerSplit(of: record, count: count) }
        let front = IoWindow(cursor: cursor, end: cursor + UInt64(count), space: space,
                             record: frontRecord, kept: kept?.retained())
        advance(count)
        return front
    }

    /// Hands the registration and the kept frames over to a new handle; this window keeps none.
    mutating func relinquish() -> IoWindow {
        let moved = self
        spaceRef = nil
        record = nil
        kept = nil
        return moved
    }

    /// Ends the window: the registration is removed, the references released and kept frames
    /// dropped.
    func close() {
        if let record, let space { space.remove(record) }
        spaceRef?.release()
        kept?.release()
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

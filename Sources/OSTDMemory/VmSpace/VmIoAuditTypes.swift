// What a space's auditor is shown of an operation of a user-space reader or writer (checks 25–27
// of the specification): the operation, each handle's window before and after, and the outcome.
// Plain data, in this layer because the `VmSpaceAuditor` protocol names it; the I/O layer makes
// and shows them (`Io/VmIoAuditing.swift`, whose comment has the design).

/// One operation of a user-space reader or writer, as an auditor sees it.
public enum VmIoOperation: Sendable, Equatable {
    /// `limit(max)`.
    case limit(max: Int)
    /// `skip(count)` / `advance(count)`.
    case skip(count: Int)
    /// `split(count)`: the first `count` bytes become a handle of their own.
    case split(count: Int)
    /// `readFallible` / `writeFallible` (and the `VmIo` helpers built on them): a copy of
    /// `min(remain, avail)` bytes from the reader to the writer.
    case transfer
    /// `readVal` of a `size`-byte value.
    case readVal(size: Int)
    /// `writeVal` of the value with these bytes.
    case writeVal(bytes: [UInt8])
    /// `atomicLoad` of a `UInt32`, without moving.
    case atomicLoad
    /// `atomicCompareExchange(old, new)` of a `UInt32`, without moving.
    case atomicCompareExchange(old: UInt32, new: UInt32)
    /// `fillZeros(count)`.
    case fillZeros(count: Int)
}

/// One handle's window, as an auditor sees it.
public struct VmIoHandleState: Sendable {
    /// The space whose user memory the handle covers; `nil` for kernel memory.
    public var space: VmSpace?
    /// The cursor: a virtual address for user memory, host address bits for kernel memory.
    public var cursor: UInt64
    /// The bytes left (`remain` / `avail`).
    public var remain: Int
    /// The range the handle's registration holds (the seeds' `VmIoOwner.range`); `nil` for
    /// kernel memory.
    public var registration: Range<Vaddr>?
    /// For a kernel handle in a copy, the bytes the copy reads from it (in the state before) or
    /// wrote to it (in the state after), copied by the core; `nil` otherwise (an auditor reads a
    /// user handle's bytes through its space).
    public var bytes: [UInt8]?

    public init(space: VmSpace?, cursor: UInt64, remain: Int, registration: Range<Vaddr>?, bytes: [UInt8]? = nil) {
        self.space = space
        self.cursor = cursor
        self.remain = remain
        self.registration = registration
        self.bytes = bytes
    }
}

/// The handles of an I/O operation: the reader (the handle of a reader operation, the source of
/// a copy) and the writer (the handle of a writer operation, the destination of a copy).
public struct VmIoAuditState: Sendable {
    /// The reader involved, if any.
    public var reader: VmIoHandleState?
    /// The writer involved, if any.
    public var writer: VmIoHandleState?

    public init(reader: VmIoHandleState? = nil, writer: VmIoHandleState? = nil) {
        self.reader = reader
        self.writer = writer
    }
}

/// What an audited I/O operation returned.
public enum VmIoOutcome: Sendable {
    /// It returned nothing (`limit`, `skip`, a successful `writeVal`).
    case done
    /// `split` returned this handle (the front part).
    case split(front: VmIoHandleState)
    /// A copy or a fill returned this many bytes.
    case count(Int)
    /// `readVal` / `atomicLoad` returned the value with these bytes.
    case value([UInt8])
    /// `atomicCompareExchange` found `previous` and replaced it when `exchanged`.
    case exchanged(previous: UInt32, exchanged: Bool)
    /// It threw this error.
    case failed(OSTDError)
}

// The errors of the address-space and I/O layers (OSTD `ostd::Error`).
//
// Typed throws everywhere: Embedded Swift has no `any Error`, and a caller should be able to
// switch over exactly what can go wrong. Every case carries what a caller needs to act on it.
// Each lower layer has an error of its own (`FrameError`, `PageTableError`); this is where they
// meet, at the address-space boundary, wrapped by the two initialisers below.

/// An error of a memory-management operation.
public enum OSTDError: Error, Equatable, Sendable {
    /// Not enough free frames for an allocation of `frames` contiguous frames (OSTD `NoMemory`).
    case outOfMemory(frames: Int)
    /// An argument is out of its domain; the text says which and why (OSTD `InvalidArgs`).
    case invalidArgs(String)
    /// `offset + len` overflows (OSTD `Overflow`).
    case overflow
    /// A user range is empty, overflows, or ends past `maxUserspaceVaddr` (the seeds'
    /// `reader_requires` / `writer_requires`; OSTD reports `AccessDenied`).
    case invalidUserRange(vaddr: Vaddr, len: Int)
    /// The `VmSpace` is not the one active on the CPU the caller runs on (OSTD `AccessDenied`).
    case notActive(cpu: Int)
    /// A reader or writer cannot be admitted: `requested` overlaps `conflicting`, held by an
    /// active writer (or, for a writer, any active handle; for readers without `sharedReader`,
    /// any active reader). The seeds' `can_create_reader` / `can_create_writer`.
    case accessConflict(requested: Range<Vaddr>, conflicting: Range<Vaddr>)
    /// A user-space access hit `address`, which is not mapped with the access rights it needs,
    /// and the page-fault handler did not resolve it; `copied` bytes were transferred before it
    /// (OSTD `Err((PageFault, copied))`).
    case pageFault(address: Vaddr, copied: Int)
    /// A reader or writer over `range` was disposed: activate it again before using it.
    case disposed(range: Range<Vaddr>)
    /// A page-table operation was refused (OSTD converts these to `AccessDenied`).
    case pageTable(PageTableError)
}

extension OSTDError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .outOfMemory(let frames): return FrameError.outOfMemory(frames: frames).description
        case .invalidArgs(let why): return FrameError.invalidArgs(why).description
        case .overflow: return "offset + length overflows"
        case .invalidUserRange(let vaddr, let len):
            return "user range \(vaddr) + \(len) is empty, overflows or ends past \(maxUserspaceVaddr)"
        case .notActive(let cpu): return "the VmSpace is not active on cpu \(cpu); activate it first"
        case .accessConflict(let requested, let conflicting):
            return "access conflict: \(requested.lowerBound)..<\(requested.upperBound) overlaps an active handle over \(conflicting.lowerBound)..<\(conflicting.upperBound)"
        case .pageFault(let address, let copied):
            return "page fault at \(address) after \(copied) byte(s)"
        case .disposed(let range):
            return "the handle over \(range.lowerBound)..<\(range.upperBound) is disposed; activate it again"
        case .pageTable(let error): return "page table: \(error)"
        }
    }
}

extension OSTDError {
    /// The frame layer's error as the address-space layer reports it.
    @inlinable
    public init(_ error: FrameError) {
        switch error {
        case .outOfMemory(let frames): self = .outOfMemory(frames: frames)
        case .invalidArgs(let why): self = .invalidArgs(why)
        }
    }

    /// The page-table layer's error as the address-space layer reports it: running out of
    /// memory for a node is `outOfMemory(frames: 1)`, the rest is `pageTable`.
    @inlinable
    public init(_ error: PageTableError) {
        self = error == .outOfMemory ? .outOfMemory(frames: 1) : .pageTable(error)
    }
}

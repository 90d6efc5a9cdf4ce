// The frame layer's errors: allocation (`FrameError`) and claiming a frame by address
// (`GetFrameError`, OSTD's). The address-space layer wraps them into `OSTDError`.

/// Why frames could not be allocated or a machine booted (OSTD `Error::NoMemory` /
/// `InvalidArgs` as the frame allocator reports them).
public enum FrameError: Error, Equatable, Sendable {
    /// Not enough free frames for an allocation of `frames` contiguous frames (OSTD `NoMemory`).
    case outOfMemory(frames: Int)
    /// An argument is out of its domain; the text says which and why (OSTD `InvalidArgs`).
    case invalidArgs(String)
}

extension FrameError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .outOfMemory(let frames): return "out of memory: no \(frames) free contiguous frame(s)"
        case .invalidArgs(let why): return "invalid arguments: \(why)"
        }
    }
}

/// Why a frame could not be claimed or referenced by physical address (OSTD `GetFrameError`).
public enum GetFrameError: Error, Equatable, Sendable {
    /// The frame is in use (shared) and cannot be claimed as unused.
    case inUse(Paddr)
    /// The frame is unused, so there is no reference to take.
    case unused(Paddr)
    /// The frame is owned by a `UniqueFrame`.
    case unique(Paddr)
    /// The frame is being constructed or torn down.
    case busy(Paddr)
    /// The address is not 4 KiB aligned.
    case notAligned(Paddr)
    /// The address is outside physical memory.
    case outOfBound(Paddr)

    init(status: MetaSlotStatus, paddr: Paddr) {
        switch status {
        case .unused: self = .unused(paddr)
        case .unique: self = .unique(paddr)
        case .busy: self = .busy(paddr)
        case .shared, .overflow: self = .inUse(paddr)
        }
    }
}

extension GetFrameError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .inUse(let p): return "frame \(p) is in use"
        case .unused(let p): return "frame \(p) is unused"
        case .unique(let p): return "frame \(p) is uniquely owned"
        case .busy(let p): return "frame \(p) is being constructed or destroyed"
        case .notAligned(let p): return "physical address \(p) is not page aligned"
        case .outOfBound(let p): return "physical address \(p) is outside physical memory"
        }
    }
}

extension GetFrameError {
    /// The address the error is about.
    public var paddr: Paddr {
        switch self {
        case .inUse(let p), .unused(let p), .unique(let p), .busy(let p), .notAligned(let p), .outOfBound(let p):
            return p
        }
    }
}

// Errors of page-table operations (OSTD `PageTableError`, plus what the throwing variants of
// OSTD's panicking operations report).

/// Why a page-table operation was refused. Nothing changed when one is thrown.
public enum PageTableError: Error, Equatable, Sendable {
    /// The range is empty, reversed or outside the configuration (OSTD `InvalidVaddrRange`).
    case invalidVaddrRange(Vaddr, Vaddr)
    /// The address is outside the cursor's range (OSTD `InvalidVaddr`).
    case invalidVaddr(Vaddr)
    /// An address is not aligned to the page size it needs (OSTD `UnalignedVaddr`).
    case unalignedVaddr(Vaddr)
    /// A mapping of `level` cannot be made here: the level is above the highest translation
    /// level, or above the cursor's locked subtree.
    case unsuitableLevel(PagingLevel)
    /// The item's physical address is not aligned to its page size, or beyond 52 bits.
    case unalignedPaddr(Paddr)
    /// The slot at the address is already mapped (OSTD panics with "mapping over an already
    /// mapped page").
    case alreadyMapped(Vaddr)
    /// No frame was free for a page-table node.
    case outOfMemory
}

extension PageTableError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .invalidVaddrRange(let start, let end): return "invalid virtual range \(start)..<\(end)"
        case .invalidVaddr(let va): return "virtual address \(va) is outside the cursor's range"
        case .unalignedVaddr(let va): return "virtual address \(va) is not aligned"
        case .unsuitableLevel(let level): return "cannot map a level-\(level) page here"
        case .unalignedPaddr(let pa): return "physical address \(pa) is not aligned to the page size"
        case .alreadyMapped(let va): return "mapping over an already mapped page at \(va)"
        case .outOfMemory: return "out of memory for a page-table node"
        }
    }
}

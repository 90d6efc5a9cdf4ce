// The boundary between the core and whatever provides the simulated physical memory.
//
// The core never allocates the machine's memory itself: a host (the `OSTDHost` module, with mmap)
// or a bare-metal kernel hands it a base pointer and a size. Physical address `p` then lives at
// `base + p`, the linear mapping OSTD calls `paddr_to_vaddr`.

// Sendable: an immutable base, size and C release function; the memory it describes is shared
// under the machine's rules, not through this value.
/// Memory that backs a simulated machine's physical address space `0 ..< size`.
///
/// `@safe`: a description; making one takes the raw base (so it is marked where it is made, and
/// the maker vouches for the memory as `init` says), and holding or passing one dereferences
/// nothing.
@safe
public struct PhysicalMemoryRegion: @unchecked Sendable {
    /// Releases a region when the machine no longer needs it (a C function so that Embedded
    /// Swift can call it without closures or existentials).
    public typealias Release = @convention(c) (UnsafeMutableRawPointer, Int) -> Void

    /// Host address of physical address 0; must be 4 KiB aligned.
    public let base: UnsafeMutableRawPointer
    /// Size in bytes; a multiple of 4 KiB.
    public let size: Int
    /// Called once with `(base, size)` when the machine and all its frames are gone; `nil` to keep
    /// the memory.
    public let release: Release?

    /// Describes a region. The memory must read as zeros (fresh anonymous memory does): the
    /// metadata region is never bulk-initialised, and a zero slot is an unused frame.
    public init(base: UnsafeMutableRawPointer, size: Int, release: Release?) {
        // SAFETY: only stores the description; the caller vouches for the memory (above).
        unsafe self.base = base
        self.size = size
        unsafe self.release = release
    }
}

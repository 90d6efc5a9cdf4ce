// How the core learns which CPU a host thread runs on.
//
// The core cannot see threads, so a host provides two C functions that read and write one
// thread-local word; a bare-metal kernel would read `GS` instead. A platform without hooks has no
// current CPU: every caller is on the boot CPU's MMU and takes the allocator's locked path.

// Sendable: two C function pointers, immutable; the functions themselves act on the calling
// thread's own thread-local word.
/// The two functions through which the core reads and sets the calling thread's current CPU.
public struct CpuLocalHooks: @unchecked Sendable {
    public typealias Get = @convention(c) () -> UnsafeMutableRawPointer?
    public typealias Set = @convention(c) (UnsafeMutableRawPointer?) -> Void

    public let get: Get
    public let set: Set

    public init(get: Get, set: Set) {
        self.get = get
        self.set = set
    }
}

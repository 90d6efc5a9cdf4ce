// How the core learns which CPU a host thread runs on.
//
// The core cannot see threads, so a host provides two C functions that read and write one
// thread-local word, and one that yields the thread while it waits; a bare-metal kernel would
// read `GS` instead. A platform without hooks has no current CPU: every caller is on the boot
// CPU's MMU and takes the allocator's locked path.

// Sendable: three C function pointers, immutable; `get` and `set` act on the calling thread's
// own thread-local word, and `relax` on nothing shared.
/// The functions through which the core reads and sets the calling thread's current CPU.
///
/// `@safe`: holding the three C function pointers dereferences nothing; the raw pointer `get`
/// returns is turned back into a CPU record only by the platform, under the rule stated there
/// (`SimulatedPlatform.currentCpu`).
@safe
public struct CpuLocalHooks: @unchecked Sendable {
    public typealias Get = @convention(c) () -> UnsafeMutableRawPointer?
    public typealias Set = @convention(c) (UnsafeMutableRawPointer?) -> Void

    public let get: Get
    public let set: Set
    /// Gives the calling thread's CPU time away while it waits for another thread (a lock held,
    /// a grace period): on a host with fewer cores than busy threads, the thread waited for may
    /// need it. `nil` spins.
    public let relax: CpuRelax?

    public init(get: Get, set: Set, relax: CpuRelax? = nil) {
        // SAFETY: only stores the host's function pointers; nothing is called or dereferenced.
        unsafe self.get = get
        unsafe self.set = set
        self.relax = relax
    }
}

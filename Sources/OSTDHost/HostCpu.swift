// The host's answer to "which simulated CPU is this thread on": a C thread-local word.

import COSTDHostShims
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@_spi(OSTDInternals) import OSTDMemory

/// CPU-local hooks for host threads.
public enum HostCpu {
    /// Hooks that keep each thread's current simulated CPU in a thread-local word.
    /// The C functions themselves, not closures calling them: a lookup of the current CPU is
    /// one indirect call, not two (about 17 instructions fewer, on every allocation and fault).
    public static let hooks = CpuLocalHooks(
        get: ostd_host_current_cpu,
        set: ostd_host_set_current_cpu,
        relax: { sched_yield() })
}

// Which platform a machine runs on, chosen when the core is built.
//
// On a host the core runs over `SimulatedPlatform` (simulated CPUs, their TLBs and MMUs). A
// bare-metal kernel compiles the core's sources into itself with `-D OSTD_BARE_METAL` and defines
// `MachinePlatform` as its own `Platform` (CR3, `invlpg`, interrupts off); the simulated platform
// and the machine's simulation-only API (binding threads to CPUs, TLB statistics and contents,
// paging controls) are then left out. Either way every call into the platform is direct.

#if !OSTD_BARE_METAL
/// The platform of every `Machine`: the simulated CPUs.
@usableFromInline typealias MachinePlatform = SimulatedPlatform
#endif

// The host layer's C helpers: one thread-local word (the simulated CPU a thread is bound to),
// read and written by plain functions that the core calls through `CpuLocalHooks`.
#ifndef COSTD_HOST_SHIMS_H
#define COSTD_HOST_SHIMS_H

/// The calling thread's current simulated CPU (NULL when unbound).
void *ostd_host_current_cpu(void);

/// Sets the calling thread's current simulated CPU.
void ostd_host_set_current_cpu(void *cpu);

#endif

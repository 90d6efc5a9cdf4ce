// Thread-local storage for the simulated CPU binding. Swift has no thread-local variables, and
// pthread keys cost a library call per access; a C `_Thread_local` is one segment-relative load.
#include "COSTDHostShims.h"

static _Thread_local void *current_cpu;

void *ostd_host_current_cpu(void) { return current_cpu; }

void ostd_host_set_current_cpu(void *cpu) { current_cpu = cpu; }

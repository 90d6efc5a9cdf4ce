// The KVM ioctls of COSTDKVM.h. The run deadline is a per-thread POSIX timer whose signal sets
// `immediate_exit` in the running vCPU's kvm_run, so a signal that arrives just before KVM_RUN
// enters the guest still stops it.
#define _GNU_SOURCE
#include "COSTDKVM.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static int fail(void) { return -errno; }

int ostd_kvm_open(void) {
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) return fail();
    if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
        close(kvm);
        return -EINVAL;
    }
    return kvm;
}

int ostd_kvm_create_vm(int kvm) {
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    return vm < 0 ? fail() : vm;
}

int ostd_kvm_set_memory(int vm, uint32_t slot, uint64_t guest_phys, uint64_t size, void *host) {
    struct kvm_userspace_memory_region region = {
        .slot = slot, .flags = 0, .guest_phys_addr = guest_phys, .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)host,
    };
    return ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0 ? fail() : 0;
}

int ostd_kvm_create_vcpu(int vm, int id) {
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, id);
    return vcpu < 0 ? fail() : vcpu;
}

long ostd_kvm_vcpu_mmap_size(int kvm) {
    long size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    return size < 0 ? fail() : size;
}

int ostd_kvm_setup_cpuid(int kvm, int vcpu, struct ostd_kvm_features *features) {
    enum { max_entries = 256 };
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + max_entries * sizeof(struct kvm_cpuid_entry2));
    if (!cpuid) return -ENOMEM;
    cpuid->nent = max_entries;
    int result = 0;
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0 || ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0) {
        result = fail();
    } else {
        memset(features, 0, sizeof *features);
        features->maxphyaddr = 36;
        for (uint32_t i = 0; i < cpuid->nent; i++) {
            const struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
            if (e->function == 1) features->pcid = (e->ecx >> 17) & 1;
            if (e->function == 7 && e->index == 0) {
                features->smep = (e->ebx >> 7) & 1;
                features->smap = (e->ebx >> 20) & 1;
            }
            if (e->function == 0x80000001) {
                features->nx = (e->edx >> 20) & 1;
                features->page1gb = (e->edx >> 26) & 1;
            }
            if (e->function == 0x80000008) features->maxphyaddr = e->eax & 0xff;
        }
    }
    free(cpuid);
    return result;
}

int ostd_kvm_get_regs(int vcpu, struct kvm_regs *regs) { return ioctl(vcpu, KVM_GET_REGS, regs) < 0 ? fail() : 0; }
int ostd_kvm_set_regs(int vcpu, const struct kvm_regs *regs) { return ioctl(vcpu, KVM_SET_REGS, regs) < 0 ? fail() : 0; }
int ostd_kvm_get_sregs(int vcpu, struct kvm_sregs *sregs) { return ioctl(vcpu, KVM_GET_SREGS, sregs) < 0 ? fail() : 0; }
int ostd_kvm_set_sregs(int vcpu, const struct kvm_sregs *sregs) { return ioctl(vcpu, KVM_SET_SREGS, sregs) < 0 ? fail() : 0; }

// The kvm_run of the vCPU this thread is running, for the deadline's signal handler.
static __thread struct kvm_run *volatile running;

static void on_deadline(int signal) {
    (void)signal;
    struct kvm_run *run = running;
    if (run) run->immediate_exit = 1;
}

static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
static int deadline_signal;

static void install_handler(void) {
    deadline_signal = SIGRTMIN + 5;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_deadline;   // no SA_RESTART: KVM_RUN returns EINTR
    sigemptyset(&action.sa_mask);
    sigaction(deadline_signal, &action, NULL);
}

int ostd_kvm_run(int vcpu, struct kvm_run *run, int64_t timeout_ns) {
    pthread_once(&handler_once, install_handler);
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = SIGEV_THREAD_ID;
    event.sigev_signo = deadline_signal;
    event._sigev_un._tid = gettid();
    timer_t timer;
    if (timer_create(CLOCK_MONOTONIC, &event, &timer) < 0) return fail();
    // Fire at the deadline, then every millisecond until the run has stopped.
    struct itimerspec spec = {
        .it_value = { .tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000 },
        .it_interval = { .tv_sec = 0, .tv_nsec = 1000000 },
    };
    if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;
    run->immediate_exit = 0;
    running = run;
    int result = 0;
    if (timer_settime(timer, 0, &spec, NULL) < 0) {
        result = fail();
    } else {
        for (;;) {
            if (ioctl(vcpu, KVM_RUN, 0) == 0) break;
            if (errno == EINTR && run->immediate_exit) { result = -ETIME; break; }
            if (errno != EINTR && errno != EAGAIN) { result = fail(); break; }
        }
    }
    running = NULL;
    timer_delete(timer);
    run->immediate_exit = 0;
    return result;
}

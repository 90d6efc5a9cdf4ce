// The KVM ioctls the VMM (Sources/OSTDKVM) needs, as plain C functions Swift can call: ioctl is
// variadic and the request numbers are macros Swift cannot import. Linux only; every function
// returns a negative errno on failure.
#ifndef COSTD_KVM_H
#define COSTD_KVM_H

#include <stdint.h>
#include <linux/kvm.h>

/// What the vCPU's supported CPUID offers that paging cares about.
struct ostd_kvm_features {
    int nx;            /// CPUID 0x80000001 EDX[20]
    int page1gb;       /// CPUID 0x80000001 EDX[26]
    int smep;          /// CPUID 7.0 EBX[7]
    int smap;          /// CPUID 7.0 EBX[20]
    int pcid;          /// CPUID 1 ECX[17]
    int maxphyaddr;    /// CPUID 0x80000008 EAX[7:0]
};

/// Opens /dev/kvm and checks the API version (12): the descriptor.
int ostd_kvm_open(void);
/// KVM_CREATE_VM: the VM's descriptor.
int ostd_kvm_create_vm(int kvm);
/// KVM_SET_USER_MEMORY_REGION: `size` bytes at `host` become guest RAM at `guest_phys` (slot
/// `slot`), with no copy; size 0 deletes the slot.
int ostd_kvm_set_memory(int vm, uint32_t slot, uint64_t guest_phys, uint64_t size, void *host);
/// KVM_CREATE_VCPU: the vCPU's descriptor.
int ostd_kvm_create_vcpu(int vm, int id);
/// KVM_GET_VCPU_MMAP_SIZE.
long ostd_kvm_vcpu_mmap_size(int kvm);
/// Gives the vCPU all the CPUID that KVM supports and reports its paging features.
int ostd_kvm_setup_cpuid(int kvm, int vcpu, struct ostd_kvm_features *features);
int ostd_kvm_get_regs(int vcpu, struct kvm_regs *regs);
int ostd_kvm_set_regs(int vcpu, const struct kvm_regs *regs);
int ostd_kvm_get_sregs(int vcpu, struct kvm_sregs *sregs);
int ostd_kvm_set_sregs(int vcpu, const struct kvm_sregs *sregs);
/// KVM_RUN for at most `timeout_ns`: 0 when the vCPU exited by itself (see run->exit_reason),
/// -ETIME when the deadline stopped it, another negative errno on failure.
int ostd_kvm_run(int vcpu, struct kvm_run *run, int64_t timeout_ns);

/// The exit's I/O fields (KVM_EXIT_IO).
static inline uint16_t ostd_kvm_io_port(const struct kvm_run *run) { return run->io.port; }
static inline uint8_t ostd_kvm_io_direction(const struct kvm_run *run) { return run->io.direction; }
static inline uint8_t ostd_kvm_io_size(const struct kvm_run *run) { return run->io.size; }
static inline uint64_t ostd_kvm_io_data_offset(const struct kvm_run *run) { return run->io.data_offset; }
/// KVM_EXIT_INTERNAL_ERROR's suberror; KVM_EXIT_FAIL_ENTRY's reason.
static inline uint32_t ostd_kvm_internal_suberror(const struct kvm_run *run) { return run->internal.suberror; }
static inline uint64_t ostd_kvm_fail_entry_reason(const struct kvm_run *run) {
    return run->fail_entry.hardware_entry_failure_reason;
}

#endif

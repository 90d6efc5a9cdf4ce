// A KVM virtual machine: guest RAM registered with no copy, and its vCPUs.
//
// The VMM is deliberately small: create a VM, give it memory slots (host memory that becomes
// guest-physical memory byte for byte: the guest reads and writes the very bytes the host sees),
// create vCPUs, and run them with a budget (`Vcpu`). It knows nothing of page tables or of the
// core; the hardware check and, later, a bare-metal kernel are built on it.

#if os(Linux)
import Glibc
import COSTDKVM

/// A KVM virtual machine. Closing it (the last reference going) closes its descriptors.
public final class VirtualMachine {
    let kvm: Int32
    let vm: Int32
    let runSize: Int
    /// The backend that runs this VM.
    public let backend: KvmBackend

    /// Whether `/dev/kvm` exists here (the check is skipped, with this said, where it does not).
    public static var isAvailable: Bool { access("/dev/kvm", R_OK | W_OK) == 0 }

    /// A new, empty VM.
    ///
    /// - Throws: `unavailable` when `/dev/kvm` cannot be opened, `call` when KVM refuses.
    public init() throws(KvmError) {
        let kvm = ostd_kvm_open()
        guard kvm >= 0 else {
            throw .unavailable("/dev/kvm is not available (\(String(cString: strerror(-kvm))))")
        }
        let vm = ostd_kvm_create_vm(kvm)
        guard vm >= 0 else {
            close(kvm)
            throw .call("KVM_CREATE_VM", errno: -vm)
        }
        let runSize = ostd_kvm_vcpu_mmap_size(kvm)
        guard runSize > 0 else {
            close(vm)
            close(kvm)
            throw .call("KVM_GET_VCPU_MMAP_SIZE", errno: Int32(-runSize))
        }
        self.kvm = kvm
        self.vm = vm
        self.runSize = runSize
        self.backend = .current
    }

    deinit {
        close(vm)
        close(kvm)
    }

    /// Makes `size` bytes at `host` the guest's physical memory at `guestPhysical`, without a
    /// copy. The memory must stay mapped while the VM lives.
    public func addMemory(slot: UInt32, guestPhysical: UInt64, host: UnsafeMutableRawPointer, size: Int) throws(KvmError) {
        // SAFETY: the caller keeps `host ..< host + size` mapped while the VM lives (the documented contract);
        // KVM reads and writes it as guest RAM.
        try KvmError.check(ostd_kvm_set_memory(vm, slot, guestPhysical, UInt64(size), host), "KVM_SET_USER_MEMORY_REGION")
    }

    /// A new vCPU with the CPUID KVM supports.
    public func makeVcpu(id: Int32 = 0) throws(KvmError) -> Vcpu {
        try Vcpu(vm: self, id: id)
    }
}
#endif

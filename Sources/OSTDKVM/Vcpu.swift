// A vCPU: its registers and a run loop with a deadline, so that a guest bug ends in a clear
// error, never a hang.

#if os(Linux)
import Glibc
import COSTDKVM

/// Why a vCPU stopped running.
public enum VcpuExit: Equatable, Sendable, CustomStringConvertible {
    /// The guest executed `hlt`.
    case halt
    /// The guest executed `out` (`value` holds up to 4 bytes) or `in` on `port`.
    case io(port: UInt16, isOut: Bool, size: Int, value: UInt32)
    /// The guest triple-faulted.
    case shutdown
    /// The deadline passed while the guest was still running.
    case timedOut
    /// KVM could not enter or emulate the guest (`reason` says which and why).
    case failed(String)

    public var description: String {
        switch self {
        case .halt: "hlt"
        case .io(let port, let isOut, let size, let value):
            (isOut ? "out" : "in") + " port 0x" + String(port, radix: 16) + " size \(size) value 0x" + String(value, radix: 16)
        case .shutdown: "shutdown (triple fault)"
        case .timedOut: "timed out"
        case .failed(let reason): reason
        }
    }
}

/// One vCPU of a `VirtualMachine`.
public final class Vcpu {
    let vm: VirtualMachine
    let fd: Int32
    let run: UnsafeMutablePointer<kvm_run>
    /// What the vCPU offers that paging cares about.
    public let features: VcpuFeatures

    init(vm: VirtualMachine, id: Int32) throws(KvmError) {
        let fd = ostd_kvm_create_vcpu(vm.vm, id)
        try KvmError.check(fd, "KVM_CREATE_VCPU")
        var raw = ostd_kvm_features()
        let cpuid = ostd_kvm_setup_cpuid(vm.kvm, fd, &raw)
        // SAFETY: KVM_GET_VCPU_MMAP_SIZE bytes of the vCPU's shared `kvm_run` page, unmapped in `deinit`.
        guard cpuid == 0, let mapping = mmap(nil, vm.runSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0),
              mapping != MAP_FAILED else {
            close(fd)
            throw cpuid < 0 ? .call("KVM_SET_CPUID2", errno: -cpuid) : .call("mmap(kvm_run)", errno: errno)
        }
        self.vm = vm
        self.fd = fd
        // SAFETY: KVM maps a `struct kvm_run` at offset 0 of the vCPU's mapping, which is at least
        // KVM_GET_VCPU_MMAP_SIZE bytes and lives until `munmap` in `deinit`.
        self.run = mapping.assumingMemoryBound(to: kvm_run.self)
        self.features = VcpuFeatures(raw)
    }

    deinit {
        munmap(run, vm.runSize)
        close(fd)
    }

    /// The general-purpose registers, RIP and RFLAGS.
    public func registers() throws(KvmError) -> kvm_regs {
        var regs = kvm_regs()
        try KvmError.check(ostd_kvm_get_regs(fd, &regs), "KVM_GET_REGS")
        return regs
    }

    public func setRegisters(_ regs: kvm_regs) throws(KvmError) {
        var regs = regs
        try KvmError.check(ostd_kvm_set_regs(fd, &regs), "KVM_SET_REGS")
    }

    /// The system registers: segments, descriptor tables, CR0/2/3/4, EFER.
    public func systemRegisters() throws(KvmError) -> kvm_sregs {
        var sregs = kvm_sregs()
        try KvmError.check(ostd_kvm_get_sregs(fd, &sregs), "KVM_GET_SREGS")
        return sregs
    }

    public func setSystemRegisters(_ sregs: kvm_sregs) throws(KvmError) {
        var sregs = sregs
        try KvmError.check(ostd_kvm_set_sregs(fd, &sregs), "KVM_SET_SREGS")
    }

    /// The system registers of 64-bit long mode with paging at CPL 0 (CR0.PG|WP|NE|ET|MP|PE,
    /// CR4.PAE and SMEP when asked, EFER.LME|LMA|NXE), with Linux's selectors (kernel CS 0x10,
    /// data 0x18, TSS 0x40), CR3 = `root`, and the given GDT, IDT and TSS.
    public func longModeSystemRegisters(root: UInt64, smep: Bool = false, gdt: (base: UInt64, limit: UInt16),
                                        idt: (base: UInt64, limit: UInt16), tss: UInt64) throws(KvmError) -> kvm_sregs {
        var sregs = try systemRegisters()
        func segment(_ selector: UInt16, code: Bool) -> kvm_segment {
            var s = kvm_segment()
            s.base = 0
            s.limit = 0xffff_ffff
            s.selector = selector
            s.type = code ? 11 : 3
            s.present = 1
            s.dpl = UInt8(selector & 3)
            s.db = code ? 0 : 1
            s.s = 1
            s.l = code ? 1 : 0
            s.g = 1
            return s
        }
        sregs.cs = segment(0x10, code: true)
        sregs.ds = segment(0x18, code: false)
        sregs.es = sregs.ds
        sregs.fs = sregs.ds
        sregs.gs = sregs.ds
        sregs.ss = sregs.ds
        var tr = kvm_segment()
        tr.base = tss
        tr.limit = 0x67
        tr.selector = 0x40
        tr.type = 11
        tr.present = 1
        sregs.tr = tr
        sregs.gdt.base = gdt.base
        sregs.gdt.limit = gdt.limit
        sregs.idt.base = idt.base
        sregs.idt.limit = idt.limit
        sregs.cr0 = 0x8001_0033
        sregs.cr3 = root
        sregs.cr4 = 0x20 | (smep ? 1 << 20 : 0)
        sregs.efer = 0xd00
        return sregs
    }

    /// Runs the guest until it exits or `budgetNanoseconds` pass.
    public func run(budgetNanoseconds: Int64) throws(KvmError) -> VcpuExit {
        // SAFETY: `run` is this vCPU's mapped `kvm_run`, valid while the vCPU lives.
        let result = ostd_kvm_run(fd, run, budgetNanoseconds)
        if result == -ETIME { return .timedOut }
        try KvmError.check(result, "KVM_RUN")
        switch Int32(run.pointee.exit_reason) {
        case KVM_EXIT_HLT: return .halt
        case KVM_EXIT_IO:
            let size = Int(ostd_kvm_io_size(run))
            // SAFETY: for KVM_EXIT_IO, KVM puts the data at `data_offset` inside the vCPU's
            // mapping; `size` is 1, 2 or 4 bytes.
            let data = UnsafeRawPointer(run) + Int(ostd_kvm_io_data_offset(run))
            var value: UInt32 = 0
            for i in 0..<min(size, 4) { value |= UInt32(data.load(fromByteOffset: i, as: UInt8.self)) << (8 * UInt32(i)) }
            return .io(port: ostd_kvm_io_port(run), isOut: ostd_kvm_io_direction(run) == KVM_EXIT_IO_OUT,
                       size: size, value: value)
        case KVM_EXIT_SHUTDOWN: return .shutdown
        case KVM_EXIT_FAIL_ENTRY:
            return .failed("KVM could not enter the guest (hardware reason 0x" + String(ostd_kvm_fail_entry_reason(run), radix: 16) + ")")
        case KVM_EXIT_INTERNAL_ERROR:
            return .failed("KVM internal error, suberror \(ostd_kvm_internal_suberror(run)) (1: the emulator failed on an instruction)")
        case let reason:
            return .failed("unexpected KVM exit \(reason)")
        }
    }
}
#endif

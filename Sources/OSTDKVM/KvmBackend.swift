// Which KVM implementation runs the guest, and what its vCPU offers that paging cares about.
//
// On VMX or SVM hosts with EPT/NPT the CPU walks the guest's page tables; under `kvm_pvm` (a
// software backend with shadow paging) KVM's own x86 paging code does. Either way the walker is
// not ours, which is what the hardware check needs.

#if os(Linux)
import Glibc
import COSTDKVM

/// The KVM module the host runs.
public enum KvmBackend: String, Sendable {
    case pvm = "kvm_pvm"
    case intel = "kvm_intel"
    case amd = "kvm_amd"
    case unknown

    /// The loaded backend, from `/sys/module`.
    public static var current: KvmBackend {
        for backend in [KvmBackend.pvm, .intel, .amd] where access("/sys/module/\(backend.rawValue)", F_OK) == 0 {
            return backend
        }
        return .unknown
    }

    /// Who walks the guest's page tables under this backend.
    public var walker: String {
        switch self {
        case .pvm: "KVM's software x86 page walker (shadow paging)"
        case .intel, .amd: "the CPU's page walker (two-dimensional paging)"
        case .unknown: "an unknown KVM backend"
        }
    }
}

/// The paging features of the vCPU, from the CPUID KVM supports.
public struct VcpuFeatures: Equatable, Sendable, CustomStringConvertible {
    public var nx: Bool
    public var page1GB: Bool
    public var smep: Bool
    public var smap: Bool
    public var pcid: Bool
    /// MAXPHYADDR.
    public var physicalAddressBits: Int

    init(_ raw: ostd_kvm_features) {
        nx = raw.nx != 0
        page1GB = raw.page1gb != 0
        smep = raw.smep != 0
        smap = raw.smap != 0
        pcid = raw.pcid != 0
        physicalAddressBits = Int(raw.maxphyaddr)
    }

    public var description: String {
        func flag(_ on: Bool, _ name: String) -> String { (on ? "+" : "-") + name }
        return [flag(nx, "nx"), flag(page1GB, "page1gb"), flag(smep, "smep"), flag(smap, "smap"),
                flag(pcid, "pcid"), "maxphyaddr=\(physicalAddressBits)"].joined(separator: " ")
    }
}
#endif

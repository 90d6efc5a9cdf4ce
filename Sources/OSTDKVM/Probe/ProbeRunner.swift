// Runs probe batches on a vCPU: writes the descriptors, starts the loop at CPL 0 (or enters CPL 3
// from there), and reads back one outcome per probe.
//
// A guest that stops anywhere but at the loop's final `ud2` (an unexpected exception, a triple
// fault, the deadline, an emulator failure) is not an error of the check: the probe that was
// running gets that stop as its outcome, and the loop starts again at the next probe, so one bad
// probe cannot hide the others and a guest bug cannot hang the check.

#if os(Linux)
import COSTDKVM
import Glibc
@_spi(OSTDInternals) import OSTDMemory

/// One access to perform in the guest.
struct Probe: Hashable, Sendable {
    var address: Vaddr
    var access: MemoryAccess
    /// For a write: the byte the software says is there (written back unchanged).
    var value: UInt8 = 0
}

/// What the guest saw for one probe.
public enum ProbeOutcome: Equatable, Sendable, CustomStringConvertible {
    /// The access completed; a read saw `byte`.
    case completed(byte: UInt8?)
    /// A page fault with this error code at this address.
    case pageFault(PageFaultErrorCode, cr2: Vaddr)
    /// Something else stopped the guest (an exception vector, a triple fault, the deadline).
    case stopped(String)

    public var description: String {
        switch self {
        case .completed(let byte?): "ok, byte 0x" + String(byte, radix: 16)
        case .completed(nil): "ok"
        case .pageFault(let code, let cr2): "#PF error " + code.description + " cr2 " + cr2.description
        case .stopped(let why): why
        }
    }
}

/// The VM, its vCPU and the probe kernel, ready to run batches under one CR3.
final class ProbeRunner {
    let vm: VirtualMachine
    let vcpu: Vcpu
    let kernel: ProbeKernel
    /// The paging controls the vCPU runs with.
    let controls: PagingControls
    /// How long one batch may run before it is stopped.
    let budgetNanoseconds: Int64 = 10_000_000_000
    /// Runs of the guest, and the time spent in them per privilege level.
    private(set) var runs = 0
    /// Runs that did not end at the loop's final `ud2` (a probe stopped the guest).
    private(set) var stops = 0
    private(set) var nanoseconds: [Bool: UInt64] = [false: 0, true: 0]

    init(machine: Machine, kernel: ProbeKernel) throws(KvmError) {
        vm = try VirtualMachine()
        // SAFETY: physical memory stays mapped while `machine` lives, which outlives this runner
        // (the kernel holds it); the guest writes only A/D bits of page-table entries, the probe
        // kernel's own frames (marked written when filled) and bytes a probe writes back unchanged.
        let memory = UnsafeMutableRawPointer(mutating: machine.readOnlyPointer(to: Paddr(0)))
        try vm.addMemory(slot: 0, guestPhysical: 0, host: memory, size: machine.memorySize)
        vcpu = try vm.makeVcpu()
        self.kernel = kernel
        let features = vcpu.features
        guard features.nx else { throw .unavailable("the vCPU has no NX: OSTD's page tables need EFER.NXE") }
        controls = PagingControls(writeProtect: true, noExecute: true, smep: features.smep, smap: false,
                                  page1GB: features.page1GB, physicalAddressBits: features.physicalAddressBits)
    }

    /// Runs `probes` through the page table at `root`, at CPL 3 when `userMode`.
    func run(_ probes: [Probe], root: Paddr, userMode: Bool) throws(KvmError) -> [ProbeOutcome] {
        var outcomes: [ProbeOutcome] = []
        outcomes.reserveCapacity(probes.count)
        while outcomes.count < probes.count {
            let batch = probes[outcomes.count..<min(probes.count, outcomes.count + ProbeLayout.batch)]
            outcomes += try runBatch(Array(batch), root: root, userMode: userMode)
        }
        return outcomes
    }

    /// Runs up to one batch; a stop part-way records it on the probe that was running and goes on.
    private func runBatch(_ probes: [Probe], root: Paddr, userMode: Bool) throws(KvmError) -> [ProbeOutcome] {
        var outcomes: [ProbeOutcome] = []
        while outcomes.count < probes.count {
            let rest = Array(probes[outcomes.count...])
            writeDescriptors(rest)
            let stop = try start(count: rest.count, root: root, userMode: userMode)
            let finished = readResults(rest)
            outcomes += finished
            if let stop, outcomes.count < probes.count { outcomes.append(.stopped(stop)) }
        }
        return outcomes
    }

    private func writeDescriptors(_ probes: [Probe]) {
        let descriptors = kernel.pointer(page: ProbeLayout.descriptorPage, count: probes.count * ProbeDescriptor.size)
        let results = kernel.pointer(page: ProbeLayout.resultPage, count: probes.count * ProbeResultSlot.size)
        // SAFETY: both areas hold `ProbeLayout.batch` entries and `probes.count` is at most that.
        results.initializeMemory(as: UInt8.self, repeating: 0, count: probes.count * ProbeResultSlot.size)
        for (i, probe) in probes.enumerated() {
            let at = i * ProbeDescriptor.size
            descriptors.storeBytes(of: probe.address.rawValue, toByteOffset: at, as: UInt64.self)
            let kind: UInt8 = probe.access.kind == .read ? 0 : probe.access.kind == .write ? 1 : 2
            descriptors.storeBytes(of: kind, toByteOffset: at + ProbeDescriptor.kindOffset, as: UInt8.self)
            descriptors.storeBytes(of: probe.value, toByteOffset: at + ProbeDescriptor.valueOffset, as: UInt8.self)
        }
    }

    /// The outcomes of the probes that produced a result, up to the first that did not.
    private func readResults(_ probes: [Probe]) -> [ProbeOutcome] {
        // SAFETY: the result area holds `ProbeLayout.batch` slots and `probes.count` is at most that.
        let results = UnsafeRawPointer(kernel.pointer(page: ProbeLayout.resultPage, count: probes.count * ProbeResultSlot.size))
        var outcomes: [ProbeOutcome] = []
        for (i, probe) in probes.enumerated() {
            // SAFETY: inside the result area (see `writeDescriptors`).
            let status = results.load(fromByteOffset: i * ProbeResultSlot.size, as: UInt64.self)
            let value = results.load(fromByteOffset: i * ProbeResultSlot.size + 8, as: UInt64.self)
            let cr2 = results.load(fromByteOffset: i * ProbeResultSlot.size + 16, as: UInt64.self)
            switch status {
            case ProbeResultSlot.completed:
                outcomes.append(.completed(byte: probe.access.kind == .read ? UInt8(truncatingIfNeeded: value) : nil))
            case ProbeResultSlot.pageFault:
                outcomes.append(.pageFault(PageFaultErrorCode(rawValue: value), cr2: Vaddr(cr2)))
            default:
                return outcomes
            }
        }
        return outcomes
    }

    /// Starts the loop over `count` descriptors; `nil` when it reached its end, otherwise what
    /// stopped it.
    private func start(count: Int, root: Paddr, userMode: Bool) throws(KvmError) -> String? {
        let record = kernel.pointer(page: ProbeLayout.systemPage, offset: ProbeLayout.exceptionRecordOffset, count: 24)
        // SAFETY: the exception record's 24 bytes inside the system page.
        record.initializeMemory(as: UInt8.self, repeating: 0xff, count: 24)
        try vcpu.setSystemRegisters(systemRegisters(root: root))
        var regs = kvm_regs()
        let program = kernel.program
        regs.rflags = 2
        regs.rsp = ProbeLayout.va(page: ProbeLayout.kernelStackTop)
        regs.rsi = ProbeLayout.va(page: ProbeLayout.descriptorPage)
        regs.rdi = ProbeLayout.va(page: ProbeLayout.resultPage)
        regs.rcx = UInt64(count)
        if userMode {
            regs.rip = ProbeLayout.va(page: ProbeLayout.codePage, offset: program.enterUser)
            regs.rax = ProbeLayout.va(page: ProbeLayout.userCodePage, offset: program.probeLoop)
            regs.rdx = ProbeLayout.va(page: ProbeLayout.userStackPage + 1)
        } else {
            regs.rip = ProbeLayout.va(page: ProbeLayout.codePage, offset: program.probeLoop)
        }
        try vcpu.setRegisters(regs)
        let started = monotonicNanoseconds()
        let exit = try vcpu.run(budgetNanoseconds: budgetNanoseconds)
        nanoseconds[userMode, default: 0] += monotonicNanoseconds() - started
        runs += 1
        // SAFETY: as above.
        let vector = record.load(as: UInt32.self)
        let word0 = record.load(fromByteOffset: 8, as: UInt64.self)
        let word1 = record.load(fromByteOffset: 16, as: UInt64.self)
        let doneRip = ProbeLayout.va(page: userMode ? ProbeLayout.userCodePage : ProbeLayout.codePage, offset: program.done)
        switch exit {
        case .halt where vector == 6 && word0 == doneRip:
            return nil
        case .halt where vector < 32:
            stops += 1
            let hasErrorCode = [8, 10, 11, 12, 13, 17, 21].contains(vector)
            let rip = hasErrorCode ? word1 : word0
            return "exception \(vector)" + (hasErrorCode ? " error 0x" + String(word0, radix: 16) : "")
                + " at rip 0x" + String(rip, radix: 16)
        default:
            stops += 1
            return "guest stopped: \(exit)"
        }
    }

    /// Long mode with paging at CPL 0: Linux's GDT selectors, the probe kernel's GDT, IDT and TSS.
    private func systemRegisters(root: Paddr) throws(KvmError) -> kvm_sregs {
        try vcpu.longModeSystemRegisters(
            root: root.rawValue, smep: controls.smep,
            gdt: (ProbeLayout.va(page: ProbeLayout.systemPage, offset: ProbeLayout.gdtOffset), UInt16(ProbeLayout.gdtLimit)),
            idt: (ProbeLayout.va(page: ProbeLayout.idtPage), 32 * 16 - 1),
            tss: ProbeLayout.va(page: ProbeLayout.systemPage, offset: ProbeLayout.tssOffset))
    }
}

/// A monotonic clock in nanoseconds.
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}
#endif

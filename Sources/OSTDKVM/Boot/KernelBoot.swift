// Booting the bare-metal kernel (Kernel/) on the VMM: guest RAM is the machine's memory followed by
// a kernel area holding the kernel image, the boot page tables, the boot information, the program
// and its arguments; the vCPU starts in long mode at the kernel's entry with rdi = the boot
// information's address.
//
//     guest physical   0 ..< M              the core's frames (the kernel's `Machine`)
//                      M ..< M + image       the kernel image (virtual 0xffffffff80000000 + offset)
//                      then                  the kernel heap (virtual 0x7f00_0000_0000), boot page
//                                            tables, boot information, program, arguments
//
// The boot page tables map all RAM at 0xffff_8000_0000_0000 (the linear map), the image at
// 0xffff_ffff_8000_0000 and the kernel's heap at 0x7f00_0000_0000 (root entry 254: Embedded
// Swift's runtime never frees an object at a negative address, so the heap must be at a positive
// one), with 2 MiB pages; the kernel replaces them with its own at once, keeping the heap's entry. The
// kernel talks to the VMM through I/O ports: 0xE9 its log (one byte per `out`), 0xEA a program's
// output (the physical address of a request {fd, address, length}), 0xF0 the root it has just
// loaded into CR3 (two 32-bit halves; the VMM checks CR3 holds it at every later exit), 0xF2 and
// 0xF3 the slot check (a request {metadata start, frames, slot size, reference-count offset, type
// offset}: record every slot's two words before the program, compare them after it), 0xF4 the
// run's status.

#if os(Linux)
import COSTDKVM
import Glibc

/// What to boot.
public struct BootOptions: Sendable {
    /// The kernel ELF (Kernel/build.sh).
    public var kernel: String
    /// The program's ELF file, and its arguments (argv[0] first).
    public var program: [UInt8]
    public var arguments: [String]
    /// The machine's physical memory (the core's frames), besides the kernel's area.
    public var machineMemory = 256 << 20
    /// Trace system calls and page faults (the kernel logs them).
    public var trace = false
    /// How long the whole run may take.
    public var budgetSeconds = 120.0

    public init(kernel: String, program: [UInt8], arguments: [String]) {
        self.kernel = kernel
        self.program = program
        self.arguments = arguments
    }
}

/// How a boot ended.
public struct BootResult: Sendable {
    /// The program's status, as a shell reports it (128 + signal when killed).
    public var status: Int32
    /// Everything the kernel logged.
    public var kernelLog: String
    /// The page-table roots the kernel announced, in order; CR3 held each one at every exit
    /// after its announcement.
    public var roots: [UInt64]
    /// The frames whose slot (reference count and type) was the same after the program as
    /// before it: all of the machine's, or the boot fails.
    public var slotsCompared: Int
    /// Wall-clock seconds from the VM's creation to the exit.
    public var seconds: Double
}

/// Boots the kernel with `options.program`; `output(fd, bytes)` receives what the program
/// writes to standard output (1) and error (2), and `log(line)` each kernel log line as it
/// comes.
///
/// - Throws: `unavailable` without `/dev/kvm`; `guest` when the kernel or program is not a valid
///   ELF file, the kernel stops without a status (a triple fault, a halt, the deadline), or CR3
///   does not hold the root the kernel announced.
public func bootKernel(_ options: BootOptions, output: (Int32, [UInt8]) -> Void,
                       log: (String) -> Void = { _ in }) throws(KvmError) -> BootResult {
    let started = monotonicNanoseconds()
    guard let kernelBytes = readWholeFile(options.kernel) else { throw .guest("cannot read the kernel \(options.kernel)") }
    let kernel = try ElfFile(kernelBytes)
    let layout = try BootLayout(kernel: kernel, options: options)
    let ram = try GuestRam(size: layout.ramSize)
    layout.write(kernelBytes, kernel, options, into: ram)
    let vm = try VirtualMachine()
    try vm.addMemory(slot: 0, guestPhysical: 0, host: ram.base, size: layout.ramSize)
    let vcpu = try vm.makeVcpu()
    var sregs = try vcpu.longModeSystemRegisters(root: layout.bootRoot, gdt: (0, 0), idt: (0, 0), tss: 0)
    sregs.efer |= 1   // SCE: SYSCALL enabled (the kernel sets LSTAR, STAR and SFMASK)
    // OSFXSR and OSXMMEXCPT: programs may use SSE in ring 3 (the kernel itself never does, and
    // there is one program, so its registers need no saving across traps).
    sregs.cr4 |= 1 << 9 | 1 << 10
    try vcpu.setSystemRegisters(sregs)
    var regs = kvm_regs()
    regs.rip = kernel.entry
    regs.rflags = 2
    regs.rdi = BootLayout.linearBase + layout.bootInfo
    try vcpu.setRegisters(regs)
    var session = BootSession(ram: ram, vcpu: vcpu)
    let status = try session.run(until: started + UInt64(options.budgetSeconds * 1e9), output: output, log: log)
    return BootResult(status: status, kernelLog: session.kernelLog, roots: session.roots,
                      slotsCompared: session.slotsCompared, seconds: Double(monotonicNanoseconds() - started) / 1e9)
}

/// The guest's RAM: anonymous host memory, zero-filled, registered with KVM without a copy.
final class GuestRam {
    let base: UnsafeMutableRawPointer
    let size: Int

    init(size: Int) throws(KvmError) {
        // SAFETY: a fresh anonymous mapping owned by this object and unmapped in `deinit`.
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              base != MAP_FAILED else { throw .call("mmap(guest RAM)", errno: errno) }
        self.base = base
        self.size = size
    }

    deinit { munmap(base, size) }

    /// Copies `bytes` to guest physical `address`.
    func write(_ bytes: some Collection<UInt8>, at address: UInt64) {
        precondition(Int(address) + bytes.count <= size, "guest write outside RAM")
        // SAFETY: inside the mapping (checked).
        let target = (base + Int(address)).assumingMemoryBound(to: UInt8.self)
        for (i, byte) in bytes.enumerated() { target[i] = byte }
    }

    func store(_ value: UInt64, at address: UInt64) {
        precondition(Int(address) + 8 <= size, "guest write outside RAM")
        // SAFETY: inside the mapping (checked).
        (base + Int(address)).storeBytes(of: value, as: UInt64.self)
    }

    func load(_ address: UInt64) -> UInt64? {
        guard Int(address) + 8 <= size else { return nil }
        // SAFETY: inside the mapping (checked).
        return (base + Int(address)).loadUnaligned(as: UInt64.self)
    }

    /// `count` bytes at guest physical `address`, or `nil` outside RAM.
    func bytes(at address: UInt64, count: Int) -> [UInt8]? {
        guard count >= 0, Int(address) + count <= size else { return nil }
        // SAFETY: inside the mapping (checked).
        return Array(UnsafeRawBufferPointer(start: base + Int(address), count: count))
    }
}

/// Where everything goes in guest physical memory (see the file comment).
struct BootLayout {
    static let linearBase: UInt64 = 0xffff_8000_0000_0000
    static let kernelVirtualBase: UInt64 = 0xffff_ffff_8000_0000
    static let twoMiB: UInt64 = 2 << 20
    static let heapVirtual: UInt64 = 0x7f00_0000_0000
    static let heapSize: UInt64 = 64 << 20

    let machineMemory: UInt64
    let imageSpan: UInt64
    let heap: UInt64
    let tables: UInt64
    let tablePages: UInt64
    let bootInfo: UInt64
    let program: UInt64
    let arguments: UInt64
    let argumentBytes: [UInt8]
    let ramSize: Int
    var bootRoot: UInt64 { tables }

    init(kernel: ElfFile, options: BootOptions) throws(KvmError) {
        guard options.machineMemory >= 16 << 20, options.machineMemory % Int(BootLayout.twoMiB) == 0 else {
            throw .guest("machine memory must be a multiple of 2 MiB, at least 16 MiB")
        }
        machineMemory = UInt64(options.machineMemory)
        var end: UInt64 = 0
        for segment in kernel.segments {
            guard segment.virtualAddress >= BootLayout.kernelVirtualBase else {
                throw .guest("the kernel is not linked in the top 2 GiB (segment at 0x\(String(segment.virtualAddress, radix: 16)))")
            }
            end = max(end, segment.virtualAddress - BootLayout.kernelVirtualBase + UInt64(segment.memorySize))
        }
        imageSpan = (end + BootLayout.twoMiB - 1) & ~(BootLayout.twoMiB - 1)
        argumentBytes = options.arguments.flatMap { Array($0.utf8) + [0] }
        heap = machineMemory + imageSpan
        tables = heap + BootLayout.heapSize
        // The tables: root, the linear map's level-3 node and one level-2 node per GiB, the
        // image's level-3 and level-2 nodes, the heap's. RAM is known once the rest is placed;
        // 64 GiB at most.
        tablePages = 1 + 1 + 64 + 2 + 2
        bootInfo = tables + tablePages * 4096
        program = bootInfo + 4096
        arguments = (program + UInt64(options.program.count) + 4095) & ~4095
        let total = arguments + UInt64(argumentBytes.count)
        ramSize = Int((total + BootLayout.twoMiB - 1) & ~(BootLayout.twoMiB - 1))
        guard ramSize <= 64 << 30 else { throw .guest("guest RAM above 64 GiB") }
    }

    /// Fills RAM: the kernel's segments, the boot tables, the boot information, the program.
    func write(_ kernelBytes: [UInt8], _ kernel: ElfFile, _ options: BootOptions, into ram: GuestRam) {
        for segment in kernel.segments {
            let physical = machineMemory + (segment.virtualAddress - BootLayout.kernelVirtualBase)
            ram.write(kernelBytes[segment.fileOffset..<(segment.fileOffset + segment.fileSize)], at: physical)
        }
        writeTables(ram)
        let info: [UInt64] = [
            0x4e52_454b_4454_534f, machineMemory, UInt64(ramSize), machineMemory, BootLayout.kernelVirtualBase,
            BootLayout.linearBase, program, UInt64(options.program.count), arguments, UInt64(argumentBytes.count),
            UInt64(options.arguments.count), options.trace ? 1 : 0, BootLayout.heapVirtual, BootLayout.heapSize,
        ]
        for (i, word) in info.enumerated() { ram.store(word, at: bootInfo + UInt64(i * 8)) }
        ram.write(options.program, at: program)
        ram.write(argumentBytes, at: arguments)
    }

    /// The boot page tables: all RAM at `linearBase` (no execute) and the image at
    /// `kernelVirtualBase`, in 2 MiB pages.
    private func writeTables(_ ram: GuestRam) {
        let present: UInt64 = 1, writable: UInt64 = 2, huge: UInt64 = 0x80, noExecute: UInt64 = 1 << 63
        let root = tables, linear3 = tables + 0x1000, image3 = tables + 0x2000, image2 = tables + 0x3000
        let heap3 = tables + UInt64(tablePages - 2) * 0x1000, heap2 = heap3 + 0x1000
        ram.store(heap3 | present | writable, at: root + 254 * 8)
        ram.store(heap2 | present | writable, at: heap3)
        for i in 0..<(BootLayout.heapSize / BootLayout.twoMiB) {
            ram.store((heap + i * BootLayout.twoMiB) | present | writable | huge | noExecute, at: heap2 + i * 8)
        }
        ram.store(linear3 | present | writable, at: root + 256 * 8)
        ram.store(image3 | present | writable, at: root + 511 * 8)
        ram.store(image2 | present | writable, at: image3 + 510 * 8)
        for i in 0..<(imageSpan / BootLayout.twoMiB) {
            ram.store((machineMemory + i * BootLayout.twoMiB) | present | writable | huge, at: image2 + i * 8)
        }
        let gigabytes = (UInt64(ramSize) + (1 << 30) - 1) >> 30
        for g in 0..<gigabytes {
            let node = tables + 0x4000 + g * 0x1000
            ram.store(node | present | writable, at: linear3 + g * 8)
            for i in 0..<UInt64(512) {
                let physical = g << 30 + i * BootLayout.twoMiB
                guard physical < UInt64(ramSize) else { break }
                ram.store(physical | present | writable | huge | noExecute, at: node + i * 8)
            }
        }
    }
}

/// The run loop: the kernel's port writes until its exit status.
struct BootSession {
    let ram: GuestRam
    let vcpu: Vcpu
    var kernelLog = ""
    var logLine: [UInt8] = []
    var roots: [UInt64] = []
    var rootHalf: UInt64? = nil
    /// The slots' words recorded before the program, and how many matched after it.
    var recordedSlots: [UInt64] = []
    var slotsCompared = 0

    mutating func run(until deadline: UInt64, output: (Int32, [UInt8]) -> Void,
                      log: (String) -> Void) throws(KvmError) -> Int32 {
        while true {
            let now = monotonicNanoseconds()
            guard now < deadline else { throw .guest("the kernel did not finish in time\(lastLogLine)") }
            switch try vcpu.run(budgetNanoseconds: Int64(deadline - now)) {
            case .io(let port, true, _, let value):
                if let status = try handle(port: port, value: value, output: output, log: log) { return status }
            case .timedOut:
                let rip = (try? vcpu.registers().rip).map { " (rip 0x" + String($0, radix: 16) + ")" } ?? ""
                throw .guest("the kernel did not finish in time\(rip)\(lastLogLine)")
            case let exit:
                let regs = try? vcpu.registers()
                let cr2 = (try? vcpu.systemRegisters().cr2) ?? 0
                let rip = regs.map { " at rip 0x" + String($0.rip, radix: 16) + " rsp 0x" + String($0.rsp, radix: 16)
                    + " rax 0x" + String($0.rax, radix: 16) + " rbx 0x" + String($0.rbx, radix: 16) + " rcx 0x" + String($0.rcx, radix: 16) + " rdx 0x" + String($0.rdx, radix: 16) + " r8 0x" + String($0.r8, radix: 16) + " r9 0x" + String($0.r9, radix: 16)
                    + " cr2 0x" + String(cr2, radix: 16) } ?? ""
                throw .guest("the kernel stopped: \(exit)\(rip)\(lastLogLine)")
            }
        }
    }

    private var lastLogLine: String {
        let last = kernelLog.split(separator: "\n").last.map(String.init) ?? ""
        return last.isEmpty ? "" : " (its last words: \(last))"
    }

    /// Handles one port write; returns the status when the run is over.
    private mutating func handle(port: UInt16, value: UInt32, output: (Int32, [UInt8]) -> Void,
                                 log: (String) -> Void) throws(KvmError) -> Int32? {
        switch port {
        case 0xe9:
            let byte = UInt8(truncatingIfNeeded: value)
            if byte == 0x0a {
                let line = String(decoding: logLine, as: UTF8.self)
                kernelLog += line + "\n"
                log(line)
                logLine = []
            } else {
                logLine.append(byte)
            }
        case 0xea:
            guard let fd = ram.load(UInt64(value)), let address = ram.load(UInt64(value) + 8),
                  let length = ram.load(UInt64(value) + 16), let bytes = ram.bytes(at: address, count: Int(length)) else {
                throw .guest("the kernel's output request at 0x\(String(value, radix: 16)) is outside RAM")
            }
            output(Int32(truncatingIfNeeded: fd), bytes)
            try checkRoot()
        case 0xf0:
            if let low = rootHalf {
                roots.append(low | UInt64(value) << 32)
                rootHalf = nil
                try checkRoot()
            } else {
                rootHalf = UInt64(value)
            }
        case 0xf2:
            recordedSlots = try slotWords(request: UInt64(value))
        case 0xf3:
            let now = try slotWords(request: UInt64(value))
            guard now.count == recordedSlots.count else { throw .guest("the slot check compares different machines") }
            for i in stride(from: 0, to: now.count, by: 2) where now[i] != recordedSlots[i] || now[i + 1] != recordedSlots[i + 1] {
                throw .guest("frame 0x" + String((i / 2) << 12, radix: 16) + " did not come back: reference count word 0x"
                             + String(now[i], radix: 16) + ", type 0x" + String(now[i + 1], radix: 16) + " after the program; 0x"
                             + String(recordedSlots[i], radix: 16) + ", 0x" + String(recordedSlots[i + 1], radix: 16) + " before")
            }
            slotsCompared = now.count / 2
        case 0xf4:
            try checkRoot()
            return Int32(bitPattern: value)
        default:
            throw .guest("the kernel wrote to unknown port 0x\(String(port, radix: 16))")
        }
        return nil
    }

    /// The reference-count and type words of every slot the request at `address` describes.
    private func slotWords(request address: UInt64) throws(KvmError) -> [UInt64] {
        guard let start = ram.load(address), let count = ram.load(address + 8), let size = ram.load(address + 16),
              let refOffset = ram.load(address + 24), let typeOffset = ram.load(address + 32),
              count < 1 << 32, size >= 16, refOffset + 8 <= size, typeOffset + 8 <= size,
              Int(start + count * size) <= ram.size else {
            throw .guest("the kernel's slot-check request at 0x\(String(address, radix: 16)) is malformed")
        }
        var words: [UInt64] = []
        words.reserveCapacity(Int(count) * 2)
        for i in 0..<count {
            words.append(ram.load(start + i * size + refOffset)!)
            words.append(ram.load(start + i * size + typeOffset)!)
        }
        return words
    }

    /// CR3 must hold the root the kernel announced last.
    private func checkRoot() throws(KvmError) {
        guard let root = roots.last else { return }
        let cr3 = try vcpu.systemRegisters().cr3 & ~0xfff
        guard cr3 == root else {
            throw .guest("CR3 is 0x\(String(cr3, radix: 16)), not the announced root 0x\(String(root, radix: 16))")
        }
    }
}

/// The whole file at `path`, or `nil`.
public func readWholeFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        // SAFETY: `read` writes at most `count` bytes into the buffer it is given.
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 { return nil }
        if count == 0 { return bytes }
        bytes += buffer[..<count]
    }
}
#endif

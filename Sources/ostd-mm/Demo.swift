// `ostd-mm demo`: a narrated tour of the memory manager on a default machine.
//
// It boots a machine, walks a frame through every reference-count state, shows segments and the
// buddy allocator at work, then builds and uses a small program's address space
// (`AddressSpaceTour`), checks the seeds' `clean_inv` once everything is dropped, and finishes
// with a line starting `demo: ok` and a summary.

import ArgumentParser
import OSTDHost
import OSTDKVM
@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec
import OSTDScript

#if canImport(Glibc)
import Glibc
#endif

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "A narrated tour of the memory manager.")

    @Option(help: "Physical memory size, as for `run`: a multiple of 2M, at least 4M, e.g. 256M or 0x10000000.")
    var memory = "256M"

    /// The tour needs 4 MiB: its address space maps a 2 MiB huge page and some 500 small ones.
    static let leastMemory = 4 << 20

    /// `--memory` in bytes, or why it is refused (a usage error: exit 2, nothing run).
    func memoryBytes() throws(ValidationError) -> Int {
        switch MemorySize.parse(memory, least: Demo.leastMemory) {
        case .success(let size): return size
        case .failure(let error): throw ValidationError(error.description)
        }
    }

    func validate() throws { _ = try memoryBytes() }

    func run() throws {
        let memory = try memoryBytes()
        let auditor = SpecAuditor()
        let machine = try Machine.host(memory: memory, cpus: 2, auditor: auditor)
        say("boot", "\(memory >> 20) MiB of physical memory: \(machine.frameCount) frames of 4 KiB")
        say("boot", "frame 0 reserved; metadata region \(machine.metadataRange) (64 bytes per frame)")
        say("boot", "\(machine.freeFrames) frames free in the buddy allocator, \(machine.cpuCount) CPUs")

        try tourOfOneFrame(machine)
        try tourOfSegments(machine)
        try tourOfCpuCaches(machine)
        let stats = try addressSpaceTour(machine, auditor: auditor)

        let violations = auditor.violations
        guard violations.isEmpty else {
            throw ValidationError("audit: \(violations.count) violation(s): "
                                  + violations.prefix(5).map(\.description).joined(separator: "; "))
        }
        machine.flushCpuCaches()
        let owners = machine.metaRegionOwners()
        guard owners.cleanInv(), machine.outstandingFrames == 0 else {
            throw ValidationError("leak check failed: \(owners.outstandingObligations().count) frame(s) outstanding")
        }
        say("check", "MetaRegionOwners::inv holds for all \(owners.maxMetaSlots) slots; obligation ledger empty (clean_inv)")
        bootSmallProgram()
        print("demo: ok — \(stats.mappedPages) pages mapped, \(stats.faults) faults reported, \(stats.conflicts) conflict refused, \(stats.tlbFlushes) TLB shootdowns, \(stats.audits) audits passed; all \(machine.frameCount) frames returned, clean_inv holds")
    }

    /// Boots the bare-metal kernel with Tests/Programs/hello.c where /dev/kvm and a C compiler are
    /// here (as `ostd-mm boot` does), and says what happened; says why not otherwise.
    private func bootSmallProgram() {
        guard VirtualMachine.isAvailable else {
            say("kernel", "/dev/kvm is not here: booting the Embedded Swift kernel (`ostd-mm boot`) is skipped")
            return
        }
        guard let root = KernelBuild.repositoryRoot(), let kernel = try? KernelBuild.ensure() else {
            say("kernel", "the kernel's sources are not next to this ostd-mm: booting it is skipped")
            return
        }
        let program = "/tmp/ostd-demo-hello-\(getpid())"
        let flags = "-static -nostdlib -fno-pie -no-pie -fno-stack-protector -fno-builtin -ffreestanding -mno-sse -mno-sse2 -mno-mmx -mgeneral-regs-only -O1"
        guard system("${CC:-cc} \(flags) -o \(program) '\(root)/Tests/Programs/hello.c' 2>/dev/null") == 0,
              let bytes = readWholeFile(program) else {
            say("kernel", "no C compiler to build Tests/Programs/hello.c: booting the kernel is skipped")
            return
        }
        unlink(program)
        var printed: [UInt8] = []
        var log = ""
        do {
            let result = try bootKernel(BootOptions(kernel: kernel, program: bytes, arguments: ["hello", "demo"]),
                                        output: { _, bytes in printed += bytes }, log: { log += $0 + "\n" })
            let first = String(decoding: printed.prefix { $0 != 0x0a }, as: UTF8.self)
            say("kernel", "booted the Embedded Swift kernel under KVM (\(KvmBackend.current.rawValue)) in \(Int(result.seconds * 1000)) ms: its own PageTable<KernelPtConfig> in CR3, then a static Linux program in ring 3 on a VmSpace; it printed \"\(first)\" and exited with status \(result.status), every frame back")
        } catch {
            say("kernel", "booting the kernel failed: \(error)")
        }
    }

    /// Builds, uses and drops a small program's address space.
    private func addressSpaceTour(_ machine: Machine, auditor: SpecAuditor) throws -> TourStats {
        var tour = try AddressSpaceTour(machine: machine, auditor: auditor)
        try tour.run()
        return tour.stats
    }

    private func tourOfOneFrame(_ machine: Machine) throws {
        let frame = try FrameAllocOptions().allocFrame(in: machine)
        let paddr = frame.paddr
        say("frame", "allocated \(paddr): \(state(machine, paddr))")
        let clone = frame.clone()
        say("frame", "cloned: \(state(machine, paddr))")
        _ = consume clone
        say("frame", "clone dropped: \(state(machine, paddr))")
        guard var unique = UniqueFrame.tryFrom(frame).get() else { throw ValidationError("unique conversion failed") }
        unique.meta = UntypedMeta()
        say("frame", "converted to a UniqueFrame: \(state(machine, paddr))")
        let shared = unique.intoShared()
        let raw = shared.intoRaw()
        say("frame", "into_raw: the reference now lives in the number \(raw): \(state(machine, paddr))")
        _ = unsafe Frame<UntypedMeta>.fromRaw(raw, in: machine)
        say("frame", "from_raw and dropped: \(state(machine, paddr))")
    }

    private func tourOfSegments(_ machine: Machine) throws {
        var segment = try FrameAllocOptions().allocSegment(512, in: machine)
        say("segment", "512 contiguous frames at \(segment.range) (2 MiB aligned: \(segment.paddr.isAligned(to: 2 << 20)))")
        let tail = segment.split(at: 256 * pageSize)
        say("segment", "split into \(segment.range) and \(tail.range)")
        let hello = Array("hello, frames".utf8)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: hello.count, alignment: 1)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: hello)
        try tail.writeBytes(at: 4090, from: UnsafeRawBufferPointer(buffer))
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        try tail.readBytes(at: 4090, into: buffer)
        say("segment", "wrote and read back \"\(String(decoding: buffer, as: UTF8.self))\" across a frame boundary")
        let before = machine.freeChunksByOrder
        _ = consume segment
        _ = consume tail
        let after = machine.freeChunksByOrder
        say("buddy", "dropped both halves; chunks per order went from \(trimmed(before)) to \(trimmed(after))")
    }

    private func tourOfCpuCaches(_ machine: Machine) throws {
        try machine.withCpu(1) { () throws(FrameError) in
            let first = try FrameAllocOptions().allocFrame(in: machine)
            let paddr = first.paddr
            _ = consume first
            let again = try FrameAllocOptions().allocFrame(in: machine)
            say("cpu 1", "freed \(paddr) into the CPU's cache and got \(again.paddr) back: last in, first out")
        }
    }

    private func state(_ machine: Machine, _ paddr: Paddr) -> String {
        let slot = machine.metaSlot(of: paddr)
        if slot.isFree {
            return slot.status == .unique
                ? "free, the head of a free chunk (UNIQUE, held by the buddy allocator)"
                : "free (UNUSED)"
        }
        let count: String
        switch slot.status {
        case .unused: count = "UNUSED"
        case .unique: count = "UNIQUE"
        case .busy: count = "busy"
        case .shared(let n): count = "shared, count \(n)"
        case .overflow(let n): count = "illegal count \(n)"
        }
        return "\(count), usage \(slot.usage)"
    }

    private func trimmed(_ chunks: [Int]) -> String {
        let last = chunks.lastIndex { $0 != 0 } ?? 0
        return "[" + chunks[...last].map(String.init).joined(separator: " ") + "]"
    }

}

/// Prints one line of the tour: a topic column, then the text.
func say(_ topic: String, _ text: String) {
    print("\(topic.padding(toLength: 8))\(text)")
}

extension String {
    /// The string padded with spaces to at least `length` characters.
    func padding(toLength length: Int) -> String {
        count >= length ? self + " " : self + String(repeating: " ", count: length - count)
    }
}

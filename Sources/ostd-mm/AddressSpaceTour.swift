// The address-space part of `ostd-mm demo`: a small program's user address space built, used and
// torn down through the public API, narrated as it goes.
//
// Code r-x, data rw-, a heap of one 2 MiB huge page, and a stack with an unmapped guard page
// below it. Then what a kernel does with such a space: user reads and writes through checked
// readers and writers, a fault on the guard page, a protect that splits the huge page, a copy
// refused by the ownership protocol, an unmap with its TLB flush, and the final page table.

import ArgumentParser
import OSTDHost
import OSTDKVM
@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec
import OSTDScript


/// What the tour counted, for the demo's summary line.
struct TourStats {
    var mappedPages = 0
    var faults = 0
    var conflicts = 0
    var tlbFlushes = 0
    /// The quiescent points at which the specification's audit ran and held.
    var audits = 0
}

/// The user address space of a small program, and what happens to it.
struct AddressSpaceTour {
    let machine: Machine
    let kernelPageTable: PageTable<KernelPtConfig>
    let space: VmSpace
    /// Checks every frame operation of the machine and every cursor operation and ownership
    /// change of the space as it happens.
    let auditor: SpecAuditor
    var stats = TourStats()

    static let code = Vaddr(0x40_0000)
    static let data = Vaddr(0x60_0000)
    static let heap = Vaddr(0x4000_0000)
    static let stackTop = Vaddr(0x7fff_ffff_0000)
    static let stackPages = 8

    init(machine: Machine, auditor: SpecAuditor) throws {
        self.machine = machine
        self.auditor = auditor
        kernelPageTable = try PageTable.newKernelPageTable(machine: machine)
        space = try VmSpace(kernelPageTable: kernelPageTable, auditor: auditor)
        say("space", "a user address space: root node at \(space.rootPaddr) (CR3), the kernel half shared with every other space")
    }

    mutating func run() throws {
        try mapProgram()
        try audit("map")
        space.activate(on: 0)
        say("cpu 0", "activated the space: CR3 = \(space.rootPaddr), TLB flushed")
        try useMemory()
        try audit("use")
        try faultOnGuardPage()
        try audit("fault")
        try splitHugePage()
        try audit("split")
        try refuseConflict()
        try audit("refuse")
        try unmapCode()
        try audit("unmap")
        try checkOnTheWalker()
        showTree()
        say("audit", "the specification held: \(auditor.operationsChecked) operations checked as they happened (frame operations, cursor operations, reader and writer operations, admissions: each against its spec function, with the cursor's locks and VmSpaceOwner::inv), and \(stats.audits) audits after the steps (page-table view and structure, slot invariants, reference accounting, VmSpaceOwner::inv, TLB ⊆ page table)")
    }

    /// Collects what the auditor found during the step and runs the specification's
    /// quiescent-point audit (`OSTDSpec.Audit`); a violation ends the demo with the predicates
    /// that failed.
    mutating func audit(_ step: String) throws {
        let violations = auditor.violations + Audit.quiescent(machine: machine, space: space, kernel: kernelPageTable)
        guard violations.isEmpty else {
            throw ValidationError("audit after \(step): " + violations.map(\.description).joined(separator: "; "))
        }
        stats.audits += 1
    }

    /// Maps code, data, heap and stack, each with its own protection.
    mutating func mapProgram() throws {
        try mapPages(at: Self.code, count: 4, .user(.rx), "code ", "r-x")
        try mapPages(at: Self.data, count: 2, .user(.rw), "data ", "rw-")
        var cursor = try space.cursorMut(Self.heap..<(Self.heap + (2 << 20)))
        let block = try FrameAllocOptions().allocSegment(512, in: machine)
        let blockStart = block.paddr
        cursor.map(MappedItem(hugePage: block, property: .user(.rw)))
        stats.mappedPages += 512
        say("map", "heap   \(Self.heap)..<\(Self.heap + (2 << 20))  rw-  one 2 MiB leaf, physically \(blockStart) (a contiguous, aligned block)")
        let stackBottom = Vaddr(Self.stackTop.rawValue - UInt64(Self.stackPages * pageSize))
        try mapPages(at: stackBottom, count: Self.stackPages, .user(.rw), "stack", "rw-")
        say("map", "guard  \(Vaddr(stackBottom.rawValue - UInt64(pageSize)))..<\(stackBottom)  left unmapped below the stack")
    }

    mutating func mapPages(at va: Vaddr, count: Int, _ property: PageProperty, _ name: String, _ prot: String) throws {
        var cursor = try space.cursorMut(va..<(va + count * pageSize))
        for _ in 0..<count { cursor.map(try FrameAllocOptions().allocFrame(in: machine), property) }
        stats.mappedPages += count
        say("map", "\(name)  \(va)..<\(va + count * pageSize)  \(prot)  \(count) frames of 4 KiB")
    }

    /// Writes a greeting into data and reads it back, then copies it to the heap.
    mutating func useMemory() throws {
        let greeting = Array("hello from user space".utf8)
        let at = Self.data + 0xff8   // crosses into the second data page
        try space.withWriter(at: at, count: greeting.count) { (writer) throws(OSTDError) in
            try greeting.withUnsafeBytes { bytes in
                Result { () throws(OSTDError) in
                    var source = unsafe VmReader<Infallible>(bytes).toFallible()
                    _ = try writer.writeFallible(&source)
                }
            }.get()
        }
        say("write", "\(greeting.count) bytes at \(at) through a VmWriter, across a page boundary; the writer held \(at)..<\(at + greeting.count) while it lived")
        let back = try readBytes(at, greeting.count)
        say("read", "through a VmReader: \"\(String(decoding: back, as: UTF8.self))\"")
        var reader = try space.createReader(at, greeting.count)
        var writer = try space.createWriter(Self.heap, greeting.count)
        let copied = try reader.readFallible(&writer)
        say("copy", "\(copied) bytes data → heap with a reader and a writer alive at once (their ranges are disjoint)")
        let stats0 = space.tlbStatistics(cpu: 0)
        say("tlb", "cpu 0's TLB: \(stats0.hits) hits, \(stats0.misses) misses (each miss walked the page table)")
    }

    func readBytes(_ at: Vaddr, _ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try space.withReader(at: at, count: count) { (reader) throws(OSTDError) in
            try bytes.withUnsafeMutableBytes { buffer in
                Result { () throws(OSTDError) in
                    var destination = unsafe VmWriter<Infallible>(buffer).toFallible()
                    _ = try reader.readFallible(&destination)
                }
            }.get()
        }
        return bytes
    }

    /// A write that runs off the bottom of the stack into the guard page.
    mutating func faultOnGuardPage() throws {
        let stackBottom = Vaddr(Self.stackTop.rawValue - UInt64(Self.stackPages * pageSize))
        let start = Vaddr(stackBottom.rawValue - 8)
        do throws(OSTDError) {
            try space.withWriter(at: start, count: 16) { (writer) throws(OSTDError) in _ = try writer.fillZeros(16) }
        } catch {
            guard case .pageFault(let address, let copied) = error else { throw error }
            stats.faults += 1
            say("fault", "a 16-byte write at \(start), just below the stack, faults at once: page fault at \(address), \(copied) bytes written — the guard page; a user program would get SIGSEGV")
            return
        }
        throw DemoFailure("the guard page did not fault")
    }

    /// Write-protects one 4 KiB page of the huge heap page: the 2 MiB leaf splits.
    mutating func splitHugePage() throws {
        let nodesBefore = space.pageTable.nodes().count
        let page = Self.heap + pageSize
        var cursor = try space.cursorMut(page..<(page + pageSize))
        _ = cursor.protectNext(pageSize) { flags, _ in flags.remove(.w) }
        cursor.flusher.issueTlbFlush(.single(page))
        cursor.flusher.dispatchTlbFlush()
        _ = consume cursor
        stats.tlbFlushes += 1
        let nodesAfter = space.pageTable.nodes().count
        say("protect", "\(page) made read-only: the 2 MiB leaf split into 512 leaves of 4 KiB (\(nodesAfter - nodesBefore) new page-table node), same frames, then a TLB flush of that page")
        do {
            try space.withWriter(at: page, count: 4) { (writer) throws(OSTDError) in try writer.writeVal(UInt32(1)) }
            throw DemoFailure("a write to a read-only page succeeded")
        } catch let error as OSTDError {
            guard case .pageFault(let address, _) = error else { throw error }
            stats.faults += 1
            say("fault", "writing it now faults at \(address); reading it still works")
        }
    }

    /// A copy whose destination overlaps its source: the writer is refused.
    mutating func refuseConflict() throws {
        let reader = try space.createReader(Self.data, 64)
        do {
            _ = try space.createWriter(Self.data + 32, 64)
            throw DemoFailure("an overlapping writer was admitted")
        } catch let error as OSTDError {
            guard case .accessConflict(let requested, let conflicting) = error else { throw error }
            stats.conflicts += 1
            say("refuse", "a writer over \(requested.lowerBound)..<\(requested.upperBound) while a reader holds \(conflicting.lowerBound)..<\(conflicting.upperBound): access conflict (the seeds' can_create_writer)")
        }
        _ = consume reader
    }

    /// Unmaps the code; its frames return only after the TLB flush.
    mutating func unmapCode() throws {
        let before = machine.outstandingFrames
        let flushesBefore = space.tlbStatistics(cpu: 0).pageFlushes
        var cursor = try space.cursorMut(Self.code..<(Self.code + 4 * pageSize))
        let frames = cursor.unmap(4 * pageSize)
        _ = consume cursor
        let flushed = space.tlbStatistics(cpu: 0).pageFlushes - flushesBefore
        stats.tlbFlushes += 1
        say("unmap", "the code: \(frames) frames unmapped, \(flushed) TLB pages flushed on cpu 0, then \(before - machine.outstandingFrames) frames freed (the emptied page-table node with them)")
    }

    /// Checks the space on KVM's x86 page walker where /dev/kvm is here (as `ostd-mm hwcheck`).
    func checkOnTheWalker() throws {
        guard VirtualMachine.isAvailable else {
            say("kvm", "/dev/kvm is not here: the check of this space on a hardware page walker (`ostd-mm hwcheck`) is skipped")
            return
        }
        let report = try checkOnHardware(machine: machine, kernelPageTable: kernelPageTable, root: space.rootPaddr)
        guard report.disagree == 0 else {
            throw DemoFailure("the hardware page walker disagrees: " + report.disagreements.prefix(3).map(\.description).joined(separator: "; "))
        }
        say("kvm", "checked on \(report.walker) (\(report.backend.rawValue)): \(report.cpl0Probes + report.cpl3Probes) reads, writes and fetches at CPL 0 and 3 and the A/D bits of \(report.accessedDirtyEntries) entries, all as the software says")
    }

    /// The final page table and map, as `ostd-mm dump` shows them.
    func showTree() {
        say("tree", "the address space now, as `ostd-mm dump` shows it:")
        let snapshot = AddressSpaceSnapshot(view: space.pageTable.view(), nodes: space.pageTable.nodes(),
                                            kernelNodes: kernelPageTable.nodes())
        for line in AddressSpaceDump.lines(snapshot) { print("        " + line) }
    }
}

/// Something the demo expected did not happen.
struct DemoFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

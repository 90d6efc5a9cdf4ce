// The hardware check: a user address space's tables, walked by a real x86 page walker (KVM's),
// against what the software says (the simulated MMU's rule, `X86Mmu`, on a snapshot of the same
// tables).
//
// 1. Snapshot the user half (clearing its A/D bits first) and choose addresses: the first and last
//    byte of every leaf, random bytes inside leaves, the first non-zero byte of the pages probed
//    (bytes a script wrote), and unmapped addresses: in every hole between leaves (those left by
//    splits and unmaps included) and at random.
// 2. For each address, probes: read and write at CPL 0 and CPL 3, fetch at CPL 3, and fetch at CPL 0
//    where the software has a translation (a `ret` is placed there; a CPL-0 fetch elsewhere would
//    run whatever bytes the hardware found with the kernel's privileges). A write stores the
//    byte the software says is there. Writes and fetches into page-table nodes are not made, nor
//    any access to a translation outside physical memory.
// 3. The software's expectation of each probe: `X86Mmu.decide` on its walk of the snapshot (with
//    the vCPU's controls), the byte read from the software's translation, and the A/D bits a
//    successful access sets.
// 4. Run them in the guest (CR3 = the live root, or a private copy where 1 GiB leaves must be
//    split), compare every outcome, then every present user-half entry's A/D bits.

#if os(Linux)
@_spi(OSTDInternals) import OSTDMemory

/// How to check.
public struct HardwareCheckOptions: Sendable {
    /// The seed of the random addresses.
    public var seed: UInt64 = 0x05d_2026
    /// Random addresses inside each leaf, besides its first and last byte.
    public var randomPerLeaf = 2
    /// Random addresses anywhere in the user half.
    public var randomAddresses = 64
    /// At most this many addresses (a larger space is sampled, and the report says so).
    public var maxAddresses = 8192
    /// Test only: changes the tables the guest walks after the software's snapshot, given the
    /// leaf entry the guest reaches for an address (a deliberately wrong entry must disagree).
    @_spi(Testing) public var corrupt: (@Sendable (_ leafEntry: (Vaddr) -> UnsafeMutablePointer<UInt64>?) -> Void)?

    public init() {}
}

/// One way the hardware and the software differ.
public struct HardwareDisagreement: Sendable, CustomStringConvertible {
    public var description: String
    /// The JSON object of the disagreement.
    public var json: String
}

/// What the check found.
public struct HardwareCheckReport: Sendable {
    public var backend: KvmBackend
    public var walker: String
    public var features: VcpuFeatures
    /// Access probes made at CPL 0 and CPL 3, and the entries whose A/D bits were compared.
    public var cpl0Probes = 0
    public var cpl3Probes = 0
    public var accessedDirtyEntries = 0
    /// Probes not made (writes or fetches into page-table nodes).
    public var skipped = 0
    /// Addresses probed, and whether they were a sample of a larger set.
    public var addresses = 0
    public var sampled = false
    public var split1G = 0
    /// Guest runs that a probe stopped before the loop's end (an unexpected exception, a triple
    /// fault, an emulation failure): 0 when the hardware and the software agree.
    public var stops = 0
    public var disagreements: [HardwareDisagreement] = []
    /// Seconds in the guest at CPL 0 and CPL 3, and to create the VM.
    public var cpl0Seconds = 0.0
    public var cpl3Seconds = 0.0
    public var vmStartSeconds = 0.0

    public var probes: Int { cpl0Probes + cpl3Probes + accessedDirtyEntries }
    public var disagree: Int { disagreements.count }
    public var agree: Int { probes - disagree }

    /// The summary line (`ostd-mm hwcheck`).
    public var summaryJSON: String {
        "{\"hwcheck\": true, \"backend\": \"\(backend.rawValue)\", \"probes\": \(probes), \"agree\": \(agree), "
            + "\"disagree\": \(disagree), \"split_1g\": \(split1G), \"cpl0_probes\": \(cpl0Probes), "
            + "\"cpl3_probes\": \(cpl3Probes), \"ad_entries\": \(accessedDirtyEntries), \"skipped\": \(skipped), "
            + "\"addresses\": \(addresses), \"sampled\": \(sampled), \"stops\": \(stops), "
            + "\"cpl0_seconds\": \(rounded(cpl0Seconds)), \"cpl3_seconds\": \(rounded(cpl3Seconds)), "
            + "\"vm_start_seconds\": \(rounded(vmStartSeconds))}"
    }

    private func rounded(_ x: Double) -> String {
        let scaled = (x * 10_000).rounded() / 10_000
        return "\(scaled)"
    }
}

/// Checks the user page table at `root` (whose kernel half is `kernelPageTable`'s) against KVM's
/// page walker.
///
/// - Throws: `unavailable` without `/dev/kvm`, `call` when KVM refuses, `guest` when the machine
///   has no room for the probe kernel.
public func checkOnHardware(machine: Machine, kernelPageTable: PageTable<KernelPtConfig>, root: Paddr,
                            options: HardwareCheckOptions = HardwareCheckOptions()) throws(KvmError) -> HardwareCheckReport {
    let kernel = try ProbeKernel(machine: machine, kernelPageTable: kernelPageTable)
    defer { kernel.unmap() }
    let started = monotonicNanoseconds()
    let runner = try ProbeRunner(machine: machine, kernel: kernel)
    let vmStart = Double(monotonicNanoseconds() - started) / 1e9
    var check = HardwareCheck(machine: machine, runner: runner, kernel: kernel, root: root, options: options)
    var report = try check.run()
    report.vmStartSeconds = vmStart
    return report
}

/// Performs each access of `accesses` in the guest, through the user page table at `root`, and
/// returns what the hardware did: the accesses run in order, reads and writes before fetches, a
/// write storing the byte that is there; a fetch finds `ret` at the translation's byte only where
/// the software has a translation (see `HardwareCheck`).
///
/// - Throws: as `checkOnHardware`.
public func probeOnHardware(machine: Machine, kernelPageTable: PageTable<KernelPtConfig>, root: Paddr,
                            _ accesses: [(Vaddr, MemoryAccess)]) throws(KvmError) -> [ProbeOutcome] {
    let kernel = try ProbeKernel(machine: machine, kernelPageTable: kernelPageTable)
    defer { kernel.unmap() }
    let runner = try ProbeRunner(machine: machine, kernel: kernel)
    let check = HardwareCheck(machine: machine, runner: runner, kernel: kernel, root: root, options: HardwareCheckOptions())
    defer { check.restoreLiveTables(nil) }
    var outcomes: [ProbeOutcome] = []
    for (va, access) in accesses {
        let paddr = check.snapshot.walk(va, controls: check.controls).paddr(of: va)
        // SAFETY: a translation inside physical memory (translations outside it were skipped above).
        let byte = paddr.map { machine.readOnlyPointer(to: $0).load(as: UInt8.self) } ?? 0
        let probe = Probe(address: va, access: access, value: byte)
        let placed = access.kind == .fetch ? check.placeReturns([probe]) : [:]
        outcomes += try runner.run([probe], root: root, userMode: access.userMode)
        check.restore(placed)
    }
    return outcomes
}

/// One check of one space (see the file comment).
struct HardwareCheck {
    let machine: Machine
    let runner: ProbeRunner
    let kernel: ProbeKernel
    let options: HardwareCheckOptions
    var snapshot: TableSnapshot
    /// The software's expectations use the vCPU's controls, with 1 GiB pages (split in the copy).
    let controls: PagingControls
    var random: SplitMix64

    init(machine: Machine, runner: ProbeRunner, kernel: ProbeKernel, root: Paddr, options: HardwareCheckOptions) {
        self.machine = machine
        self.runner = runner
        self.kernel = kernel
        self.options = options
        snapshot = TableSnapshot(machine: machine, root: root)
        var controls = runner.controls
        controls.page1GB = true
        self.controls = controls
        random = SplitMix64(seed: options.seed)
    }

    mutating func run() throws(KvmError) -> HardwareCheckReport {
        var report = HardwareCheckReport(backend: runner.vm.backend, walker: runner.vm.backend.walker,
                                         features: runner.vcpu.features)
        let (addresses, sampled) = chooseAddresses()
        report.addresses = addresses.count
        report.sampled = sampled
        let tables = try HardwareTables(machine: machine, snapshot: snapshot, page1GB: runner.controls.page1GB)
        report.split1G = tables.split1G
        defer { restoreLiveTables(tables) }
        options.corrupt?(tables.leafEntry(for:))
        for fetches in [false, true] {
            for userMode in [false, true] {
                let (probes, skipped) = makeProbes(addresses, userMode: userMode, fetches: fetches)
                report.skipped += skipped
                let placed = fetches ? placeReturns(probes) : [:]
                let outcomes = try runner.run(probes, root: tables.root, userMode: userMode)
                restore(placed)
                compare(probes, outcomes, into: &report)
                if userMode { report.cpl3Probes += probes.count } else { report.cpl0Probes += probes.count }
            }
        }
        compareAccessedDirty(tables, into: &report)
        report.stops = runner.stops
        report.cpl0Seconds = Double(runner.nanoseconds[false] ?? 0) / 1e9
        report.cpl3Seconds = Double(runner.nanoseconds[true] ?? 0) / 1e9
        return report
    }

    // MARK: Addresses

    /// The addresses to probe (see the file comment) and whether they are a sample.
    mutating func chooseAddresses() -> ([Vaddr], Bool) {
        var addresses: [UInt64] = []
        let top: UInt64 = 0x8000_0000_0000
        var previousEnd: UInt64 = 0
        for leaf in snapshot.leaves {
            let start = leaf.va.rawValue
            let end = start + UInt64(leaf.size)
            addHole(previousEnd, start, to: &addresses)
            previousEnd = end
            addresses += [start, end - 1]
            for _ in 0..<options.randomPerLeaf { addresses.append(start + random.next() % UInt64(leaf.size)) }
            for page in [start, end - UInt64(pageSize)] {
                if let written = firstNonZeroByte(va: page, leaf: leaf) { addresses.append(written) }
            }
        }
        addHole(previousEnd, top, to: &addresses)
        for _ in 0..<options.randomAddresses { addresses.append(random.next() % top) }
        var unique = Array(Set(addresses)).sorted()
        var sampled = false
        if unique.count > options.maxAddresses {
            sampled = true
            for i in stride(from: unique.count - 1, to: 0, by: -1) {
                unique.swapAt(i, Int(random.next() % UInt64(i + 1)))
            }
            unique = Array(unique.prefix(options.maxAddresses)).sorted()
        }
        return (unique.map { Vaddr($0) }, sampled)
    }

    /// The first and last byte of the hole `start ..< end`, and one inside it.
    private mutating func addHole(_ start: UInt64, _ end: UInt64, to addresses: inout [UInt64]) {
        guard start < end else { return }
        addresses += [start, end - 1, start + random.next() % (end - start)]
    }

    /// The address of the first non-zero byte of the page at `va` inside `leaf`, if any.
    private func firstNonZeroByte(va: UInt64, leaf: SnapshotLeaf) -> UInt64? {
        let paddr = PageTableEntry(raw: leaf.entry).paddr(level: leaf.level) + Int(va - leaf.va.rawValue)
        guard Int(paddr.rawValue) + pageSize <= machine.memorySize else { return nil }
        // SAFETY: `paddr ..< paddr + pageSize` lies inside physical memory (checked above).
        let bytes = machine.readOnlyPointer(to: paddr)
        for i in 0..<pageSize where bytes.load(fromByteOffset: i, as: UInt8.self) != 0 {
            return va + UInt64(i)
        }
        return nil
    }

    // MARK: Probes

    /// The probes of one run: reads and writes, or fetches, at one privilege level.
    func makeProbes(_ addresses: [Vaddr], userMode: Bool, fetches: Bool) -> ([Probe], skipped: Int) {
        var probes: [Probe] = []
        var skipped = 0
        for address in addresses {
            let walk = snapshot.walk(address, controls: controls)
            let paddr = walk.paddr(of: address)
            if let paddr, Int(paddr.rawValue) >= machine.memorySize {
                skipped += fetches ? 1 : 2   // no RAM there: the guest would exit to the VMM (MMIO)
                continue
            }
            let intoNode = paddr.map { snapshot.isNode($0) || isProbeKernel($0) } ?? false
            if fetches {
                if intoNode || (!userMode && paddr == nil) {
                    skipped += 1
                    continue
                }
                probes.append(Probe(address: address, access: MemoryAccess(.fetch, userMode: userMode)))
            } else {
                probes.append(Probe(address: address, access: MemoryAccess(.read, userMode: userMode)))
                if intoNode {
                    skipped += 1
                    continue
                }
                // SAFETY: the translation of an address the caller chose; `readOnlyPointer` checks it is inside memory.
                let byte = paddr.map { machine.readOnlyPointer(to: $0).load(as: UInt8.self) } ?? 0
                probes.append(Probe(address: address, access: MemoryAccess(.write, userMode: userMode), value: byte))
            }
        }
        return (probes, skipped)
    }

    private func isProbeKernel(_ paddr: Paddr) -> Bool {
        paddr >= kernel.firstFrame && paddr < kernel.firstFrame + ProbeLayout.pages * pageSize
    }

    /// Puts `ret` at the software's translation of every fetch probe; returns the bytes it hid.
    func placeReturns(_ probes: [Probe]) -> [UInt64: UInt8] {
        var saved: [UInt64: UInt8] = [:]
        for probe in probes {
            guard let paddr = snapshot.walk(probe.address, controls: controls).paddr(of: probe.address),
                  saved[paddr.rawValue] == nil else { continue }
            let byte = machine.pointer(to: paddr, count: 1)
            // SAFETY: `paddr` is inside physical memory (checked when the probe was made).
            saved[paddr.rawValue] = byte.load(as: UInt8.self)
            byte.storeBytes(of: 0xc3, as: UInt8.self)
        }
        return saved
    }

    func restore(_ saved: [UInt64: UInt8]) {
        for (paddr, byte) in saved {
            // SAFETY: as in `placeReturns`.
            machine.pointer(to: Paddr(paddr), count: 1).storeBytes(of: byte, as: UInt8.self)
        }
    }

    // MARK: Comparing

    /// What the software says `probe` does.
    func expectation(_ probe: Probe, walk: PageWalk) -> ProbeOutcome {
        if let code = X86Mmu.decide(walk, probe.access, controls: controls) {
            return .pageFault(code, cr2: probe.address)
        }
        guard probe.access.kind == .read, let paddr = walk.paddr(of: probe.address) else { return .completed(byte: nil) }
        // SAFETY: `paddr` is the software translation of a probe that was made, so inside physical memory.
        return .completed(byte: machine.readOnlyPointer(to: paddr).load(as: UInt8.self))
    }

    mutating func compare(_ probes: [Probe], _ outcomes: [ProbeOutcome], into report: inout HardwareCheckReport) {
        for (probe, hardware) in zip(probes, outcomes) {
            let walk = snapshot.walk(probe.address, controls: controls)
            var software = expectation(probe, walk: walk)
            if probe.access.kind == .fetch, case .completed = software { software = .completed(byte: nil) }
            if case .completed = software {
                for i in 0..<walk.count { snapshot.set(X86Mmu.accessedDirty(entry: i, of: walk, probe.access), at: walk.location(i)) }
            }
            guard software != hardware else { continue }
            report.disagreements.append(disagreement(probe, walk: walk, software: software, hardware: hardware))
        }
    }

    private func disagreement(_ probe: Probe, walk: PageWalk, software: ProbeOutcome,
                              hardware: ProbeOutcome) -> HardwareDisagreement {
        var leaf = "no leaf"
        if let level = walk.leafLevel {
            let entry = PageTableEntry(raw: walk[walk.count - 1])
            leaf = "leaf level \(level) entry 0x" + String(entry.raw, radix: 16) + " (" + entry.property.description + ")"
        } else if case .notPresent = walk.end, walk.count > 0 {
            leaf = "walk ends at level \(PagingConsts.nrLevels - UInt8(walk.count) + 1) entry 0x" + String(walk[walk.count - 1], radix: 16)
        }
        let text = "disagree: \(probe.access) \(probe.address) [\(leaf)]: software: \(software); hardware: \(hardware)"
        let json = "{\"disagree\": \"access\", \"access\": \"\(probe.access.kind)\", \"cpl\": \(probe.access.userMode ? 3 : 0), "
            + "\"address\": \"\(probe.address)\", \"leaf\": \"\(leaf)\", \"software\": \"\(software)\", \"hardware\": \"\(hardware)\"}"
        return HardwareDisagreement(description: text, json: json)
    }

    /// Every present user-half entry: the A (and in leaves D) bits the walker set must be those
    /// the software's rule set on the snapshot.
    func compareAccessedDirty(_ tables: HardwareTables, into report: inout HardwareCheckReport) {
        let folded = tables.accessedDirty()
        for (location, level, isLeaf) in snapshot.presentEntries() {
            report.accessedDirtyEntries += 1
            let mask = isLeaf ? PageTableEntry.accessed | PageTableEntry.dirty : PageTableEntry.accessed
            let software = snapshot.entry(at: location) & mask
            let hardware = tables.accessedDirty(at: location, folded: folded) & mask
            guard software != hardware else { continue }
            func bits(_ value: UInt64) -> String {
                (value & PageTableEntry.accessed != 0 ? "A" : "-") + (value & PageTableEntry.dirty != 0 ? "D" : "-")
            }
            let what = "\(isLeaf ? "leaf" : "table") entry at \(location), level \(level)"
            report.disagreements.append(HardwareDisagreement(
                description: "disagree: A/D of the \(what): software \(bits(software)); hardware \(bits(hardware))",
                json: "{\"disagree\": \"accessed-dirty\", \"entry\": \"\(location)\", \"level\": \(level), "
                    + "\"software\": \"\(bits(software))\", \"hardware\": \"\(bits(hardware))\"}"))
        }
    }

    /// Puts back every live user-half entry as the snapshot had it (undoing a test's corruption),
    /// keeping the A/D bits the walker set.
    func restoreLiveTables(_ tables: HardwareTables?) {
        let folded = tables?.accessedDirty() ?? [:]
        for (location, _, _) in snapshot.presentEntries() {
            let mask = PageTableEntry.accessed | PageTableEntry.dirty
            // SAFETY: `location` is an entry of one of the snapshot's nodes, inside physical memory.
            let entry = machine.pointer(to: location, count: 8)
            let hardware = tables?.accessedDirty(at: location, folded: folded)
                ?? machine.readOnlyPointer(to: location).load(as: UInt64.self) & mask
            // SAFETY: `location` is an entry of one of the snapshot's nodes, inside physical memory.
            let original = snapshot.entry(at: location) & ~mask
            entry.storeBytes(of: original | hardware, as: UInt64.self)
        }
    }
}

/// A small seeded generator (SplitMix64), so that a check's addresses are reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
#endif

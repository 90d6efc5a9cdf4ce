// Auditing a live address space against the specification at a quiescent point (no cursor, reader
// or writer alive, every flush dispatched): the checks `ostd-mm run --audit` makes after every op.
//
// Each check is a named function returning the violations it found, in words, empty when it
// holds; `Audit.quiescent` runs them all. What they check (vostd-spec-reference.md §10):
// - `pageTableViewInv`: the user table's leaves are well formed and pairwise disjoint (A.1, A.2);
// - `vaBounds`: user leaves below 2^47, kernel leaves in the kernel half (A.3);
// - `pageTableStructure`: `nrChildren`, levels, one parent per node, node frames, tracked leaves'
//   frames in use, no empty node below the root, for the user and the kernel table (A.3–A.6, C.18);
// - `metaRegionInv`: every slot's `MetaSlotOwner::inv` and the region's index and address clauses;
// - `referenceAccounting`: every frame's count is its handles (the exact ledger, so the machine
//   must keep it: `audit: true`) plus its page-table paths (C.17);
// - `vmSpaceOwnerInv`: the admitted readers and writers satisfy `VmSpaceOwner::inv`;
// - `tlbSubsetOfPageTable`: every translation cached by a CPU where the space is active is one the
//   page table gives now, with no more rights (check 31: after a completed flush, TLB ⊆ PT).
// Each script op is also compared with its spec function on the views before and after
// (`ViewTransitions`; the script runner does it), and each cursor operation inside it by the
// space's `SpecAuditor`. The `MemView` layer's predicates (`VmSpaceOwnerModel.memViewViolations`)
// are not among the quiescent checks: at a quiescent point no reader or writer is alive, so they
// hold trivially; the property tests check them while handles are alive.

@_spi(OSTDInternals) import OSTDMemory

/// A violated predicate and what was wrong.
public struct AuditViolation: Error, Equatable, Sendable, CustomStringConvertible {
    /// The predicate's name (the function that found it).
    public var predicate: String
    /// The smallest useful excerpt of the state that breaks it.
    public var detail: String
    /// The operation after (or during) which it was found, when known.
    public var operation: String?

    public init(predicate: String, detail: String, operation: String? = nil) {
        self.predicate = predicate
        self.detail = detail
        self.operation = operation
    }

    public var description: String { "\(predicate): \(detail)" + (operation.map { " (in \($0))" } ?? "") }
}

/// What the quiescent checks need of a kernel page table, taken once.
public struct KernelTableAudit: Sendable {
    /// The table's view.
    public let view: PageTableView
    /// Its `paths_in_pt` (node frames and tracked leaves' frames).
    public let pathsInPt: [Paddr: Int]
    /// Its structural violations.
    public let structuralViolations: [String]

    /// Walks `kernel` now.
    public init(_ kernel: PageTable<KernelPtConfig>) {
        view = kernel.view()
        pathsInPt = kernel.pathsInPt(view: view)
        structuralViolations = kernel.structuralViolations()
    }
}

/// The quiescent-point checks of one address space.
public enum Audit {
    /// Every check, in the order listed in the file comment; at most `limit` details each.
    /// `userView`, when given, must be the space's page-table view now (a caller that has just
    /// taken it saves a walk).
    public static func quiescent(machine: Machine, space: VmSpace, kernel: PageTable<KernelPtConfig>,
                                 userView: PageTableView? = nil, limit: Int = 5) -> [AuditViolation] {
        quiescent(machine: machine, space: space, kernel: KernelTableAudit(kernel), userView: userView, limit: limit)
    }

    /// `quiescent` with the kernel table's part taken earlier (`KernelTableAudit`): for a caller
    /// that knows the kernel table has not changed since, such as a property test whose ops
    /// touch user space only. The kernel half is most of a fresh walk (256 shared nodes).
    public static func quiescent(machine: Machine, space: VmSpace, kernel: KernelTableAudit,
                                 userView: PageTableView? = nil, limit: Int = 5) -> [AuditViolation] {
        let userView = userView ?? space.pageTable.view()
        var paths = space.pageTable.pathsInPt(view: userView)
        for (paddr, count) in kernel.pathsInPt { paths[paddr, default: 0] += count }
        let (slotProblems, accountingProblems) = metaRegion(machine, pathsInPt: paths, limit: limit)
        let found: [(String, [String])] = [
            ("pageTableViewInv", userView.invViolations(limit: limit)),
            ("vaBounds", vaBounds(user: userView, kernel: kernel.view)),
            ("pageTableStructure", space.pageTable.structuralViolations() + kernel.structuralViolations),
            ("metaRegionInv", slotProblems),
            ("referenceAccounting", accountingProblems),
            ("vmSpaceOwnerInv", vmSpaceOwnerInv(space.ownerSnapshot)),
            ("tlbSubsetOfPageTable", tlbSubsetOfPageTable(machine: machine, space: space)),
        ]
        return found.flatMap { name, details in
            details.prefix(limit).map { AuditViolation(predicate: name, detail: $0) }
        }
    }

    /// `PageTableView::inv`: the mappings that are malformed or overlap their predecessor.
    public static func pageTableViewInv(_ view: PageTableView) -> [String] { view.invViolations() }

    /// Check A.3: a user table maps only below 2^47, a kernel table only from
    /// `0xffff_8000_0000_0000` on.
    public static func vaBounds(user: PageTableView, kernel: PageTableView) -> [String] {
        let userEnd = UInt64(1) << 47
        let kernelStart: UInt64 = 0xffff_8000_0000_0000
        return user.mappings.filter { $0.va.upperBound.rawValue > userEnd || $0.va.lowerBound > $0.va.upperBound }
            .map { "user mapping \($0) reaches past 2^47" }
            + kernel.mappings.filter { $0.va.lowerBound.rawValue < kernelStart }.map { "kernel mapping \($0) below the kernel half" }
    }

    /// `MetaRegionOwners::inv` and, with the exact ledger, reference accounting, in one pass over
    /// the slots without building the region's snapshot (the audit's hot loop): the same
    /// predicates as `MetaRegionOwners.inv` / `accountingViolations`, at most `limit` details each.
    public static func metaRegion(_ machine: Machine, pathsInPt: [Paddr: Int], limit: Int = 5)
        -> (slots: [String], accounting: [String]) {
        var slots: [String] = []
        var accounting: [String] = []
        let regionSize = machine.frameCount * MetaSlot.size
        // The paths in address order, walked beside the slots (a hash lookup per slot was most of
        // the audit's time).
        let paths = pathsInPt.sorted { $0.key < $1.key }
        var next = 0
        for i in 0..<machine.frameCount {
            let paddr = Paddr(UInt64(i) << UInt64(pageShift))
            while next < paths.count && paths[next].key < paddr { next += 1 }
            let pathCount = next < paths.count && paths[next].key == paddr ? paths[next].value : 0
            let slot = machine.metaSlot(of: paddr)
            let owner = MetaSlotOwner(index: i, refCount: slot.referenceCount, typeTag: slot.typeTag,
                                      inList: machine.freeListWord(ofFrame: i),
                                      slotOffset: machine.metaSlotOffset(ofFrame: i), regionSize: regionSize,
                                      pathsInPt: pathCount)
            if slots.count < limit, !MetaRegionOwners.slotHolds(owner, at: i) {
                slots.append(describe(owner))
            }
            if accounting.count < limit, let handles = machine.obligationCount(ofFrame: i),
               let problem = MetaRegionOwners.accountingViolation(owner, handles: handles) {
                accounting.append(problem)
            }
        }
        return (slots, accounting)
    }

    /// A slot as a violation shows it.
    static func describe(_ slot: MetaSlotOwner) -> String {
        "slot \(slot.index) (frame \(Paddr(UInt64(slot.index) << 12))): reference count \(slot.refCount), usage "
            + "\(slot.usage), in_list \(slot.inList), paths \(slot.pathsInPt), offset \(slot.slotOffset)"
    }

    /// `MetaRegionOwners::inv`: the first slot that breaks it, if any.
    public static func metaRegionInv(_ owners: MetaRegionOwners) -> [String] {
        owners.firstInvViolation().map { [describe($0)] } ?? []
    }

    /// `VmSpaceOwner::inv`: the registrations, when it does not hold.
    public static func vmSpaceOwnerInv(_ owner: VmSpaceOwner) -> [String] {
        guard !owner.inv() else { return [] }
        return ["readers \(owner.readers.map { describe($0.range) }), writers \(owner.writers.map { describe($0.range) }), "
                + "sharedReader \(owner.sharedReader)"]
    }

    /// TLB ⊆ PT: the cached translations of the CPUs where `space` is active that the page table
    /// no longer gives (another frame, or rights the leaf does not grant).
    public static func tlbSubsetOfPageTable(machine: Machine, space: VmSpace) -> [String] {
        var problems: [String] = []
        for cpu in 0..<machine.cpuCount where space.isActive(on: cpu) {
            for entry in machine.tlbEntries(cpu: cpu) {
                guard let (leaf, _) = space.pageTable.translate(entry.va) else {
                    problems.append("cpu \(cpu) caches \(entry.va) -> \(entry.paddr), which is not mapped")
                    continue
                }
                let leafStart = Vaddr(entry.va.rawValue & ~(UInt64(leaf.size) - 1))
                let offset = entry.va - leafStart
                let rights = leaf.property
                if leaf.paddr + offset != entry.paddr || entry.level > leaf.level
                    || (entry.user && !rights.privilegedFlags.contains(.user))
                    || (entry.writable && !rights.flags.contains(.w)) {
                    problems.append("cpu \(cpu) caches \(entry.va) -> \(entry.paddr) (level \(entry.level)"
                                    + "\(entry.user ? ", user" : "")\(entry.writable ? ", writable" : "")); "
                                    + "the table maps \(leaf)")
                }
            }
        }
        return problems
    }

    static func describe(_ range: Range<Vaddr>) -> String { "\(range.lowerBound)..<\(range.upperBound)" }
}

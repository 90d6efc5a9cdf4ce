// The user half of a page table as the software wrote it: every node reachable from root entries
// 0–255, copied entry for entry before the guest runs. It is the software's claim: the simulated
// MMU's rule (`X86Mmu`) walks it to say what each probe must do, and the A/D bits that rule sets
// on it are what the hardware's walker must set on the live tables.

#if os(Linux)
@_spi(OSTDInternals) import OSTDMemory

/// A leaf of the user half: its first address, level and entry.
struct SnapshotLeaf {
    var va: Vaddr
    var level: PagingLevel
    var entry: UInt64
    var size: Int { PagingConsts.pageSize(level) }
}

/// A copy of a user page table's nodes (see the file comment).
struct TableSnapshot {
    let root: Paddr
    /// Node physical address → its 512 entries.
    var nodes: [UInt64: [UInt64]] = [:]
    /// Node physical address → its level.
    var levels: [UInt64: PagingLevel] = [:]
    /// The leaves in address order (software's presence: P or bit 7).
    private(set) var leaves: [SnapshotLeaf] = []

    /// Copies the user half of the table at `root`, after clearing the A and D bits there so that
    /// every bit the walker sets is compared.
    init(machine: Machine, root: Paddr) {
        self.root = root
        visit(machine, node: root, level: PagingConsts.nrLevels, base: 0)
    }

    private mutating func visit(_ machine: Machine, node: Paddr, level: PagingLevel, base: UInt64) {
        // SAFETY: `node` is a page-table node of this machine (the root or a child an entry points at):
        // 512 entries in physical memory; nothing else runs while the check snapshots them.
        let live = machine.pointer(to: node, count: pageSize).assumingMemoryBound(to: UInt64.self)
        let count = level == PagingConsts.nrLevels ? 256 : 512
        var entries = [UInt64](repeating: 0, count: 512)
        for i in 0..<512 {
            // SAFETY: `node` is a page-table node of this machine: 512 entries in physical memory.
            var raw = live[i]
            if i < count {
                raw &= ~(PageTableEntry.accessed | PageTableEntry.dirty)
                live[i] = raw
            }
            entries[i] = raw
        }
        nodes[node.rawValue] = entries
        levels[node.rawValue] = level
        for i in 0..<count {
            let entry = PageTableEntry(raw: entries[i])
            guard entry.isPresent else { continue }
            let va = base | UInt64(i) << PagingConsts.indexShift(level)
            if entry.isLeaf || level == 1 {
                leaves.append(SnapshotLeaf(va: Vaddr(va), level: level, entry: entry.raw))
            } else {
                visit(machine, node: entry.paddr(level: level), level: level - 1, base: va)
            }
        }
    }

    /// The entry at physical address `location` (0 outside the copied nodes).
    func entry(at location: Paddr) -> UInt64 {
        nodes[location.rawValue & ~0xfff]?[Int(location.rawValue & 0xfff) / 8] ?? 0
    }

    /// Sets `bits` in the entry at `location`.
    mutating func set(_ bits: UInt64, at location: Paddr) {
        nodes[location.rawValue & ~0xfff]?[Int(location.rawValue & 0xfff) / 8] |= bits
    }

    /// The software's walk of `va` under `controls`.
    func walk(_ va: Vaddr, controls: PagingControls) -> PageWalk {
        X86Mmu.walk(va, root: root, controls: controls) { entry(at: $0) }
    }

    /// Whether the 4 KiB frame at `paddr` is one of the table's nodes.
    func isNode(_ paddr: Paddr) -> Bool { nodes[paddr.rawValue & ~0xfff] != nil }

    /// The user-half entries that are present to the hardware, with their level: the ones whose A
    /// (and, in leaves, D) bits are compared.
    func presentEntries() -> [(location: Paddr, level: PagingLevel, isLeaf: Bool)] {
        var result: [(Paddr, PagingLevel, Bool)] = []
        for (node, entries) in nodes {
            let level = levels[node]!
            let count = level == PagingConsts.nrLevels ? 256 : 512
            for i in 0..<count where entries[i] & PageTableEntry.present != 0 {
                result.append((Paddr(node + UInt64(i * 8)), level, level == 1 || entries[i] & PageTableEntry.huge != 0))
            }
        }
        return result.sorted { $0.0 < $1.0 }
    }
}
#endif

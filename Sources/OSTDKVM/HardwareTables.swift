// The tables the guest's walker uses: the live tables themselves (zero copy: CR3 is the space's
// root), or, when the vCPU has no 1 GiB pages and the space has 1 GiB leaves, a private copy of
// the user half in which each 1 GiB leaf is a node of 512 equivalent 2 MiB leaves (same address
// bits, same flags). Every entry of the copy knows the live entry it stands for, so the A and D
// bits the walker sets in the copy are folded back onto the live entries they describe.

#if os(Linux)
@_spi(OSTDInternals) import OSTDMemory

final class HardwareTables {
    let machine: Machine
    /// What the guest's CR3 holds.
    let root: Paddr
    /// The 1 GiB leaves split into 2 MiB leaves in the copy.
    let split1G: Int
    /// Copy entry → the live entry it stands for (empty when the live tables are used).
    private var origin: [UInt64: UInt64] = [:]
    /// The copy's frames, each holding the reference `intoRaw` left (dropped by `deinit`).
    private var frames: [Paddr] = []

    /// The live tables, or a copy of `snapshot` when `page1GB` is off and it has 1 GiB leaves.
    init(machine: Machine, snapshot: TableSnapshot, page1GB: Bool) throws(KvmError) {
        self.machine = machine
        let hasGiantLeaves = snapshot.leaves.contains { $0.level == 3 }
        guard hasGiantLeaves && !page1GB else {
            root = snapshot.root
            split1G = 0
            return
        }
        var split = 0
        var frames: [Paddr] = []
        var origin: [UInt64: UInt64] = [:]
        func newNode() throws(KvmError) -> Paddr {
            do {
                let paddr = try FrameAllocOptions().allocFrame(in: machine).intoRaw()
                frames.append(paddr)
                return paddr
            } catch {
                throw .guest("no frame for the private copy of the tables: \(error)")
            }
        }
        func copy(_ node: Paddr, level: PagingLevel) throws(KvmError) -> Paddr {
            let target = try newNode()
            let entries = snapshot.nodes[node.rawValue]!
            let out = machine.pointer(to: target, count: pageSize).assumingMemoryBound(to: UInt64.self)
            let userEntries = level == PagingConsts.nrLevels ? 256 : 512
            for i in 0..<512 {
                var raw = entries[i]
                let entry = PageTableEntry(raw: raw)
                if i < userEntries && entry.raw & PageTableEntry.present != 0 {
                    if level == 3 && entry.isLeaf {
                        raw = try splitGiant(raw, origin: node + i * 8)
                        split += 1
                    } else if !entry.isLeaf && level > 1 {
                        let child = try copy(entry.paddr(level: level), level: level - 1)
                        raw = raw & ~PageTableEntry.childMask | child.rawValue
                    }
                    origin[target.rawValue + UInt64(i * 8)] = node.rawValue + UInt64(i * 8)
                }
                // SAFETY: `out` is the new node's 512 entries.
                out[i] = raw
            }
            return target
        }
        func splitGiant(_ leaf: UInt64, origin live: Paddr) throws(KvmError) -> UInt64 {
            let node = try newNode()
            let out = machine.pointer(to: node, count: pageSize).assumingMemoryBound(to: UInt64.self)
            for i in 0..<512 {
                // SAFETY: `out` is the new node's 512 entries. A 1 GiB leaf's address is 1 GiB
                // aligned, so adding i × 2 MiB leaves the flags and the PAT bit (12) alone.
                out[i] = leaf + UInt64(i) << 21
                origin[node.rawValue + UInt64(i * 8)] = live.rawValue
            }
            return PageTableEntry.pageTable(node).raw
        }
        root = try copy(snapshot.root, level: PagingConsts.nrLevels)
        split1G = split
        self.frames = frames
        self.origin = origin
    }

    deinit {
        // SAFETY: each address is a frame whose reference `intoRaw` kept, released once here.
        for paddr in frames { _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine) }
    }

    /// The A/D bits the walker set, per live entry location.
    func accessedDirty() -> [UInt64: UInt64] {
        var bits: [UInt64: UInt64] = [:]
        let mask = PageTableEntry.accessed | PageTableEntry.dirty
        if origin.isEmpty { return bits }
        for (copy, live) in origin {
            // SAFETY: `copy` is an entry of one of this copy's own frames, which it holds until `deinit`.
            bits[live, default: 0] |= machine.readOnlyPointer(to: Paddr(copy)).load(as: UInt64.self) & mask
        }
        return bits
    }

    /// The A/D bits of the entry at `location` as the walker left them.
    func accessedDirty(at location: Paddr, folded: [UInt64: UInt64]) -> UInt64 {
        if origin.isEmpty {
            // SAFETY: `location` is an entry of a snapshot node, inside physical memory, 8-byte aligned.
            return machine.readOnlyPointer(to: location).load(as: UInt64.self) & (PageTableEntry.accessed | PageTableEntry.dirty)
        }
        return folded[location.rawValue] ?? 0
    }

    /// The leaf entry the guest's walker reaches for `va`, to corrupt it in tests.
    func leafEntry(for va: Vaddr) -> UnsafeMutablePointer<UInt64>? {
        var table = root
        var level = PagingConsts.nrLevels
        while true {
            let location = table + PagingConsts.pteIndex(va, level) * 8
            // SAFETY: `location` is an entry of a node the walk reached from the root, inside physical memory.
            let pointer = machine.pointer(to: location, count: 8).assumingMemoryBound(to: UInt64.self)
            let entry = PageTableEntry(raw: pointer.pointee)
            guard entry.isPresent else { return nil }
            if entry.isLeaf || level == 1 { return pointer }
            table = entry.paddr(level: level)
            level -= 1
        }
    }
}
#endif

// The simulated MMU of one CPU during a user-mode access: the TLB first, the page walker on a miss.
//
// Like the hardware it models, the walker starts at CR3 and reads real x86-64 entries from
// physical memory, with atomic acquiring loads and without locks; it knows nothing of the
// page-table layer's nodes or cursors. Every decision is `X86Mmu`'s, with the CPU's
// `PagingControls`: the walk (`X86Mmu.walk`: P, reserved bits, leaves), the access
// (`X86Mmu.decide`, which yields the page-fault error code), and a TLB hit (`X86Mmu.check` on the
// rights the walk cached). Reader and writer copies are user-mode reads and writes.
//
// A successful walk sets A in every entry it used and D in the leaf for a write, each with a
// compare-exchange of the entry it read and only where the bit is not set yet (the hot path is a
// hit or a walk over entries already marked). A compare-exchange that fails means the entry
// changed under the walk (a cursor edited it): the walk starts again, as KVM's walker and AMD's
// hardware do. A faulting walk sets nothing. A permission fault on a cached entry first drops the
// entry and walks again, as x86 invalidates the entry of a faulting access, so a page made more
// permissive without a flush does not fault; a write through an entry cached clean walks again
// too, which is how the hardware sets D.

import Synchronization

/// Translation through one CPU's TLB and page walker, while its MMU lock is held.
@frozen @usableFromInline
struct SimulatedMmu: UserAddressTranslator {
    @usableFromInline let tlb: UnsafeMutablePointer<Tlb>
    @usableFromInline let root: Paddr
    @usableFromInline let memoryBase: UnsafeMutableRawPointer
    @usableFromInline let controls: PagingControls

    @inlinable
    init(tlb: UnsafeMutablePointer<Tlb>, root: Paddr, memoryBase: UnsafeMutableRawPointer, controls: PagingControls) {
        self.tlb = tlb
        self.root = root
        self.memoryBase = memoryBase
        self.controls = controls
    }

    @inlinable @inline(__always)
    mutating func translate(_ va: Vaddr, write: Bool, fault: inout PageFaultErrorCode) -> UserTranslation? {
        let access = MemoryAccess(write ? .write : .read, userMode: true)
        if let cached = tlb.pointee.lookup(va) {
            if cached.dirty || !write, X86Mmu.check(access, rights: cached.rights, controls: controls) == nil {
                return UserTranslation(paddr: cached.paddr, bytesLeftInPage: cached.bytesLeftInPage)
            }
            // A permission fault, or a write through an entry cached clean: drop it and walk.
            tlb.pointee.invalidate(va)
        }
        while true {
            let walk = X86Mmu.walk(va, root: root, controls: controls) { entry(at: $0).pointee.load(ordering: .acquiring) }
            // `X86Mmu.decide`, in its steps: the rights of a walk that reached a leaf are also
            // what the TLB caches.
            guard case .leaf(let level) = walk.end else {
                fault = X86Mmu.decide(walk, access, controls: controls) ?? []
                return nil
            }
            let rights = X86Mmu.rights(walk, controls: controls)
            if let code = X86Mmu.check(access, rights: rights, controls: controls) {
                fault = code
                return nil
            }
            guard setAccessedDirty(walk, access) else { continue }
            let leaf = walk[walk.count - 1]
            let base = Paddr(leaf & PageTableEntry.paMask(level))
            tlb.pointee.fill(va, paddr: base, level: level, rights: rights, dirty: write || leaf & PageTableEntry.dirty != 0)
            let size = PagingConsts.pageSize(level)
            let offset = Int(va.rawValue & UInt64(size - 1))
            return UserTranslation(paddr: base + offset, bytesLeftInPage: size - offset)
        }
    }

    /// The entry at physical address `location`.
    @inlinable @inline(__always)
    func entry(at location: Paddr) -> UnsafeMutablePointer<Atomic<UInt64>> {
        // SAFETY: `location` is an entry of a page-table node of this machine (CR3 holds a root,
        // and every non-leaf entry a child), inside physical memory and eight-byte aligned; a
        // node is not freed while a CPU holds its MMU lock (`quiesce`), and its entries are only
        // accessed atomically.
        (memoryBase + Int(location.rawValue)).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    /// Sets the A and D bits that the successful `access` through `walk` sets
    /// (`X86Mmu.accessedDirty`), root first, each with a compare-exchange of the entry the walk read, and only where they
    /// are not set yet.
    ///
    /// - Returns: `false` when an entry changed since the walk read it (walk again).
    @inlinable @inline(__always)
    func setAccessedDirty(_ walk: PageWalk, _ access: MemoryAccess) -> Bool {
        for i in 0..<walk.count {
            let bits = X86Mmu.accessedDirty(entry: i, of: walk, access)
            let old = walk[i]
            guard old & bits != bits else { continue }
            let (exchanged, _) = entry(at: walk.location(i)).pointee.compareExchange(
                expected: old, desired: old | bits, ordering: .acquiringAndReleasing)
            guard exchanged else { return false }
        }
        return true
    }
}

// The simulated MMU of one CPU during a user-mode access: the TLB first, the page walker on a miss.
//
// Like the hardware it models, the walker starts at CR3 and reads real x86-64 entries from
// physical memory, without locks; it knows nothing of the page-table layer's nodes or cursors.
// An entry is present when its P bit is (a leaf mapped without `R` is not: it faults on every
// access, as `PageProperty` says). A user-mode access needs `US` on the leaf, and `RW` to write. A permission fault on a cached
// entry first drops the entry and walks again, as x86 invalidates the entry of a faulting access,
// so a page made more permissive without a flush does not fault.

import Synchronization

/// Translation through one CPU's TLB and page walker, while its MMU lock is held.
@frozen @usableFromInline
struct SimulatedMmu: UserAddressTranslator {
    @usableFromInline let tlb: UnsafeMutablePointer<Tlb>
    @usableFromInline let root: Paddr
    @usableFromInline let memoryBase: UnsafeMutableRawPointer

    @inlinable
    init(tlb: UnsafeMutablePointer<Tlb>, root: Paddr, memoryBase: UnsafeMutableRawPointer) {
        self.tlb = tlb
        self.root = root
        self.memoryBase = memoryBase
    }

    @inlinable @inline(__always)
    mutating func translate(_ va: Vaddr, write: Bool) -> UserTranslation? {
        if let cached = tlb.pointee.lookup(va) {
            if cached.user && (cached.writable || !write) {
                return UserTranslation(paddr: cached.paddr, bytesLeftInPage: cached.bytesLeftInPage)
            }
            tlb.pointee.invalidate(va)
        }
        guard let (pte, level) = walk(va) else { return nil }
        let property = pte.property
        let writable = property.flags.contains(.w)
        guard property.privilegedFlags.contains(.user), !write || writable else { return nil }
        let paddr = pte.paddr(level: level)
        tlb.pointee.fill(va, paddr: paddr, level: level, user: true, writable: writable)
        let size = PagingConsts.pageSize(level)
        let offset = Int(va.rawValue & UInt64(size - 1))
        return UserTranslation(paddr: paddr + offset, bytesLeftInPage: size - offset)
    }

    /// The leaf entry that maps `va` and its level, read from CR3 down (the hardware page walk).
    @inlinable @inline(__always)
    func walk(_ va: Vaddr) -> (PageTableEntry, PagingLevel)? {
        var table = root
        var level = PagingConsts.nrLevels
        while true {
            // SAFETY: `table` is a page-table node of this machine (CR3 holds a root, and every
            // non-leaf entry a child), inside physical memory; its entries are only accessed
            // atomically.
            let entries = (memoryBase + Int(table.rawValue)).assumingMemoryBound(to: Atomic<UInt64>.self)
            let pte = PageTableEntry(raw: entries[PagingConsts.pteIndex(va, level)].load(ordering: .acquiring))
            // The hardware's notion of presence: the P bit alone. A leaf without `R` keeps only
            // the leaf bit (software's `isPresent`), and every access to it faults, not-present.
            guard pte.raw & PageTableEntry.present != 0 else { return nil }
            if pte.isLeaf { return (pte, level) }
            guard level > 1 else { return nil }
            table = pte.paddr(level: level)
            level -= 1
        }
    }
}

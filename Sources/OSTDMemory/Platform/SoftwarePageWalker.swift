// A page walk done in software over physical memory reached through a linear mapping: `X86Mmu`'s
// rule, with the accessed and dirty bits it sets. The simulated CPUs walk with it after a TLB
// miss (`SimulatedMmu`); a bare-metal kernel uses it as it is (`SoftwareMmu`) for its copies
// from and to user memory, which the issue allows to stay software walks while ring 3 is
// translated by the real MMU.
//
// A successful walk sets A in every entry it used and D in the leaf for a write, each with a
// compare-exchange of the entry it read and only where the bit is not set yet (the hot path walks
// entries already marked). A compare-exchange that fails means the entry changed under the walk (a
// cursor edited it): the walk starts again, as KVM's walker and AMD's hardware do. A faulting walk
// sets nothing.

import Synchronization

/// A successful software translation: the leaf's page, its level and rights, and whether the
/// leaf is dirty now.
@frozen @usableFromInline
struct SoftwareTranslation {
    @usableFromInline var base: Paddr
    @usableFromInline var level: PagingLevel
    @usableFromInline var rights: PageRights
    @usableFromInline var dirty: Bool

    @inlinable init(base: Paddr, level: PagingLevel, rights: PageRights, dirty: Bool) {
        self.base = base
        self.level = level
        self.rights = rights
        self.dirty = dirty
    }

    /// `va`'s byte and the bytes left in its page.
    @inlinable @inline(__always)
    func user(_ va: Vaddr) -> UserTranslation {
        let size = PagingConsts.pageSize(level)
        // Wrapping arithmetic: `offset < size`, and `base` is a leaf's `size`-aligned address.
        let offset = Int(va.rawValue & UInt64(size &- 1))
        return UserTranslation(paddr: Paddr(base.rawValue &+ UInt64(offset)), bytesLeftInPage: size &- offset)
    }
}

/// Walks page tables in physical memory at `memoryBase` (see the file comment).
///
/// `@safe`: its maker (`init`, which takes the raw base and is therefore marked where it is
/// called) vouches that `memoryBase` is the machine's linear mapping and `root` a live table in
/// it that a CPU's CR3 holds; no node of such a table is freed while the CPU may walk it
/// (`Platform.quiesce`), and every entry is accessed atomically.
@safe @frozen @usableFromInline
struct SoftwarePageWalker {
    @usableFromInline let root: Paddr
    @usableFromInline let memoryBase: UnsafeMutableRawPointer
    @usableFromInline let controls: PagingControls

    @inlinable
    init(root: Paddr, memoryBase: UnsafeMutableRawPointer, controls: PagingControls) {
        self.root = root
        // SAFETY: only stores the base; see the type for when it is used.
        unsafe self.memoryBase = memoryBase
        self.controls = controls
    }

    /// The translation of `va` for `access`, or `nil` with `fault` set to the error code.
    @inlinable @inline(__always)
    func translate(_ va: Vaddr, _ access: MemoryAccess, fault: inout PageFaultErrorCode) -> SoftwareTranslation? {
        if access.userMode && access.kind != .fetch {
            switch quickTranslate(va, write: access.kind == .write) {
            case .translated(let translation): return translation
            case .notPresent:
                fault = X86Mmu.errorCode(access, controls: controls)
                return nil
            case .undecided: break
            }
        }
        return walkAndDecide(va, access, fault: &fault)
    }

    /// What `quickTranslate` found.
    @frozen @usableFromInline
    enum QuickOutcome {
        case translated(SoftwareTranslation)
        /// The walk reached an entry without P: the fault `X86Mmu.decide` gives `.notPresent`.
        case notPresent
        /// Anything else: the full rule decides (`walkAndDecide`).
        case undecided
    }

    /// `translate` for the common user-mode read or write, without building a `PageWalk`: the
    /// rights folded level by level, the reserved bits tested with `X86Mmu`'s masks, the common part made once. It decides
    /// only two outcomes, each exactly as `walkAndDecide` would: a walk that stops at an entry
    /// without P after entries free of reserved bits (the not-present fault), and a walk to a
    /// leaf that allows the access and whose entries already carry A (and the leaf D, for a
    /// write), so that nothing is to be set. Everything else (a reserved bit, a protection
    /// fault, a bit to set) is `.undecided`: the full rule, which also sets A and D, takes it.
    @inlinable @inline(__always)
    func quickTranslate(_ va: Vaddr, write: Bool) -> QuickOutcome {
        let common = X86Mmu.commonReservedBits(controls)
        let needed = PageTableEntry.user | PageTableEntry.accessed | (write ? PageTableEntry.writable : 0)
        var all: UInt64 = ~0
        var any: UInt64 = 0
        var table = root.rawValue
        var level = PagingConsts.nrLevels
        while true {
            // SAFETY: an entry of the live table at `root` (see `entry(at:)`), read atomically.
            let entry = unsafe entry(at: Paddr(table &+ UInt64(PagingConsts.pteIndex(va, level) &* 8)))
                .pointee.load(ordering: .acquiring)
            guard entry & PageTableEntry.present != 0 else { return .notPresent }
            let leaf = level == 1 || entry & PageTableEntry.huge != 0
            let reserved = X86Mmu.reservedBits(level: level, leaf: entry & PageTableEntry.huge != 0, common: common,
                                               controls: controls)
            guard entry & reserved == 0 else { return .undecided }
            all &= entry
            any |= entry
            if leaf {
                guard all & needed == needed, !write || entry & PageTableEntry.dirty != 0 else { return .undecided }
                let rights = PageRights(user: true, writable: all & PageTableEntry.writable != 0,
                                        executable: !controls.noExecute || any & PageTableEntry.noExecute == 0)
                return .translated(SoftwareTranslation(base: Paddr(entry & PageTableEntry.paMask(level)), level: level,
                                                       rights: rights, dirty: entry & PageTableEntry.dirty != 0))
            }
            table = entry & PageTableEntry.childMask
            level &-= 1
        }
    }

    /// `translate` by the full rule: `X86Mmu.walk`, then `decide` in its steps, setting A and D.
    /// Out of line: the quick path decides the common walks, and the user copies that inline
    /// `translate` stay smaller (fault-in-4k: 2,133 instructions a fault inlined, 2,117 not).
    @inlinable @inline(never)
    func walkAndDecide(_ va: Vaddr, _ access: MemoryAccess, fault: inout PageFaultErrorCode) -> SoftwareTranslation? {
        while true {
            // SAFETY: the walk reads only entries of the live table at `root` (see the type and
            // `entry(at:)`), atomically.
            let walk = X86Mmu.walk(va, root: root, controls: controls) { unsafe entry(at: $0).pointee.load(ordering: .acquiring) }
            // `X86Mmu.decide`, in its steps: the rights of a walk that reached a leaf are also
            // what a TLB caches.
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
            return SoftwareTranslation(base: Paddr(leaf & PageTableEntry.paMask(level)), level: level, rights: rights,
                                       dirty: access.kind == .write || leaf & PageTableEntry.dirty != 0)
        }
    }

    /// The entry at physical address `location`.
    @inlinable @inline(__always)
    func entry(at location: Paddr) -> UnsafeMutablePointer<Atomic<UInt64>> {
        // SAFETY: `location` is an entry of a page-table node of this machine (CR3 holds a root,
        // and every non-leaf entry a child), inside physical memory and eight-byte aligned; a
        // node is not freed while a CPU may walk it (`Platform.quiesce`), and its entries are
        // only accessed atomically.
        unsafe (memoryBase + Int(location.rawValue)).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    /// Sets the A and D bits that the successful `access` through `walk` sets
    /// (`X86Mmu.accessedDirty`), root first, each with a compare-exchange of the entry the walk
    /// read, and only where they are not set yet.
    ///
    /// - Returns: `false` when an entry changed since the walk read it (walk again).
    @inlinable @inline(__always)
    func setAccessedDirty(_ walk: PageWalk, _ access: MemoryAccess) -> Bool {
        for i in 0..<walk.count {
            let bits = X86Mmu.accessedDirty(entry: i, of: walk, access)
            let old = walk[i]
            guard old & bits != bits else { continue }
            // SAFETY: `walk.location(i)` is an entry this walk just read from the live table
            // (see `entry(at:)`); the compare-exchange is atomic.
            let (exchanged, _) = unsafe entry(at: walk.location(i)).pointee.compareExchange(
                expected: old, desired: old | bits, ordering: .acquiringAndReleasing)
            guard exchanged else { return false }
        }
        return true
    }
}

/// User-mode accesses translated by a software walk alone, without a TLB: a bare-metal kernel's
/// `Platform.UserMmu` for its copies from and to user memory.
@frozen
public struct SoftwareMmu: UserAddressTranslator {
    @usableFromInline let walker: SoftwarePageWalker

    /// Walks the tables at `root` in physical memory mapped at `memoryBase`, under `controls`.
    ///
    /// - Safety: `memoryBase` maps the machine's physical memory and `root` is a live page table
    ///   in it, whose nodes are not freed while this translator is used (`Platform.quiesce`).
    @unsafe @inlinable
    public init(root: Paddr, memoryBase: UnsafeMutableRawPointer, controls: PagingControls) {
        // SAFETY: the caller's contract (above) is the walker's invariant.
        walker = unsafe SoftwarePageWalker(root: root, memoryBase: memoryBase, controls: controls)
    }

    @inlinable @inline(__always)
    public mutating func translate(_ va: Vaddr, write: Bool, fault: inout PageFaultErrorCode) -> UserTranslation? {
        walker.translate(va, MemoryAccess(write ? .write : .read, userMode: true), fault: &fault)?.user(va)
    }
}

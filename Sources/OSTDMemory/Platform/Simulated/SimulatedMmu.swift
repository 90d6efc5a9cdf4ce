// The simulated MMU of one CPU during a user-mode access: the TLB first, the page walker on a miss.
//
// Like the hardware it models, the walker starts at CR3 and reads real x86-64 entries from
// physical memory, with atomic acquiring loads and without locks; it knows nothing of the
// page-table layer's nodes or cursors. Every decision is `X86Mmu`'s, with the CPU's
// `PagingControls`: the walk (`X86Mmu.walk`: P, reserved bits, leaves), the access
// (`X86Mmu.decide`, which yields the page-fault error code), and a TLB hit (`X86Mmu.check` on the
// rights the walk cached). Reader and writer copies are user-mode reads and writes.
//
// A miss walks with `SoftwarePageWalker` (which sets the A and D bits as the hardware does). A
// permission fault on a cached entry first drops the entry and walks again, as x86 invalidates the
// entry of a faulting access, so a page made more permissive without a flush does not fault; a
// write through an entry cached clean walks again too, which is how the hardware sets D.

#if !OSTD_BARE_METAL
import Synchronization

/// Translation through one CPU's TLB and page walker, while its MMU lock is held.
///
/// `@safe`: made only by `SimulatedPlatform.withUserAccess`, with the CPU's MMU lock held and its
/// CR3 holding `root`, and used only inside the body it is lent to (`Platform.withUserAccess`'s
/// contract); meanwhile the TLB is this CPU's live one, used by no one else, and the walker reads
/// a table no node of which is freed before the CPU is quiesced.
@safe @frozen @usableFromInline
struct SimulatedMmu: UserAddressTranslator {
    @usableFromInline let tlb: UnsafeMutablePointer<Tlb>
    @usableFromInline let root: Paddr
    @usableFromInline let memoryBase: UnsafeMutableRawPointer
    @usableFromInline let controls: PagingControls

    @inlinable
    init(tlb: UnsafeMutablePointer<Tlb>, root: Paddr, memoryBase: UnsafeMutableRawPointer, controls: PagingControls) {
        // SAFETY: only stores the pointers; see the type for when they are used.
        unsafe self.tlb = tlb
        self.root = root
        unsafe self.memoryBase = memoryBase
        self.controls = controls
    }

    @inlinable @inline(__always)
    mutating func translate(_ va: Vaddr, write: Bool, fault: inout PageFaultErrorCode) -> UserTranslation? {
        let access = MemoryAccess(write ? .write : .read, userMode: true)
        // SAFETY: the TLB is this CPU's, live and used by this thread alone while the MMU lock is
        // held (see the type); `memoryBase` is the machine's linear mapping and `root` the table
        // the CPU's CR3 holds.
        if let cached = unsafe tlb.pointee.lookup(va) {
            if cached.dirty || !write, X86Mmu.check(access, rights: cached.rights, controls: controls) == nil {
                return UserTranslation(paddr: cached.paddr, bytesLeftInPage: cached.bytesLeftInPage)
            }
            // A permission fault, or a write through an entry cached clean: drop it and walk.
            unsafe tlb.pointee.invalidate(va)
        }
        let walker = unsafe SoftwarePageWalker(root: root, memoryBase: memoryBase, controls: controls)
        guard let found = walker.translate(va, access, fault: &fault) else { return nil }
        unsafe tlb.pointee.fill(va, paddr: found.base, level: found.level, rights: found.rights, dirty: found.dirty)
        return found.user(va)
    }

    /// A run that reaches past `va`'s page is answered from a run the TLB remembers when one holds
    /// `va` (`Tlb.runHit`), else looked up page by page and remembered
    /// (`translateRunRemembering`). A run within one page is `translate`'s.
    @inlinable @inline(__always)
    mutating func translateRun(_ va: Vaddr, write: Bool, limit: Int, fault: inout PageFaultErrorCode) -> UserTranslation? {
        guard limit > pageSize &- Int(va.rawValue & UInt64(pageSize - 1)) else { return translate(va, write: write, fault: &fault) }
        let needed = TlbEntry.userBit | (write ? TlbEntry.writableBit | TlbEntry.dirtyBit : 0)
        var more = false
        // SAFETY: the TLB is this CPU's, used by this thread alone while the MMU lock is held.
        guard var run = unsafe tlb.pointee.runHit(va, rights: needed, limit: limit, more: &more) else {
            return translateRunRemembering(va, write: write, limit: limit, needed: needed, fault: &fault)
        }
        // A write run is remembered only by a write (its rights include W and D); pages found
        // past it are not.
        if more { extendRun(&run, from: va, write: write, limit: limit) } else { run.repeatsWrite = write }
        return run
    }

    /// `translateRunPageByPage`, then the run remembered if every page of it was a hit of its
    /// own granting `needed` (one hit a page: no huge entry answered for several; no change of
    /// the entries: no lookup walked). A run cut short by a page that does not follow it
    /// looked that page up too, a hit or not: it is remembered on its own run. Out of line: it
    /// runs when a copy starts on pages the TLB does not remember.
    @usableFromInline @inline(never)
    mutating func translateRunRemembering(_ va: Vaddr, write: Bool, limit: Int, needed: UInt64,
                                          fault: inout PageFaultErrorCode) -> UserTranslation? {
        // SAFETY: the TLB is this CPU's, used by this thread alone while the MMU lock is held.
        let (generation, hits) = unsafe (tlb.pointee.generation, tlb.pointee.statistics.hits)
        guard let run = translateRunPageByPage(va, write: write, limit: limit, fault: &fault) else { return nil }
        let inPage = pageSize &- Int(va.rawValue & UInt64(pageSize - 1))
        let pages = (run.bytesLeftInPage &- inPage) >> pageShift &+ 1
        // SAFETY: as above.
        let lookups = unsafe tlb.pointee.statistics.hits &- hits
        if unsafe tlb.pointee.generation == generation,
           lookups == pages || (lookups == pages &+ 1 && run.bytesLeftInPage < limit) {
            // SAFETY: as above.
            unsafe tlb.pointee.remember(Vaddr(va.rawValue & ~UInt64(pageSize - 1)), count: pages,
                                        paddr: Paddr(run.paddr.rawValue & ~UInt64(pageSize - 1)), rights: needed)
        }
        return run
    }

    /// The next page of a run: a hit on a 4 KiB entry with the rights the access needs (and,
    /// for a write, cached dirty) is answered by comparing its page with `paddr`, and counted as
    /// the hit it is, as `translate` would; anything else is `translate`'s.
    @inlinable @inline(__always)
    mutating func continuation(_ va: Vaddr, at paddr: Paddr, write: Bool) -> Int? {
        let needed = TlbEntry.userBit | (write ? TlbEntry.writableBit | TlbEntry.dirtyBit : 0)
        // SAFETY: the TLB is this CPU's, used by this thread alone while the MMU lock is held.
        if let contiguous = unsafe tlb.pointee.hits4K(va, at: paddr, rights: needed) {
            return contiguous ? pageSize : nil
        }
        guard let next = translate(va, write: write), next.paddr == paddr else { return nil }
        return next.bytesLeftInPage
    }
}
#endif

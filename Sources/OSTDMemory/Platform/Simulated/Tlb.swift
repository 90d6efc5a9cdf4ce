// A simulated CPU's TLB: the translations it has cached, and nothing else.
//
// Like the hardware it models, the TLB is filled by the page walk that follows a miss and is
// emptied only by flushes (`invlpg`, a CR3 write). An entry keeps the physical page, the rights
// the walk granted (`PageRights`, folded over every entry of the walk by `X86Mmu.rights`) and
// whether the leaf was dirty, so after the page table changes a stale entry stays usable until
// it is flushed: exactly the window that `TlbFlusher` closes and that OSTD's "keep the frame
// until every CPU has flushed" rule makes harmless. A hit is decided by `X86Mmu.check` on the
// cached rights; a write through an entry cached clean is the MMU's to re-walk (to set D).
//
// Three four-way set-associative arrays, one per leaf size, as x86 parts keep separate TLBs for
// 4 KiB, 2 MiB and 1 GiB pages (164 entries in all, about a first-level data TLB). Negative
// results are never cached (x86 does not cache non-present entries). The TLB belongs to its
// `SimulatedCpu` and is used only with that CPU's MMU lock held.
//
// A copy through user memory looks up every page it touches, one after another, and so does the
// next copy of the same buffer. So that it need not probe a set per page, the TLB remembers the
// last two stretches of consecutive pages it answered page by page (`TlbRun`): for each page,
// the frame its entry maps, all granting the same rights, each lookup a hit of its own. A
// remembered stretch stands for exactly those lookups, hits included, as long as no entry has
// changed since: every fill, invalidation and flush bumps `generation`, which forgets them. It is
// a cache of the model, not a part of it: the entries, the statistics and every answer are those
// of the page-by-page lookups (`SimulatedMmuTests` checks it against them).

#if !OSTD_BARE_METAL
/// One cached translation: the tag is the virtual page number at the entry's size with bit 0
/// set when valid; the value is the physical page base with the rights and the leaf's dirty
/// state in its low bits.
@usableFromInline
struct TlbEntry {
    @usableFromInline var tag: UInt64
    @usableFromInline var value: UInt64

    @usableFromInline static var userBit: UInt64 { 1 }
    @usableFromInline static var writableBit: UInt64 { 2 }
    @usableFromInline static var executableBit: UInt64 { 4 }
    @usableFromInline static var dirtyBit: UInt64 { 8 }
    @usableFromInline static var invalid: TlbEntry { TlbEntry(tag: 0, value: 0) }

    @inlinable init(tag: UInt64, value: UInt64) {
        self.tag = tag
        self.value = value
    }
}

/// Pages `start ..< start + count * 4096` that the TLB translates, each with an entry of its own
/// granting (at least) the `rights` bits of `TlbEntry`, to the frames in the TLB's frame array
/// for the run, while its `generation` is the TLB's.
@usableFromInline
struct TlbRun {
    @usableFromInline var start: UInt64
    @usableFromInline var count: Int
    @usableFromInline var rights: UInt64
    @usableFromInline var generation: UInt64
    /// Whether the frames are consecutive too (the run is answered without a loop).
    @usableFromInline var contiguous: Bool

    /// The most pages a run remembers.
    @usableFromInline static var capacity: Int { 32 }

    /// No run: generation 0 is never the TLB's.
    @usableFromInline static var none: TlbRun { TlbRun(start: 0, count: 0, rights: 0, generation: 0, contiguous: true) }

    @inlinable init(start: UInt64, count: Int, rights: UInt64, generation: UInt64, contiguous: Bool) {
        self.start = start
        self.count = count
        self.rights = rights
        self.generation = generation
        self.contiguous = contiguous
    }

    /// The first page after the run.
    @inlinable var end: UInt64 { start &+ UInt64(count) << UInt64(pageShift) }

    /// Whether the run holds `va` with `rights` at `generation`.
    @inlinable @inline(__always)
    func holds(_ va: UInt64, rights: UInt64, generation: UInt64) -> Bool {
        self.generation == generation && (va &- start) >> UInt64(pageShift) < UInt64(count) && self.rights & rights == rights
    }
}

/// What a TLB lookup found: the physical address of the byte, the bytes left in its page, the
/// rights the entry grants and whether its leaf was dirty when cached.
@usableFromInline
struct TlbTranslation {
    @usableFromInline var paddr: Paddr
    @usableFromInline var bytesLeftInPage: Int
    @usableFromInline var rights: PageRights
    @usableFromInline var dirty: Bool

    @inlinable init(paddr: Paddr, bytesLeftInPage: Int, rights: PageRights, dirty: Bool) {
        self.paddr = paddr
        self.bytesLeftInPage = bytesLeftInPage
        self.rights = rights
        self.dirty = dirty
    }
}

/// How often a TLB hit, missed and was flushed.
public struct TlbStatistics: Equatable, Sendable {
    /// Lookups answered from a cached entry.
    public var hits = 0
    /// Lookups that needed a page walk.
    public var misses = 0
    /// Single-page invalidations performed (`invlpg`).
    public var pageFlushes = 0
    /// Full flushes performed (CR3 reloads and `TlbFlushOp.all`).
    public var fullFlushes = 0

    public init() {}
}

/// A software TLB (see the file comment).
///
/// `@safe`: `entries` (164) and `victims` (one per set, 41) are allocated and initialised by
/// `init` and freed by `deinit`, once (the TLB is noncopyable). Every index is `Tlb.set`'s first
/// entry of a set (`firstEntry(level) + set * ways`, `set < sets(level)`) plus a way `< ways`,
/// or a position inside one level's block, so it stays below `entryCount`.
@safe @usableFromInline
struct Tlb: ~Copyable {
    /// Four-way sets: 32 sets of 4 KiB entries (128), 8 sets of 2 MiB entries (32), one set of
    /// 1 GiB entries (4), laid out in that order.
    @usableFromInline static var ways: Int { 4 }
    @inlinable static func sets(_ level: PagingLevel) -> Int { level == 1 ? 32 : level == 2 ? 8 : 1 }
    @inlinable static func firstEntry(_ level: PagingLevel) -> Int { level == 1 ? 0 : level == 2 ? 128 : 160 }
    @usableFromInline static var entryCount: Int { 164 }

    @usableFromInline let entries: UnsafeMutablePointer<TlbEntry>
    /// The way each set replaces next (round robin).
    @usableFromInline let victims: UnsafeMutablePointer<UInt8>
    @usableFromInline var statistics = TlbStatistics()
    /// Bit `L - 2` set when an entry of level `L` (2 or 3) may be valid: set by a fill, cleared by
    /// a full flush. Lookups and invalidations skip the huge-page arrays while no huge page has
    /// been cached, as they are when an address space maps only 4 KiB pages.
    @usableFromInline var hugeLevels: UInt8 = 0
    /// Bumped by every change of the entries (a fill, an invalidation, a flush): the runs
    /// remembered at an older generation are forgotten.
    @usableFromInline var generation: UInt64 = 1
    /// The last two runs answered page by page (see the file comment), and which one a new run
    /// replaces; run `i`'s frames are `runFrames[i * TlbRun.capacity ..< (i + 1) * TlbRun.capacity]`.
    @usableFromInline var runs = (TlbRun.none, TlbRun.none)
    @usableFromInline var nextRun = 0
    @usableFromInline let runFrames: UnsafeMutablePointer<UInt64>

    init() {
        // SAFETY: fresh allocations, each initialised whole.
        unsafe entries = .allocate(capacity: Tlb.entryCount)
        unsafe entries.initialize(repeating: .invalid, count: Tlb.entryCount)
        unsafe victims = .allocate(capacity: Tlb.entryCount / Tlb.ways)
        unsafe victims.initialize(repeating: 0, count: Tlb.entryCount / Tlb.ways)
        // SAFETY: as above: the two runs' frames, initialised whole.
        unsafe runFrames = .allocate(capacity: 2 * TlbRun.capacity)
        unsafe runFrames.initialize(repeating: 0, count: 2 * TlbRun.capacity)
    }

    deinit {
        // SAFETY: the buffers `init` allocated (of trivial values, so nothing to deinitialise);
        // the TLB is noncopyable, so this runs once.
        unsafe entries.deallocate()
        unsafe victims.deallocate()
        // SAFETY: as above, for the runs' frames.
        unsafe runFrames.deallocate()
    }

    /// The first entry of `va`'s set among the entries of `level` (1, 2 or 3), and the tag it
    /// would carry.
    @inlinable @inline(__always)
    static func set(_ va: Vaddr, level: PagingLevel) -> (first: Int, tag: UInt64) {
        let vpn = va.rawValue >> UInt64(PagingConsts.indexShift(level))
        let set = Int(vpn & UInt64(sets(level) - 1))
        return (firstEntry(level) + set * ways, vpn << 1 | 1)
    }

    /// The cached translation of `va`, if any: 4 KiB entries first, then 2 MiB, then 1 GiB.
    @inlinable @inline(__always)
    mutating func lookup(_ va: Vaddr) -> TlbTranslation? {
        if let hit = probe(va, level: 1) ?? (hugeLevels != 0 ? probeHuge(va) : nil) {
            statistics.hits &+= 1
            return hit
        }
        statistics.misses &+= 1
        return nil
    }

    /// The 2 MiB, then the 1 GiB entry that translates `va`, if any (out of line: the code that
    /// inlines `lookup` stays small while no huge page is cached).
    @usableFromInline @inline(never)
    func probeHuge(_ va: Vaddr) -> TlbTranslation? {
        (hugeLevels & 1 != 0 ? probe(va, level: 2) : nil) ?? (hugeLevels & 2 != 0 ? probe(va, level: 3) : nil)
    }

    /// What `lookup` would find for `va` in its 4 KiB entries, for a caller that only needs to
    /// know whether the page is at `paddr` with the `rights` bits (`TlbEntry.userBit` and
    /// the like) set: `true` when it is, `false` when the entry grants them but maps another
    /// page — both counted as the hits they are — and `nil` when anything else is to be looked
    /// at (no such entry, or one without those bits), so the caller asks `lookup` then.
    @inlinable @inline(__always)
    mutating func hits4K(_ va: Vaddr, at paddr: Paddr, rights: UInt64) -> Bool? {
        guard let entry = find(va, level: 1), entry.value & rights == rights else { return nil }
        statistics.hits &+= 1
        return entry.value & ~UInt64(pageSize - 1) == paddr.rawValue
    }

    /// What looking up the pages of a run from `va` would find, page by page as
    /// `translateRunPageByPage` does, when a remembered run holds `va` with the `rights` bits:
    /// the physical address of `va` and the bytes from it to the end of the last page found
    /// contiguous, with the lookups counted as the hits they are. `more` is set when the
    /// remembered run ended before `limit` bytes, with no answer for the page after it (the
    /// caller goes on page by page there). `nil` when no run holds `va`.
    @inlinable @inline(__always)
    mutating func runHit(_ va: Vaddr, rights: UInt64, limit: Int, more: inout Bool) -> UserTranslation? {
        let run: TlbRun
        let frames: UnsafeMutablePointer<UInt64>
        // SAFETY: run `i`'s frames are the `i`th block of `capacity` in `runFrames` (see the type).
        if runs.0.holds(va.rawValue, rights: rights, generation: generation) {
            unsafe (run, frames) = unsafe (runs.0, runFrames)
        } else if runs.1.holds(va.rawValue, rights: rights, generation: generation) {
            // SAFETY: as above: run 1's block.
            unsafe (run, frames) = unsafe (runs.1, runFrames + TlbRun.capacity)
        } else {
            return nil
        }
        if run.contiguous {
            // The pages to the end of the one holding byte `limit - 1`, or to the run's end.
            let end = min((va.rawValue &+ UInt64(limit) &- 1) | UInt64(pageSize - 1), run.end &- 1) &+ 1
            statistics.hits &+= Int((end &- 1) >> UInt64(pageShift) &- va.rawValue >> UInt64(pageShift)) &+ 1
            more = end &- va.rawValue < UInt64(limit)
            // SAFETY: the run's first frame, inside its block.
            return unsafe UserTranslation(paddr: Paddr(frames.pointee &+ (va.rawValue &- run.start)),
                                          bytesLeftInPage: Int(end &- va.rawValue))
        }
        var index = Int((va.rawValue &- run.start) >> UInt64(pageShift))
        let offset = Int(va.rawValue & UInt64(pageSize - 1))
        // SAFETY: `index < run.count <= capacity` (the run holds `va`), and the loop reads
        // `index + 1` only below `run.count`.
        let paddr = unsafe Paddr(frames[index] | UInt64(offset))
        var length = pageSize &- offset
        var hits = 1
        more = false
        while length < limit {
            guard index &+ 1 < run.count else {
                more = true
                break
            }
            // The lookup of the next page: a hit, which continues the run if its frame follows.
            hits &+= 1
            // SAFETY: `index + 1 < run.count` (checked above), inside the run's block.
            guard unsafe frames[index &+ 1] == frames[index] &+ UInt64(pageSize) else { break }
            length &+= pageSize
            index &+= 1
        }
        statistics.hits &+= hits
        return UserTranslation(paddr: paddr, bytesLeftInPage: length)
    }

    /// Remembers that the `count` pages from `start` (page-aligned) were each a hit of its own
    /// granting the `rights` bits, mapping consecutive frames from `paddr`, with no change of the
    /// entries since: appended to the run that ends at `start` if there is one, else as a new
    /// run (in place of the older). Pages beyond a run's capacity are not remembered.
    @inlinable
    mutating func remember(_ start: Vaddr, count: Int, paddr: Paddr, rights: UInt64) {
        let which: Int
        if runs.0.generation == generation && runs.0.rights == rights && runs.0.end == start.rawValue {
            which = 0
        } else if runs.1.generation == generation && runs.1.rights == rights && runs.1.end == start.rawValue {
            which = 1
        } else {
            which = nextRun
            nextRun = 1 &- nextRun
            let fresh = TlbRun(start: start.rawValue, count: 0, rights: rights, generation: generation, contiguous: true)
            if which == 0 { runs.0 = fresh } else { runs.1 = fresh }
        }
        var run = which == 0 ? runs.0 : runs.1
        // SAFETY: run `which`'s block of `capacity` frames (`which` is 0 or 1).
        let frames = unsafe runFrames + which * TlbRun.capacity
        var frame = paddr.rawValue
        // SAFETY: `run.count - 1` is a frame of the run's block when the run is not empty.
        if run.count > 0, unsafe frames[run.count &- 1] &+ UInt64(pageSize) != frame { run.contiguous = false }
        // SAFETY: `run.count < capacity` inside the loop, so each store is in run `which`'s block.
        for _ in 0..<min(count, TlbRun.capacity &- run.count) {
            unsafe frames[run.count] = frame
            run.count &+= 1
            frame &+= UInt64(pageSize)
        }
        if which == 0 { runs.0 = run } else { runs.1 = run }
    }

    /// The entry of `level` whose tag is `va`'s, if its set holds one.
    @inlinable @inline(__always)
    func find(_ va: Vaddr, level: PagingLevel) -> TlbEntry? {
        let (first, tag) = Tlb.set(va, level: level)
        var way = 0
        while way < Tlb.ways {
            // SAFETY: `first + way` is an entry of `va`'s set (see the type).
            let entry = unsafe entries[first + way]
            if entry.tag == tag { return entry }
            way += 1
        }
        return nil
    }

    /// The entry of `level` that translates `va`, if its set holds one.
    @inlinable @inline(__always)
    func probe(_ va: Vaddr, level: PagingLevel) -> TlbTranslation? {
        guard let entry = find(va, level: level) else { return nil }
        let size = PagingConsts.pageSize(level)
        let offset = Int(va.rawValue & UInt64(size - 1))
        return TlbTranslation(
            paddr: Paddr(entry.value & ~UInt64(pageSize - 1)) + offset,
            bytesLeftInPage: size - offset,
            rights: PageRights(user: entry.value & TlbEntry.userBit != 0,
                               writable: entry.value & TlbEntry.writableBit != 0,
                               executable: entry.value & TlbEntry.executableBit != 0),
            dirty: entry.value & TlbEntry.dirtyBit != 0)
    }

    /// Caches the leaf that a page walk found for `va` (its page at `paddr`, of `level`, with the
    /// rights the walk grants and the leaf's dirty state), in a free way of its set or in place
    /// of the set's round-robin victim. A 4 KiB leaf, a fault's, is placed inline, with its set
    /// known at compile time; a huge one out of line (`fillHuge`).
    @inlinable @inline(__always)
    mutating func fill(_ va: Vaddr, paddr: Paddr, level: PagingLevel, rights: PageRights, dirty: Bool) {
        generation &+= 1
        var value = paddr.rawValue
        if rights.user { value |= TlbEntry.userBit }
        if rights.writable { value |= TlbEntry.writableBit }
        if rights.executable { value |= TlbEntry.executableBit }
        if dirty { value |= TlbEntry.dirtyBit }
        if level == 1 { place(va, level: 1, value: value) } else { fillHuge(va, level: level, value: value) }
    }

    /// `fill`'s placement of a leaf of level 2 or 3.
    @usableFromInline @inline(never)
    mutating func fillHuge(_ va: Vaddr, level: PagingLevel, value: UInt64) {
        hugeLevels |= 1 << (level &- 2)
        place(va, level: level, value: value)
    }

    /// Stores the entry `value` for `va` at `level` in a free way of its set, or in place of the
    /// set's round-robin victim.
    @inlinable @inline(__always)
    mutating func place(_ va: Vaddr, level: PagingLevel, value: UInt64) {
        let (first, tag) = Tlb.set(va, level: level)
        var target = -1
        // SAFETY: `first + way` is an entry of `va`'s set, `first / ways` that set's victim
        // counter, and the counter stays below `ways` (masked), so `target` is in the set too
        // (see the type).
        for way in 0..<Tlb.ways where unsafe entries[first &+ way].tag & 1 == 0 {
            target = first &+ way
            break
        }
        if target < 0 {
            // SAFETY: the set's victim counter (see above).
            let victim = unsafe victims + first / Tlb.ways
            target = unsafe first &+ Int(victim.pointee)
            // SAFETY: the same counter; masked, it stays below `ways`.
            unsafe victim.pointee = (victim.pointee &+ 1) & UInt8(Tlb.ways - 1)
        }
        // SAFETY: `target` is a free way of `va`'s set or its victim, an entry of that set (above).
        unsafe entries[target] = TlbEntry(tag: tag, value: value)
    }

    /// Invalidates every entry that translates `va`, whatever its size (`invlpg`).
    @inlinable
    mutating func flushPage(_ va: Vaddr) {
        statistics.pageFlushes += 1
        invalidate(va)
    }

    /// Drops the entries that translate `va` (what a faulting access does to its entry).
    @inlinable
    mutating func invalidate(_ va: Vaddr) {
        generation &+= 1
        for level in PagingLevel(1)...3 where level == 1 || hugeLevels & (1 << (level &- 2)) != 0 {
            let (first, tag) = Tlb.set(va, level: level)
            // SAFETY: `first + way` is an entry of `va`'s set at `level` (see the type).
            for way in 0..<Tlb.ways where unsafe entries[first + way].tag == tag { unsafe entries[first + way] = .invalid }
        }
    }

    /// Invalidates everything (a CR3 write without PCID; user entries are never global).
    @inlinable
    mutating func flushAll() {
        statistics.fullFlushes += 1
        generation &+= 1
        hugeLevels = 0
        // SAFETY: exactly the `entryCount` initialised entries.
        unsafe entries.update(repeating: .invalid, count: Tlb.entryCount)
    }

    /// Every valid entry, for audits: the page's virtual and physical base, its level, the
    /// rights and the dirty state cached with it.
    func validEntries() -> [TlbEntryInfo] {
        var result: [TlbEntryInfo] = []
        for level in PagingLevel(1)...3 {
            let first = Tlb.firstEntry(level)
            // SAFETY: `i` runs over `level`'s block of entries, inside the buffer (see the type).
            for i in first..<(first + Tlb.sets(level) * Tlb.ways) where unsafe entries[i].tag & 1 != 0 {
                let entry = unsafe entries[i]
                let va = Vaddr(signExtend((entry.tag >> 1) << PagingConsts.indexShift(level)))
                result.append(TlbEntryInfo(va: va, level: level, paddr: Paddr(entry.value & ~UInt64(pageSize - 1)),
                                           user: entry.value & TlbEntry.userBit != 0,
                                           writable: entry.value & TlbEntry.writableBit != 0,
                                           dirty: entry.value & TlbEntry.dirtyBit != 0))
            }
        }
        return result
    }

    /// Performs `op` on this TLB (OSTD `TlbFlushOp::perform_on_current`).
    @inlinable
    mutating func perform(_ op: TlbFlushOp) {
        guard let pages = op.pages else { return flushAll() }
        var va = pages.lowerBound
        while va < pages.upperBound {
            flushPage(va)
            va = va + pageSize
        }
    }
}

/// A cached translation, as an audit reads it.
public struct TlbEntryInfo: Equatable, Sendable {
    /// The first virtual address of the cached page.
    public var va: Vaddr
    /// The page's level (1: 4 KiB, 2: 2 MiB, 3: 1 GiB).
    public var level: PagingLevel
    /// The page's physical base.
    public var paddr: Paddr
    /// Whether the entry allows user-mode accesses.
    public var user: Bool
    /// Whether the entry allows writes.
    public var writable: Bool
    /// Whether the leaf was dirty when the entry was cached (a write through a clean entry walks
    /// again to set D).
    public var dirty = false
}
#endif

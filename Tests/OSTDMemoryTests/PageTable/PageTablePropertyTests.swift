// Random map / unmap / protect / query programs on a user page table, checked against a model.
//
// The model is what the table should translate: for every 4 KiB page of a 4 GiB window of virtual
// addresses, the physical page and the property it maps to, or nothing. It is a flat table
// indexed by page (a dictionary keyed by base-page VA, stored densely so that 1 GiB pages stay
// cheap), with per-2 MiB and per-1 GiB counts of mapped pages so that "is anything mapped in this
// range" and "first mapped page after here" cost little. Leaf levels are not modelled: the table
// may split huge pages as it likes, as long as every page translates as the model says.
//
// A program is a list of steps: map a 4 KiB frame, a 2 MiB or (rarely) a 1 GiB huge page at
// aligned addresses with `tryMap` (over a mapped slot too, where it must fail with the item
// handed back); unmap a range with `takeNext` and protect one with `protectNext` (huge pages
// covered in part are split); query and `findNext` scans; and runs of these with one cursor.
// Addresses and ranges are biased towards huge-page boundaries, and cursors are made on exactly
// the range worked on, on its enclosure, or on the whole window, so that cursors lock subtrees of
// every level. Every fragment, protected leaf, query and `findNext` result is checked on the spot.
//
// Every frame is mapped at most once and the test keeps no handle after mapping, so a mapped frame
// has exactly one reference (its leaf's) and an unmapped one is back in the allocator (or reused
// as a node or a later mapping's frame). After every step, with no cursor alive, the checks are:
// `pageWalk` on probed addresses agrees with the model; the view is well formed and holds exactly
// the model's pages; `structuralViolations()` is empty (every 8th step only while more than
// 256 MiB is mapped: it visits every frame of every leaf); reference counts agree with the model
// and `trackedMappingCounts()` (all frames while few are mapped, samples beyond); and, every 3rd
// step, the allocator's outstanding frames are the nodes plus the mapped frames (plus retired
// nodes). At the end everything is unmapped and only the root may remain.
//
// A failing program records the issue, stops, and records its trace (every step as performed,
// with addresses) beside the input and seed that `propertyCheck` prints (shrunk: the shrinker
// drops and simplifies steps while the program still fails).

import Testing
import PropertyBased
@testable import OSTDMemory
import OSTDHost
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite struct PageTablePropertyTests {
    /// Random programs on a user table of its own, in one of three 4 GiB windows: at 0, across
    /// the first two root entries (510 GiB), and at the top of user space.
    @Test func randomProgramsMatchTheModel() async {
        await propertyCheck(count: 40, input: Gen.int(in: 0...Int.max).array(of: 1...50), Gen.int(in: 0...Int.max)) {
            codes, config in
            var r = SplitMix64(config, salt: SplitMix64.pageTableSalt)
            let windowBase = r.pick(PTProgram.windowBases)
            let allowGiant = r.chance(15)
            let deferred = r.chance(25)
            let machine = makeMachine(memory: 3 << 30, audit: false)
            let table = try! PageTable<UserPtConfig>(empty: machine)
            table.defersReclamation = deferred
            let program = PTProgram(machine: machine, table: table, windowBase: windowBase, allowGiant: allowGiant,
                                    header: "window \(Vaddr(windowBase)), 1G pages \(allowGiant ? "on" : "off"), "
                                        + "deferred reclamation \(deferred ? "on" : "off")")
            program.run(codes)
            program.unmapEverything()
            program.finish(expectedNodes: 1, expectedFrames: 1)
        }
    }

    /// Random programs on a user table made by a kernel table, sharing its top-level entries, in
    /// the window just below the kernel half: unmapping everything leaves only the user root, and
    /// the kernel table is untouched.
    @Test func kernelSharedUserTable() async {
        await propertyCheck(count: 12, input: Gen.int(in: 0...Int.max).array(of: 1...40), Gen.int(in: 0...Int.max)) {
            codes, config in
            var r = SplitMix64(config, salt: SplitMix64.pageTableSalt)
            let windowBase = r.pick([PTProgram.windowBases[2], PTProgram.windowBases[2], PTProgram.windowBases[0]])
            let machine = makeMachine(memory: 3 << 30, audit: false)
            let kernel = try! PageTable.newKernelPageTable(machine: machine)
            let kernelFrames = machine.outstandingFrames   // the kernel root and its 256 level-3 nodes
            let kernelRoot = rootEntries(kernel.rootPaddr, machine)
            let user = try! kernel.createUserPageTable()
            #expect(Array(rootEntries(user.rootPaddr, machine)[256...]) == Array(kernelRoot[256...]))
            let program = PTProgram(machine: machine, table: user, windowBase: windowBase, allowGiant: false,
                                    header: "kernel-shared user table, window \(Vaddr(windowBase))",
                                    baselineFrames: kernelFrames)
            program.run(codes)
            program.unmapEverything()
            program.finish(expectedNodes: 1, expectedFrames: kernelFrames + 1)
            guard program.failures == 0 else { return }
            #expect(user.nodes().count == 1)
            // The kernel table is untouched: the same root entries, every shared level-3 node
            // still empty with its one reference, no violation. (`kernel.nodes()` and `view()`
            // walk 257 nodes: too slow in debug builds to run for every program.)
            #expect(rootEntries(kernel.rootPaddr, machine) == kernelRoot, "the kernel root changed")
            let zeroPage = [UInt8](repeating: 0, count: pageSize)
            for entry in kernelRoot[256...] {
                let node = Paddr(entry & PageTableEntry.childMask)
                #expect(memcmp(machine.pointer(to: node), zeroPage, pageSize) == 0, "kernel node \(node) has entries")
                #expect(machine.metaSlot(of: node).referenceCount == 1 && machine.metaSlot(of: node).usage == .pageTable,
                        "kernel node \(node): \(machine.metaSlot(of: node).status)")
            }
            #expect(kernel.structuralViolations() == [])
            #expect(Array(rootEntries(user.rootPaddr, machine)[256...]) == Array(kernelRoot[256...]),
                    "the user root's shared kernel entries changed")
            #expect(Array(rootEntries(user.rootPaddr, machine)[..<256]) == Array(repeating: 0, count: 256),
                    "the user root is not empty")
        }
    }

    /// The 512 raw entries of the root node at `paddr`.
    func rootEntries(_ paddr: Paddr, _ machine: Machine) -> [UInt64] {
        let entries = machine.pointer(to: paddr).assumingMemoryBound(to: UInt64.self)
        return (0..<512).map { entries[$0] }
    }
}

// MARK: - Sizes and formatting

private let size4K: UInt64 = 1 << 12
private let size2M: UInt64 = 1 << 21
private let size1G: UInt64 = 1 << 30

private func pageSizeOf(_ level: PagingLevel) -> UInt64 { UInt64(PagingConsts.pageSize(level)) }
private func alignDown(_ x: UInt64, _ a: UInt64) -> UInt64 { x & ~(a - 1) }
private func alignUp(_ x: UInt64, _ a: UInt64) -> UInt64 { (x + a - 1) & ~(a - 1) }
private func hex(_ r: Range<UInt64>) -> String { hex(r.lowerBound) + "..<" + hex(r.upperBound) }
private func vrange(_ r: Range<UInt64>) -> Range<Vaddr> { Vaddr(r.lowerBound)..<Vaddr(r.upperBound) }

// MARK: - The model

/// What the table should map in a 4 GiB window: page VA -> (frame, property).
private final class PageModel {
    static let windowSize: UInt64 = 4 << 30
    static let pageCount = Int(windowSize >> 12)

    let base: UInt64
    /// Per page: 0 when unmapped, else the frame's address with the encoded property in bits 0-11.
    /// Zero-filled by `calloc`, so an untouched window costs nothing.
    private let pages: UnsafeMutablePointer<UInt64>
    /// Mapped pages per 2 MiB and per 1 GiB of the window.
    private var count2M: [Int]
    private var count1G: [Int]
    private(set) var count = 0

    init(base: UInt64) {
        self.base = base
        pages = calloc(PageModel.pageCount, MemoryLayout<UInt64>.stride)!.assumingMemoryBound(to: UInt64.self)
        count2M = Array(repeating: 0, count: PageModel.pageCount >> 9)
        count1G = Array(repeating: 0, count: PageModel.pageCount >> 18)
    }

    deinit { free(pages) }

    var window: Range<UInt64> { base..<(base + PageModel.windowSize) }

    static func encode(_ p: PageProperty) -> UInt64 {
        UInt64(p.flags.rawValue) | UInt64(p.cache.rawValue) << 8 | UInt64(p.privilegedFlags.rawValue) << 10
    }

    static func decode(_ bits: UInt64) -> PageProperty {
        PageProperty(flags: PageFlags(rawValue: UInt8(bits & 0xff)), cache: CachePolicy(rawValue: UInt8((bits >> 8) & 3))!,
                     privilegedFlags: PrivilegedPageFlags(rawValue: UInt8((bits >> 10) & 3)))
    }

    private func index(_ va: UInt64) -> Int {
        precondition(window.contains(va), "model: \(hex(va)) outside the window")
        return Int((va - base) >> 12)
    }

    /// The frame and property the page at `va` maps to.
    subscript(va: UInt64) -> (pa: UInt64, prop: PageProperty)? {
        guard va >= base && va - base < PageModel.windowSize else { return nil }
        let raw = pages[Int((va - base) >> 12)]
        return raw == 0 ? nil : (raw & ~0xfff, PageModel.decode(raw & 0xfff))
    }

    /// Maps the `n` pages from `va` to the frames from `pa`.
    func map(_ va: UInt64, _ pa: UInt64, pages n: Int, _ prop: PageProperty) {
        let first = index(va)
        precondition(first + n <= PageModel.pageCount && pa != 0)
        let bits = PageModel.encode(prop)
        for k in 0..<n {
            precondition(pages[first + k] == 0, "model: mapping over \(hex(va + UInt64(k) << 12))")
            pages[first + k] = (pa + UInt64(k) << 12) | bits
        }
        var i = first
        while i < first + n {
            let run = min(first + n, (i >> 9 + 1) << 9) - i
            count2M[i >> 9] += run
            count1G[i >> 18] += run
            i += run
        }
        count += n
    }

    /// Unmaps every page of `range`; returns the frames they mapped (the first 1024).
    @discardableResult
    func unmap(_ range: Range<UInt64>) -> [UInt64] {
        var frames: [UInt64] = []
        scan(range) { i in
            if frames.count < 1024 { frames.append(pages[i] & ~0xfff) }
            pages[i] = 0
            count2M[i >> 9] -= 1
            count1G[i >> 18] -= 1
            count -= 1
            return true
        }
        return frames
    }

    /// Applies `op` to the property of every mapped page of `range`.
    func update(_ range: Range<UInt64>, _ op: (inout PageProperty) -> Void) {
        var lastBits: UInt64 = .max, lastNew: UInt64 = 0
        scan(range) { i in
            let bits = pages[i] & 0xfff
            if bits != lastBits {
                var prop = PageModel.decode(bits)
                op(&prop)
                lastBits = bits
                lastNew = PageModel.encode(prop)
            }
            pages[i] = pages[i] & ~0xfff | lastNew
            return true
        }
    }

    /// The page indices of `range` (clipped to the window).
    private func indices(_ range: Range<UInt64>) -> Range<Int> {
        let low = max(range.lowerBound, base)
        let high = min(range.upperBound, base + PageModel.windowSize)
        guard low < high else { return 0..<0 }
        return Int((low - base) >> 12)..<Int((high - base + 0xfff) >> 12)
    }

    /// Visits the mapped pages of `range` in order, skipping empty 1 GiB and 2 MiB regions, until
    /// `body` returns false. Whole regions are handed to `whole` when given (for counting).
    private func scan(_ range: Range<UInt64>, whole: ((Int) -> Void)? = nil, _ body: (Int) -> Bool) {
        let r = indices(range)
        var i = r.lowerBound
        while i < r.upperBound {
            if let whole, i & 0x3ffff == 0, i + 0x40000 <= r.upperBound {
                whole(count1G[i >> 18]); i += 0x40000; continue
            }
            if count1G[i >> 18] == 0 { i = min(r.upperBound, (i >> 18 + 1) << 18); continue }
            if let whole, i & 0x1ff == 0, i + 0x200 <= r.upperBound {
                whole(count2M[i >> 9]); i += 0x200; continue
            }
            if count2M[i >> 9] == 0 { i = min(r.upperBound, (i >> 9 + 1) << 9); continue }
            if pages[i] != 0 && !body(i) { return }
            i += 1
        }
    }

    /// The number of mapped pages in `range`.
    func mappedCount(in range: Range<UInt64>) -> Int {
        var n = 0
        scan(range, whole: { n += $0 }) { _ in n += 1; return true }
        return n
    }

    /// The first mapped page in `range`.
    func firstMapped(in range: Range<UInt64>) -> UInt64? {
        var found: UInt64?
        scan(range) { found = base + UInt64($0) << 12; return false }
        return found
    }

    /// The mapped pages of `range`, in order.
    func mappedPages(in range: Range<UInt64>, limit: Int = .max) -> [UInt64] {
        var result: [UInt64] = []
        scan(range) { result.append(base + UInt64($0) << 12); return result.count < limit }
        return result
    }
}

/// A unit of frames the test allocated and mapped: a frame or a huge page's segment, mapped at
/// `va` (frame i at `va + i * 4K`) until every page of it is unmapped.
private struct FrameUnit {
    var va: UInt64
    var pa: UInt64
    var frames: Int
    var vaRange: Range<UInt64> { va..<(va + UInt64(frames) << 12) }
}

/// What a protect step does to each leaf's property.
private enum ProtectOp: CustomStringConvertible {
    case toggle(PageFlags)
    case cache(CachePolicy)
    case toggleGlobal
    /// Sets `AVAIL1`, the table's tracked marker: the table must undo it.
    case setAvail1

    func apply(_ p: inout PageProperty) {
        switch self {
        case .toggle(let f): p.flags.formSymmetricDifference(f)
        case .cache(let c): p.cache = c
        case .toggleGlobal: p.privilegedFlags.formSymmetricDifference(.global)
        case .setAvail1: p.flags.insert(.avail1)
        }
    }

    var description: String {
        switch self {
        case .toggle(let f): return "toggle flags 0x\(String(f.rawValue, radix: 16))"
        case .cache(let c): return "cache \(c)"
        case .toggleGlobal: return "toggle global"
        case .setAvail1: return "set AVAIL1"
        }
    }
}

/// A read-only view of both cursor kinds, so that query and scan steps use either.
private protocol ReadingCursor: ~Copyable {
    var virtAddr: Vaddr { get }
    mutating func query() throws(PageTableError) -> (range: Range<Vaddr>, item: MappedItemRef?)
    mutating func findNext(_ len: Int) -> Vaddr?
    mutating func jump(_ va: Vaddr) throws(PageTableError)
}

extension Cursor: ReadingCursor {}
extension CursorMut: ReadingCursor {}

// MARK: - A program

/// One random program on one table, with its model and its checks.
private final class PTProgram {
    /// Window bases: 0; 510 GiB, so that the window crosses from root entry 0 to 1; the top 4 GiB of
    /// user space (root entry 255, next to the kernel half).
    static let windowBases: [UInt64] = [0, 510 << 30, (1 << 47) - (4 << 30)]

    let machine: Machine
    let table: PageTable<UserPtConfig>
    let allowGiant: Bool
    let header: String
    /// Frames outstanding before the program (a kernel table's nodes).
    let baselineFrames: Int
    let model: PageModel
    var units: [FrameUnit] = []
    /// The steps performed so far, as text.
    var trace: [String] = []
    var failures = 0
    /// Addresses the current step touched, probed after it.
    var probes: [UInt64] = []
    /// The generator of the current step's incidental choices.
    var r = SplitMix64(0, salt: SplitMix64.pageTableSalt)

    init(machine: Machine, table: PageTable<UserPtConfig>, windowBase: UInt64, allowGiant: Bool, header: String,
         baselineFrames: Int = 0) {
        self.machine = machine
        self.table = table
        self.allowGiant = allowGiant
        self.header = header
        self.baselineFrames = baselineFrames
        model = PageModel(base: windowBase)
    }

    var window: Range<UInt64> { model.window }

    // MARK: Checking

    func check(_ ok: Bool, _ message: @autoclosure () -> String, sourceLocation: SourceLocation = #_sourceLocation) {
        guard !ok else { return }
        failures += 1
        if failures <= 10 {
            Issue.record("step \(trace.count - 1) [\(trace.last ?? "")]: \(message())", sourceLocation: sourceLocation)
        }
    }

    func recordTrace() {
        let steps = trace.enumerated().map { "  \($0.offset): \($0.element)" }.joined(separator: "\n")
        Issue.record("failing program (\(header)):\n\(steps)")
    }

    // MARK: Running

    /// Runs the steps, checking after each; stops at the first failing step.
    func run(_ codes: [Int]) {
        for code in codes {
            r = SplitMix64(code, salt: SplitMix64.pageTableSalt)
            probes = []
            do throws(PageTableError) {
                try step()
            } catch {
                check(false, "unexpected error \(error)")
            }
            if failures == 0 { verify() }
            if failures > 0 { recordTrace(); return }
        }
    }

    func step() throws(PageTableError) {
        let kind = r.below(100)
        switch kind {
        case 0..<22: try map(level: 1, va: address(align: size4K))
        case 22..<34: try map(level: 2, va: address(align: size2M))
        case 34..<37 where allowGiant: try map(level: 3, va: address(align: size1G))
        case 34..<42: try mapOverMapped()
        case 42..<58: try unmap()
        case 58..<72: try protect()
        case 72..<80: try query()
        case 80..<87: try scan()
        case 87..<98: try batch()
        default:
            trace.append("reclaim retired nodes")
            let retired = table.retiredCount
            check(table.reclaimRetired() == retired, "reclaimRetired freed a different number than retiredCount")
            check(table.retiredCount == 0, "retired nodes left after reclaimRetired")
        }
    }

    // MARK: Random addresses and ranges

    /// An address of the window aligned to `align`, biased towards 1 GiB and 2 MiB boundaries and
    /// the first two gigabytes, so that steps meet and split each other's pages.
    func address(align: UInt64) -> UInt64 {
        let gig = UInt64(r.pick([0, 0, 0, 1, 1, 2, 3]))
        let mid = r.chance(65) ? UInt64(r.pick([0, 1, 2, 3, 255, 256, 510, 511])) : UInt64(r.below(512))
        let low = r.chance(55) ? UInt64(r.pick([0, 1, 2, 255, 510, 511])) : UInt64(r.below(512))
        return alignDown(window.lowerBound + gig << 30 + mid << 21 + low << 12, align)
    }

    /// A non-empty page-aligned range of the window, biased to start or end on huge-page
    /// boundaries and to cover huge pages in part.
    func range() -> Range<UInt64> {
        var start = address(align: size4K)
        var end: UInt64
        switch r.below(6) {
        case 0:
            end = address(align: size4K)
            if end < start { swap(&start, &end) }
        case 1:
            end = start + UInt64(r.pick([1, 1, 2, 3, 511, 512, 513])) * size4K
        case 2:
            start = alignDown(start, size2M)
            if r.chance(50) { start += UInt64(r.below(3)) * size4K }
            end = start + UInt64(1 + r.below(3)) * size2M
            if r.chance(50) { end -= UInt64(r.below(3)) * size4K }
        case 3:
            start = alignDown(start, size1G) + UInt64(r.pick([0, 0, 1, 511])) * size2M
            end = start + size1G
            if r.chance(50) { end -= UInt64(r.pick([1, 512])) * size4K }
        case 4:
            end = start + UInt64(1 + r.below(1 << 19)) * size4K
        default:
            end = r.chance(50) ? window.upperBound : alignUp(start + 1, size1G)
        }
        end = min(end, window.upperBound)
        if end <= start { end = start + size4K }
        return start..<end
    }

    /// The cursor range for working on `range`: exactly it, the window, or its 2 MiB enclosure.
    func barrier(for range: Range<UInt64>) -> Range<UInt64> {
        switch r.below(5) {
        case 0: return window
        case 1: return alignDown(range.lowerBound, size2M)..<min(alignUp(range.upperBound, size2M), window.upperBound)
        default: return range
        }
    }

    func describe(_ barrier: Range<UInt64>, of range: Range<UInt64>) -> String {
        barrier == range ? "cursor on the range" : "cursor on \(hex(barrier))"
    }

    /// A random user property (never `AVAIL1`, which belongs to the table).
    func property() -> PageProperty {
        let flags = PageFlags(rawValue: UInt8(r.below(256)) & 0x9f)   // R W X A D AVAIL2: no AVAIL1, no bit 5
        var prop = PageProperty.user(flags, cache: r.pick(CachePolicy.allCases))
        if r.chance(20) { prop.privilegedFlags.insert(.global) }
        return prop
    }

    // MARK: Map

    /// Maps a fresh frame (or huge page) at `va` with a cursor of its own: on its exact range, on
    /// the enclosing block of the next level, or on the window.
    func map(level: PagingLevel, va: UInt64, untracked: Bool = false) throws(PageTableError) {
        let size = pageSizeOf(level)
        let target = va..<(va + size)
        let barrier: Range<UInt64>
        switch r.below(10) {
        case 0..<3: barrier = window
        case 3..<5 where level >= 2: barrier = target
        case 3..<6 where level == 1: barrier = target
        default:
            let block = alignDown(va, size << 9)
            barrier = max(block, window.lowerBound)..<min(block + size << 9, window.upperBound)
        }
        trace.append("map \(["4K", "2M", "1G"][Int(level) - 1])\(untracked ? " untracked" : "") at \(hex(va)), "
                     + describe(barrier, of: target))
        var cursor = try table.cursorMut(vrange(barrier))
        // The cursor locks the smallest subtree covering its range, but not below an absent entry
        // it covers exactly: it can always map a page where nothing is mapped.
        check(model.mappedCount(in: target) > 0 || cursor.lockedLevel >= level,
              "a cursor on \(hex(barrier)) locked level \(cursor.lockedLevel): too low to map a level-\(level) page")
        try mapWith(&cursor, level: level, va: va, untracked: untracked)
    }

    /// Maps a fresh frame (or huge page) at `va` with `cursor`: succeeds iff nothing in its range
    /// is mapped and the cursor's locked subtree reaches the level; otherwise the item comes back
    /// with the reason and nothing changes.
    func mapWith(_ cursor: inout CursorMut<UserPtConfig>, level: PagingLevel, va: UInt64,
                 untracked: Bool) throws(PageTableError) {
        let size = pageSizeOf(level)
        let target = va..<(va + size)
        let prop = property()
        let item: MappedItem
        let pa: UInt64
        if untracked {
            pa = alignUp(UInt64(machine.memorySize), size)   // never dereferenced: the map must fail
            item = MappedItem(untracked: Paddr(pa), level: level, property: prop)
        } else if level == 1 {
            do {
                let frame = try FrameAllocOptions().zeroed(false).allocFrame(in: machine)
                pa = frame.paddr.rawValue
                item = MappedItem(frame: frame, property: prop)
            } catch {
                trace[trace.count - 1] += " (no memory, skipped)"
                return
            }
        } else {
            do {
                let segment = try FrameAllocOptions().zeroed(false).allocSegment(Int(size >> 12), in: machine)
                pa = segment.paddr.rawValue
                item = MappedItem(hugePage: segment, property: prop)
            } catch {
                trace[trace.count - 1] += " (no memory, skipped)"
                return
            }
        }
        trace[trace.count - 1] += " [\(hex(pa)) \(prop)]"
        probes += [va, va + size - size4K, va + size, va &- size4K]

        let occupied = model.mappedCount(in: target) > 0
        let tooHigh = level > cursor.lockedLevel
        if cursor.virtAddr.rawValue != va { try cursor.jump(Vaddr(va)) }
        let result = cursor.tryMap(item)
        switch consume result {
        case .none:
            check(!occupied, "tryMap succeeded over \(model.mappedCount(in: target)) mapped pages")
            check(!tooHigh, "tryMap mapped a level-\(level) page with a cursor locking level \(cursor.lockedLevel)")
            check(cursor.virtAddr.rawValue == va + size, "after map the cursor is at \(cursor.virtAddr)")
            if failures == 0 && !untracked {
                model.map(va, pa, pages: Int(size >> 12), prop)
                units.append(FrameUnit(va: va, pa: pa, frames: Int(size >> 12)))
            }
        case .some(let failure):
            let error = failure.error
            let expected: PageTableError? = tooHigh ? .unsuitableLevel(level) : occupied ? .alreadyMapped(Vaddr(va)) : nil
            check(error == expected, "tryMap failed with \(error), expected \(expected.map { "\($0)" } ?? "success")")
            let back = failure.item.info
            check(back == MappedItemRef(paddr: Paddr(pa), level: level, property: prop, isTracked: !untracked),
                  "tryMap handed back \(back)")
            _ = consume failure   // drops the item: its frames go back to the allocator
            if !untracked { checkFree(pa: pa, frames: Int(size >> 12), "a refused item's frames") }
        }
    }

    /// Tries to map over a mapped page: at its 4K, 2M or 1G slot (the 1G attempt with an
    /// untracked item, so as not to allocate a gigabyte for a failure).
    func mapOverMapped() throws(PageTableError) {
        let from = address(align: size4K)
        guard let page = model.firstMapped(in: from..<window.upperBound) ?? model.firstMapped(in: window) else {
            try map(level: 1, va: address(align: size4K))
            return
        }
        let level = PagingLevel(r.pick([1, 1, 2, 2, 3]))
        try map(level: level, va: alignDown(page, pageSizeOf(level)), untracked: level == 3)
    }

    // MARK: Unmap

    /// Takes everything in a random range: leaves and whole subtrees, splitting huge pages covered
    /// in part, and drops each fragment at once.
    func unmap() throws(PageTableError) {
        let range = range()
        let barrier = barrier(for: range)
        trace.append("unmap \(hex(range)), \(describe(barrier, of: range))")
        try unmap(range, barrier: barrier)
    }

    func unmap(_ range: Range<UInt64>, barrier: Range<UInt64>) throws(PageTableError) {
        var cursor = try table.cursorMut(vrange(barrier))
        try takeAll(&cursor, range, barrier: barrier)
    }

    /// Takes everything in `range` with `cursor` (whose range is `barrier`), checking each
    /// fragment against the model and dropping it.
    func takeAll(_ cursor: inout CursorMut<UserPtConfig>, _ range: Range<UInt64>,
                 barrier: Range<UInt64>) throws(PageTableError) {
        probes += [range.lowerBound, range.upperBound - size4K, range.upperBound, range.lowerBound &- size4K]
        if cursor.virtAddr.rawValue != range.lowerBound { try cursor.jump(Vaddr(range.lowerBound)) }
        var position = range.lowerBound
        while failures == 0 {
            let at = cursor.virtAddr.rawValue
            guard at >= position && at <= range.upperBound else {
                check(false, "after takeNext the cursor is at \(hex(at)), outside \(hex(position))...\(hex(range.upperBound))"
                      + " (the cursor's range is \(hex(barrier)))")
                break
            }
            guard let frag = cursor.takeNext(Int(range.upperBound - at)) else {
                checkStopped(cursor.virtAddr, end: range.upperBound, barrier: barrier, "takeNext")
                break
            }
            let expected = model.firstMapped(in: position..<range.upperBound)
            switch consume frag {
            case .mapped(let va, let item):
                let info = item.info
                let leaf = va.rawValue..<(va.rawValue + UInt64(info.size))
                check(leaf.lowerBound >= position && leaf.upperBound <= range.upperBound && va.isAligned(to: info.size),
                      "takeNext returned the leaf \(hex(leaf)) \(info) from \(hex(position))..<\(hex(range.upperBound))")
                check(expected == leaf.lowerBound, "takeNext returned the leaf at \(va), the first mapped page is "
                      + "\(expected.map(hex) ?? "none")")
                checkLeaf(info, at: leaf.lowerBound, "taken leaf")
                check(info.isTracked, "taken leaf \(info) is untracked")
                check(machine.metaSlot(of: info.paddr).referenceCount == 1,
                      "the frame of a taken leaf has \(machine.metaSlot(of: info.paddr).referenceCount) references")
                _ = consume item
                if failures > 0 { break }
                model.unmap(leaf)
                checkFree(pa: info.paddr.rawValue, frames: info.size >> 12, "the frames of a dropped leaf")
                position = leaf.upperBound
            case .strayPageTable(let node, let va, let len, let numFrames):
                let span = va.rawValue..<(va.rawValue + UInt64(len))
                let inside = model.mappedCount(in: span)
                check(span.lowerBound >= position && span.upperBound <= range.upperBound && va.isAligned(to: len),
                      "takeNext returned the subtree \(hex(span)) from \(hex(position))..<\(hex(range.upperBound))")
                check(expected.map { span.contains($0) } == true, "takeNext returned the subtree \(hex(span)), the "
                      + "first mapped page is \(expected.map(hex) ?? "none")")
                check(node.isStray, "a taken subtree is not marked stray")
                check(PagingConsts.pageSize(node.level + 1) == len, "a taken subtree of level \(node.level) covers \(len)")
                check(node.nrChildren > 0, "a taken subtree is empty")
                check(numFrames >= 1 && numFrames <= inside, "a taken subtree has \(numFrames) leaves, "
                      + "the model \(inside) pages there")
                _ = consume node   // tears the subtree down
                if failures > 0 { break }
                let frames = model.unmap(span)
                for pa in frames { checkFree(pa: pa, frames: 1, "the frames of a dropped subtree") }
                position = span.upperBound
            }
        }
        check(model.mappedCount(in: range) == 0, "\(model.mappedCount(in: range)) pages of the range were not taken, "
              + "the first at \(model.firstMapped(in: range).map(hex) ?? "?")")
    }

    /// Unmaps the whole window, then checks everything is back.
    func unmapEverything() {
        guard failures == 0 else { return }
        trace.append("unmap the whole window")
        do throws(PageTableError) {
            try unmap(window, barrier: window)
        } catch {
            check(false, "unexpected error \(error)")
        }
        if failures == 0 { verify() }
        if failures > 0 { recordTrace() }
    }

    /// The end state: `expectedNodes` nodes, `expectedFrames` frames outstanding, every frame the
    /// program used back in the allocator.
    func finish(expectedNodes: Int, expectedFrames: Int) {
        guard failures == 0 else { return }
        table.reclaimRetired()
        check(model.count == 0, "the model still has \(model.count) pages")
        check(table.view().mappings.isEmpty, "mappings are left: \(table.view().mappings.prefix(4))")
        check(table.nodes().count == expectedNodes, "\(table.nodes().count) nodes are left: \(table.nodes().prefix(6))")
        check(machine.outstandingFrames == expectedFrames,
              "\(machine.outstandingFrames) frames outstanding, expected \(expectedFrames)")
        check(table.structuralViolations() == [], "\(table.structuralViolations())")
        for unit in units { checkFree(pa: unit.pa, frames: unit.frames, "the frames of \(hex(unit.vaRange))") }
        if failures > 0 { recordTrace() }
    }

    // MARK: Protect

    /// Applies an operation to every leaf in a random range, splitting huge pages covered in part.
    func protect() throws(PageTableError) {
        let range = range()
        let barrier = barrier(for: range)
        let op = protectOp()
        trace.append("protect \(hex(range)) \(op), \(describe(barrier, of: range))")
        var cursor = try table.cursorMut(vrange(barrier))
        try protectAll(&cursor, range, op, barrier: barrier)
    }

    func protectOp() -> ProtectOp {
        switch r.below(10) {
        case 0..<3: return .toggle(.w)
        case 3..<5: return .toggle(.x)
        case 5: return .toggle(.r)
        case 6: return .toggle([.avail2, .dirty])
        case 7: return .cache(r.pick(CachePolicy.allCases))
        case 8: return .toggleGlobal
        default: return .setAvail1
        }
    }

    /// Protects every leaf in `range` with `cursor` (whose range is `barrier`), checking each
    /// against the model.
    func protectAll(_ cursor: inout CursorMut<UserPtConfig>, _ range: Range<UInt64>, _ op: ProtectOp,
                    barrier: Range<UInt64>) throws(PageTableError) {
        probes += [range.lowerBound, range.upperBound - size4K, range.upperBound, range.lowerBound &- size4K]
        if cursor.virtAddr.rawValue != range.lowerBound { try cursor.jump(Vaddr(range.lowerBound)) }
        var position = range.lowerBound
        var leaves = 0
        while failures == 0 && leaves < 1 << 20 {
            let at = cursor.virtAddr.rawValue
            guard at >= position && at <= range.upperBound else {
                check(false, "the cursor is at \(hex(at)), outside \(hex(position))..<\(hex(range.upperBound))")
                break
            }
            guard let done = cursor.protectNext(Int(range.upperBound - at), { op.apply(&$0) }) else {
                checkStopped(cursor.virtAddr, end: range.upperBound, barrier: barrier, "protectNext")
                break
            }
            leaves += 1
            let leaf = done.lowerBound.rawValue..<done.upperBound.rawValue
            let size = leaf.upperBound - leaf.lowerBound
            let expected = model.firstMapped(in: position..<range.upperBound)
            check([size4K, size2M, size1G].contains(size) && leaf.lowerBound % size == 0,
                  "protectNext returned \(hex(leaf)), not a page")
            check(leaf.lowerBound >= position && leaf.upperBound <= range.upperBound,
                  "protectNext returned \(hex(leaf)) from \(hex(position))..<\(hex(range.upperBound))")
            check(expected == leaf.lowerBound, "protectNext returned \(hex(leaf)), the first mapped page is "
                  + "\(expected.map(hex) ?? "none")")
            check(model.mappedCount(in: leaf) == Int(size >> 12), "protectNext returned \(hex(leaf)), where the "
                  + "model maps \(model.mappedCount(in: leaf)) pages")
            if failures > 0 { break }
            model.update(leaf) { prop in
                op.apply(&prop)
                prop.flags.remove(.avail1)
            }
            position = leaf.upperBound
        }
        check(model.firstMapped(in: position..<range.upperBound) == nil,
              "protectNext skipped \(model.firstMapped(in: position..<range.upperBound).map(hex) ?? "")")
    }

    // MARK: Several operations with one cursor

    /// Maps, unmaps, protects and queries with one cursor, jumping between the operations: the
    /// cursor's position and path must stay right after each (splits, removed subtrees, nodes
    /// emptied and re-filled while it is alive).
    func batch() throws(PageTableError) {
        let barrier = r.chance(40) ? window : range()
        var cursor = try table.cursorMut(vrange(barrier))
        trace.append("one cursor on \(hex(barrier)) (locked level \(cursor.lockedLevel)):")
        for _ in 0..<(2 + r.below(4)) where failures == 0 {
            switch r.below(8) {
            case 0..<3:
                let level: PagingLevel = r.chance(25) ? 2 : 1
                let size = pageSizeOf(level)
                let low = alignUp(barrier.lowerBound, size), high = alignDown(barrier.upperBound, size)
                guard low < high else { continue }
                var va = address(align: size)
                if !(low..<high).contains(va) {
                    let slots = Int((high - low) / size)
                    va = low + UInt64(r.pick([0, slots - 1, r.below(slots)])) * size
                }
                trace[trace.count - 1] += "\n     map \(level == 1 ? "4K" : "2M") at \(hex(va))"
                try mapWith(&cursor, level: level, va: va, untracked: false)
            case 3..<5:
                let sub = subrange(of: barrier)
                trace[trace.count - 1] += "\n     unmap \(hex(sub))"
                try takeAll(&cursor, sub, barrier: barrier)
            case 5..<7:
                let sub = subrange(of: barrier)
                let op = protectOp()
                trace[trace.count - 1] += "\n     protect \(hex(sub)) \(op)"
                try protectAll(&cursor, sub, op, barrier: barrier)
            default:
                let sub = subrange(of: barrier)
                let va = r.chance(50) ? sub.lowerBound : model.firstMapped(in: sub) ?? sub.lowerBound
                trace[trace.count - 1] += "\n     query \(hex(va))"
                probes.append(va)
                try queryAt(va, &cursor)
            }
        }
    }

    /// A random non-empty page-aligned range inside `outer`.
    func subrange(of outer: Range<UInt64>) -> Range<UInt64> {
        let candidate = range()
        let low = max(candidate.lowerBound, outer.lowerBound), high = min(candidate.upperBound, outer.upperBound)
        if low < high { return low..<high }
        let start = r.chance(50) ? outer.lowerBound : alignDown(outer.upperBound - 1, size4K)
        return start..<min(start + UInt64(1 + r.below(600)) << 12, outer.upperBound)
    }

    // MARK: Query and findNext

    /// Queries a few addresses, each with its own cursor (read-only or mutable).
    func query() throws(PageTableError) {
        let count = 1 + r.below(4)
        let readOnly = r.chance(50)
        trace.append("query \(count) addresses with \(readOnly ? "read-only" : "mutable") cursors")
        for _ in 0..<count {
            let va = r.chance(50) ? address(align: size4K)
                : model.firstMapped(in: address(align: size4K)..<window.upperBound) ?? address(align: size4K)
            let barrier = barrier(for: va..<(va + size4K))
            trace[trace.count - 1] += "; \(hex(va)) (\(describe(barrier, of: va..<(va + size4K))))"
            probes.append(va)
            if readOnly {
                var cursor = try table.cursor(vrange(barrier))
                try queryAt(va, &cursor)
            } else {
                var cursor = try table.cursorMut(vrange(barrier))
                try queryAt(va, &cursor)
            }
        }
    }

    func queryAt<Cur: ReadingCursor & ~Copyable>(_ va: UInt64, _ cursor: inout Cur) throws(PageTableError) {
        if cursor.virtAddr.rawValue != va { try cursor.jump(Vaddr(va)) }
        let (slot, item) = try cursor.query()
        let range = slot.lowerBound.rawValue..<slot.upperBound.rawValue
        check(range.contains(va), "query at \(hex(va)) returned the slot \(hex(range))")
        if let item {
            checkLeaf(item, at: range.lowerBound, "query at \(hex(va))")
            check(UInt64(item.size) == range.upperBound - range.lowerBound,
                  "query at \(hex(va)) returned a \(item.size)-byte leaf for the slot \(hex(range))")
        } else {
            check(model.mappedCount(in: range) == 0, "query at \(hex(va)) found \(hex(range)) absent, the model maps "
                  + "\(model.mappedCount(in: range)) pages there (the first at \(model.firstMapped(in: range).map(hex) ?? ""))")
        }
        check(cursor.virtAddr.rawValue == va, "query moved the cursor from \(hex(va)) to \(cursor.virtAddr)")
    }

    /// Walks a random range with findNext, querying each leaf found and jumping past it.
    func scan() throws(PageTableError) {
        let range = range()
        let barrier = barrier(for: range)
        let readOnly = r.chance(50)
        trace.append("scan \(hex(range)) with findNext, \(readOnly ? "read-only" : "mutable") \(describe(barrier, of: range))")
        probes += [range.lowerBound, range.upperBound - size4K]
        if readOnly {
            var cursor = try table.cursor(vrange(barrier))
            try scan(range, barrier: barrier, &cursor)
        } else {
            var cursor = try table.cursorMut(vrange(barrier))
            try scan(range, barrier: barrier, &cursor)
        }
    }

    func scan<Cur: ReadingCursor & ~Copyable>(_ range: Range<UInt64>, barrier: Range<UInt64>,
                                              _ cursor: inout Cur) throws(PageTableError) {
        if cursor.virtAddr.rawValue != range.lowerBound { try cursor.jump(Vaddr(range.lowerBound)) }
        for _ in 0..<48 where failures == 0 {
            let at = cursor.virtAddr.rawValue
            guard at <= range.upperBound else { check(false, "the cursor is at \(hex(at)), past the range"); return }
            let expected = model.firstMapped(in: at..<range.upperBound)
            let found = cursor.findNext(Int(range.upperBound - at))
            check(found?.rawValue == expected, "findNext from \(hex(at)) found \(found.map { "\($0)" } ?? "nothing"), "
                  + "the model's first mapped page is \(expected.map(hex) ?? "none")")
            guard let found else {
                checkStopped(cursor.virtAddr, end: range.upperBound, barrier: barrier, "findNext")
                return
            }
            check(cursor.virtAddr == found, "findNext returned \(found) but the cursor is at \(cursor.virtAddr)")
            probes.append(found.rawValue)
            let (slot, item) = try cursor.query()
            guard let item else { check(false, "findNext stopped at \(found), where query finds nothing"); return }
            checkLeaf(item, at: slot.lowerBound.rawValue, "query after findNext at \(found)")
            let next = min(slot.upperBound.rawValue, range.upperBound)
            if next == range.upperBound { return }
            try cursor.jump(Vaddr(next))
        }
    }

    // MARK: Checks

    /// Where a `findNext`, `takeNext` or `protectNext` that found nothing left the cursor.
    func checkStopped(_ va: Vaddr, end: UInt64, barrier: Range<UInt64>, _ what: String) {
        check(va.rawValue == end, "after a \(what) that found nothing the cursor is at \(va), not at \(hex(end))")
    }

    /// A leaf reported at `va` maps, for each of its pages, what the model does (the first, last
    /// and a random page are compared; the count shows every page is mapped).
    func checkLeaf(_ leaf: MappedItemRef, at va: UInt64, _ what: String) {
        let size = UInt64(leaf.size)
        let span = va..<(va + size)
        check((1...3).contains(leaf.level) && va % size == 0 && leaf.paddr.rawValue % size == 0,
              "\(what): the leaf \(hex(span)) -> \(leaf) is not aligned")
        let page = model[va]
        check(page?.pa == leaf.paddr.rawValue && page?.prop == leaf.property,
              "\(what): the leaf \(hex(span)) -> \(leaf) maps \(hex(va)) to \(leaf.paddr) \(leaf.property), the model to "
              + "\(page.map { "\(hex($0.pa)) \($0.prop)" } ?? "nothing")")
        guard size > size4K else { return }
        check(model.mappedCount(in: span) == Int(size >> 12), "\(what): the leaf \(hex(span)) -> \(leaf), the model "
              + "maps \(model.mappedCount(in: span)) pages there")
        for offset in [size - size4K, UInt64(r.below(Int(size >> 12))) << 12] {
            guard let page = model[va + offset] else { continue }
            check(page.pa == leaf.paddr.rawValue + offset && page.prop == leaf.property,
                  "\(what): the leaf \(hex(span)) -> \(leaf) maps \(hex(va + offset)) to "
                  + "\(hex(leaf.paddr.rawValue + offset)) \(leaf.property), the model to \(hex(page.pa)) \(page.prop)")
        }
    }

    /// The frames `pa ..< pa + frames * 4K` (sampled beyond 512) are free.
    func checkFree(pa: UInt64, frames: Int, _ what: String) {
        let indices = frames <= 512 ? Array(0..<frames) : [0, 1, frames - 1] + (0..<16).map { _ in r.below(frames) }
        for i in indices {
            let slot = machine.metaSlot(of: Paddr(pa + UInt64(i) << 12))
            check(slot.isFree, "\(what): frame \(hex(pa + UInt64(i) << 12)) is not free: \(slot.status), "
                  + "\(slot.referenceCount) references")
            if !slot.isFree { return }
        }
    }

    /// The checks after every step (no cursor alive).
    func verify() {
        // 1. The view: well formed, all tracked, exactly the model's pages.
        let view = table.view()
        check(view.inv(), "the view's invariant fails")
        var viewPages = 0
        for mapping in view.mappings {
            viewPages += mapping.pageSize >> 12
            check(mapping.isTracked, "mapping \(mapping) is untracked")
            let leaf = MappedItemRef(paddr: mapping.pa.lowerBound, level: mapping.level, property: mapping.property,
                                     isTracked: mapping.isTracked)
            checkLeaf(leaf, at: mapping.va.lowerBound.rawValue, "view")
            if failures > 0 { return }
        }
        check(viewPages == model.count, "the view maps \(viewPages) pages, the model \(model.count)")

        // 2. pageWalk at probed addresses: the step's boundaries, random ones, mapped ones.
        var probed = probes.filter { window.contains($0) }
        for _ in 0..<6 { probed.append(address(align: size4K)) }
        if model.count <= 128 {
            probed += model.mappedPages(in: window)
        } else {
            for _ in 0..<12 {
                if let page = model.firstMapped(in: address(align: size4K)..<window.upperBound) { probed.append(page) }
            }
        }
        for va in probed {
            let offset = UInt64(r.below(4096))
            let walked = table.pageWalk(Vaddr(va + offset))
            if let page = model[va] {
                check(walked?.paddr.rawValue == page.pa + offset && walked?.property == page.prop,
                      "pageWalk(\(hex(va + offset))) = \(walked.map { "\($0.paddr) \($0.property)" } ?? "nil"), "
                      + "the model maps \(hex(page.pa + offset)) \(page.prop)")
            } else {
                check(walked == nil, "pageWalk(\(hex(va + offset))) = \(walked!.paddr), the model maps nothing")
            }
        }

        // 3. The tree: `structuralViolations` checks every node (its count of present entries, its
        // level, its one reference, no empty node but the root) and every frame of every tracked
        // leaf, so with more than 256 MiB mapped it runs every 8th step only (and at the end).
        if model.count <= 1 << 16 || trace.count % 8 == 0 {
            let violations = table.structuralViolations()
            check(violations == [], "structural violations: \(violations)")
        }

        // 4. Frames outstanding = nodes + retired nodes + mapped frames (every 3rd step: `nodes()`
        // is slow in debug builds, and a leak stays until the end, where it is checked again).
        if trace.count % 3 == 0 {
            let nodes = table.nodes().count
            let outstanding = machine.outstandingFrames
            let expected = baselineFrames + nodes + table.retiredCount + model.count
            check(outstanding == expected, "\(outstanding) frames outstanding, expected \(expected) = \(baselineFrames) "
                  + "+ \(nodes) nodes + \(table.retiredCount) retired + \(model.count) mapped")
        }
        // 5. Reference counts. Freed frames are handed out again, as data frames of a later unit or
        // as nodes: a frame is expected to have one reference per page the model maps to it, else
        // to be a page-table node, else to be free.
        let small = model.count <= 512 && units.reduce(0) { $0 + $1.frames } <= 1024
        var expectedCounts: [Paddr: Int] = [:]
        if small {
            for page in model.mappedPages(in: window) { expectedCounts[Paddr(model[page]!.pa), default: 0] += 1 }
            let mappingCounts = table.trackedMappingCounts()
            check(mappingCounts == expectedCounts, "trackedMappingCounts has \(mappingCounts.count) frames, the model "
                  + "maps \(expectedCounts.count); differing: \(Set(mappingCounts.keys).symmetricDifference(expectedCounts.keys).sorted(by: <).prefix(8))")
        }
        let allUnits = units
        units.removeAll { unit in
            let mapped = model.mappedCount(in: unit.vaRange)
            let indices = small || (mapped == 0 && unit.frames <= 512) ? Array(0..<unit.frames)
                : [0, unit.frames - 1] + (0..<6).map { _ in r.below(unit.frames) }
            for i in indices {
                let pa = unit.pa + UInt64(i) << 12
                let slot = machine.metaSlot(of: Paddr(pa))
                let count = small ? expectedCounts[Paddr(pa)] ?? 0 : mappings(of: pa, allUnits)
                if count > 0 {
                    check(slot.referenceCount == count && !slot.isFree,
                          "frame \(hex(pa)), mapped \(count) times, has \(slot.referenceCount) references, \(slot.status)")
                } else if slot.usage != .pageTable {
                    check(slot.isFree, "frame \(hex(pa)), mapped nowhere, is not free: \(slot.status), usage \(slot.usage)")
                }
            }
            return mapped == 0
        }
    }

    /// How many pages the model maps to the frame at `pa` (through the units that had it).
    func mappings(of pa: UInt64, _ units: [FrameUnit]) -> Int {
        var pages = Set<UInt64>()   // two units may have had the frame at the same address
        for unit in units where unit.pa <= pa && pa < unit.pa + UInt64(unit.frames) << 12 {
            let va = unit.va + (pa - unit.pa)
            if model[va]?.pa == pa { pages.insert(va) }
        }
        return pages.count
    }
}

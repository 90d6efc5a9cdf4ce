// The model of the page-table property test and its small parts: sizes and formatting, the flat
// 4 GiB `PageModel` of what every 4 KiB page should translate to (with per-2 MiB and per-1 GiB
// counts), the frame units a program mapped, the protect operations, and the protocol that lets
// queries and scans run on either kind of cursor.

import Testing
import PropertyBased
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Sizes and formatting

let size4K: UInt64 = 1 << 12
let size2M: UInt64 = 1 << 21
let size1G: UInt64 = 1 << 30

func pageSizeOf(_ level: PagingLevel) -> UInt64 { UInt64(PagingConsts.pageSize(level)) }
func alignDown(_ x: UInt64, _ a: UInt64) -> UInt64 { x & ~(a - 1) }
func alignUp(_ x: UInt64, _ a: UInt64) -> UInt64 { (x + a - 1) & ~(a - 1) }
func hex(_ r: Range<UInt64>) -> String { hex(r.lowerBound) + "..<" + hex(r.upperBound) }
func vrange(_ r: Range<UInt64>) -> Range<Vaddr> { Vaddr(r.lowerBound)..<Vaddr(r.upperBound) }

// MARK: - The model

/// What the table should map in a 4 GiB window: page VA -> (frame, property).
final class PageModel {
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
        // SAFETY: fresh zeroed memory of `pageCount` words, used only as `UInt64`, freed in deinit.
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
struct FrameUnit {
    var va: UInt64
    var pa: UInt64
    var frames: Int
    var vaRange: Range<UInt64> { va..<(va + UInt64(frames) << 12) }
}

/// What a protect step does to each leaf's property.
enum ProtectOp: CustomStringConvertible {
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
protocol ReadingCursor: ~Copyable {
    var virtAddr: Vaddr { get }
    mutating func query() throws(PageTableError) -> (range: Range<Vaddr>, item: MappedItemRef?)
    mutating func findNext(_ len: Int) -> Vaddr?
    mutating func jump(_ va: Vaddr) throws(PageTableError)
}

extension Cursor: ReadingCursor {}
extension CursorMut: ReadingCursor {}

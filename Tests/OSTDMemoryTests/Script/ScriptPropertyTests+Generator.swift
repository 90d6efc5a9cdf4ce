// The generator of random scripts: each op decoded from one integer (0: no op), aimed by a model
// of its own at recent successful maps, free 2 MiB regions and recent cut points, and rendered
// with numbers in every syntax, tabs, blank lines and comments.

import Testing
import PropertyBased
import OSTDScript

// MARK: - Window constants

private let windowBase: UInt64 = 0x4000_0000
private let windowSize: UInt64 = 8 << 20
private let topHuge: UInt64 = 0x7fff_ffc0_0000   // the last 2 MiB region that can hold a 2M leaf

// MARK: - Scripts

enum Op {
    case map(va: UInt64, len: UInt64, prot: String, huge: Bool, cache: String?, options: [String])
    case unmap(va: UInt64, len: UInt64)
    case protect(va: UInt64, len: UInt64, prot: String)
    case query(va: UInt64)
    case write(va: UInt64, bytes: [UInt8])
    case fill(va: UInt64, len: UInt64, byte: UInt8)
    case read(va: UInt64, len: UInt64)
    case copy(src: UInt64, dst: UInt64, len: UInt64)

    var name: String {
        switch self {
        case .map: "map"
        case .unmap: "unmap"
        case .protect: "protect"
        case .query: "query"
        case .write: "write"
        case .fill: "fill"
        case .read: "read"
        case .copy: "copy"
        }
    }
}

/// A random script: its ops, the text run, and the line of each op.
struct RandomScript {
    var ops: [Op] = []
    var lines: [Int] = []
    var text = "# random script (ScriptPropertyTests)\n"

    init(_ codes: [Int]) {
        var lineNumber = 1
        var maps: [Range] = []
        var cuts: [UInt64] = []   // the ends of earlier unmap/protect ranges
        let model = Model()   // to know which maps succeeded
        for code in codes where code != 0 {   // 0: no op, so that shrinking can drop ops
            var r = SplitMix64(code)
            let op = Self.makeOp(&r, maps, cuts, model)
            switch op {
            case let .unmap(va, len), let .protect(va, len, _):
                if validRange(va, len) { cuts += [va, va + len] }
            default: break
            }
            let succeeded = model.apply(op).ok
            if case let .map(va, len, _, huge, _, _) = op, succeeded { maps.append(Range(va: va, len: len, huge: huge)) }
            if r.chance(5) {   // blank lines and comments do not count as ops, but move line numbers
                text += r.chance(50) ? "\n" : "   # a comment\n"
                lineNumber += 1
            }
            lineNumber += 1
            ops.append(op)
            lines.append(lineNumber)
            text += Self.render(op, &r) + (r.chance(10) ? "   # trailing comment" : "") + "\n"
        }
    }

    // MARK: Addresses and lengths

    /// The range of an earlier successful `map` (maybe unmapped since).
    struct Range {
        var va: UInt64
        var len: UInt64
        var huge: Bool
    }

    /// One of the last few `map` ranges, if there are any and the dice say so.
    static func recentMap(_ r: inout SplitMix64, _ maps: [Range], _ percent: Int) -> Range? {
        guard !maps.isEmpty, r.chance(percent) else { return nil }
        return maps[maps.count - 1 - r.below(min(maps.count, 6))]
    }

    /// A 4 KiB-aligned VA in or next to the window, biased to 2 MiB boundaries.
    static func windowPage(_ r: inout SplitMix64) -> UInt64 {
        switch r.below(100) {
        case 0..<50:   // a 2 MiB boundary and the pages around it
            let boundary = windowBase + UInt64(r.int(0...4)) * page2M
            let delta = r.int(-3...3)
            return delta >= 0 ? boundary + UInt64(delta) * page4K : boundary - UInt64(-delta) * page4K
        case 50..<85:
            return windowBase + UInt64(r.below(Int(windowSize / page4K))) * page4K
        default:
            return windowBase + UInt64(r.below(4)) * page2M
        }
    }

    /// A page just below MAX_USERSPACE_VADDR, or in the 2 MiB region before the last one (the
    /// last one can hold only 4K leaves).
    static func topPage(_ r: inout SplitMix64) -> UInt64 {
        if r.chance(75) { return maxUser - UInt64(r.int(1...4)) * page4K }
        return r.pick([topHuge, topHuge + page2M - page4K, topHuge + page2M, topHuge + UInt64(r.below(512)) * page4K])
    }

    /// A 4 KiB-aligned VA for map/unmap/protect: mostly the window, sometimes the top.
    static func somePage(_ r: inout SplitMix64) -> UInt64 {
        r.chance(88) ? windowPage(&r) : topPage(&r)
    }

    /// A byte address for I/O: mostly in or next to an earlier `map`'s range (near its ends
    /// often), or a page plus an offset, biased to the page's ends.
    static func someByte(_ r: inout SplitMix64, _ maps: [Range]) -> UInt64 {
        if let m = recentMap(&r, maps, 80) {
            switch r.below(10) {
            case 0..<3: return m.va + m.len - UInt64(r.int(1...40))
            case 3: return m.va - UInt64(r.int(0...8))
            default: return m.va + UInt64(r.below(Int(m.len)))
            }
        }
        let page = somePage(&r)
        switch r.below(4) {
        case 0: return page
        case 1: return page + page4K - UInt64(r.int(1...24))
        case 2: return page - UInt64(r.int(1...8))
        default: return page + UInt64(r.below(4096))
        }
    }

    /// A range that is out of range one way or another (empty, overflowing, past the end).
    static func outOfRange(_ r: inout SplitMix64) -> (UInt64, UInt64) {
        switch r.below(6) {
        case 0: return (somePage(&r), 0)
        case 1: return (0xffff_ffff_ffff_f000, 0x2000)
        case 2: return (maxUser - page4K, 0x2000)
        case 3: return (maxUser, page4K)
        case 4: return (maxUser - 0x800, page4K)
        default: return (windowBase, UInt64.max - 0xfff)
        }
    }

    static func prot(_ r: inout SplitMix64) -> String {
        // (`letters.append("w")` would pick PropertyBased's `Sequence.append(_:)`, which returns a
        // new sequence and leaves `letters` alone.)
        var letters: [Character] = ["r"]
        if r.chance(70) { letters += ["w"] }
        if r.chance(20) { letters += ["x"] }
        if r.chance(85) { letters += ["u"] }
        if r.chance(12) { letters += ["g"] }
        for i in stride(from: letters.count - 1, to: 0, by: -1) { letters.swapAt(i, r.below(i + 1)) }
        return String(letters)
    }

    static func ioLength(_ r: inout SplitMix64) -> UInt64 {
        switch r.below(10) {
        case 0..<6: return UInt64(r.int(1...48))
        case 6..<9: return UInt64(r.int(1...600))
        default: return UInt64(r.int(4000...9000))
        }
    }

    // MARK: Ops

    static func makeOp(_ r: inout SplitMix64, _ maps: [Range], _ cuts: [UInt64], _ model: Model) -> Op {
        switch r.below(100) {
        case 0..<24: return makeMap(&r, maps, model)
        case 24..<31:
            let (va, len) = rangeForUnmapProtect(&r, maps)
            return .unmap(va: va, len: len)
        case 31..<42:
            let (va, len) = rangeForUnmapProtect(&r, maps)
            return .protect(va: va, len: len, prot: prot(&r))
        case 42..<58:
            let va: UInt64 = switch r.below(20) {
            case 0: maxUser
            case 1: maxUser + UInt64(r.int(1...0x2000))
            case 2: maxUser - 1
            case 3..<12 where !cuts.isEmpty:   // around where an unmap/protect cut: split leaves
                switch (r.below(3), cuts[cuts.count - 1 - r.below(min(cuts.count, 4))]) {
                case (0, let cut): cut - UInt64(r.int(1...4096))
                case (1, let cut): cut + UInt64(r.below(4096))
                case (_, let cut): (cut & ~(page2M - 1)) + UInt64(r.below(Int(page2M)))
                }
            default: someByte(&r, maps)
            }
            return .query(va: va)
        case 58..<68:
            if r.chance(6) {
                let (va, len) = outOfRange(&r)
                return .write(va: va, bytes: (0..<Int(min(len, 4) + 1)).map { _ in UInt8(r.below(256)) })
            }
            let count = r.chance(85) ? r.int(1...24) : r.int(25...300)
            return .write(va: someByte(&r, maps), bytes: (0..<count).map { _ in UInt8(r.below(256)) })
        case 68..<77:
            if r.chance(6) {
                let (va, len) = outOfRange(&r)
                return .fill(va: va, len: len, byte: UInt8(r.below(256)))
            }
            return .fill(va: someByte(&r, maps), len: ioLength(&r), byte: r.chance(15) ? 0 : UInt8(r.below(256)))
        case 77..<88:
            if r.chance(6) {
                let (va, len) = outOfRange(&r)
                return .read(va: va, len: len)
            }
            return .read(va: someByte(&r, maps), len: ioLength(&r))
        default:
            let len = ioLength(&r)
            if r.chance(6) {
                let (va, bad) = outOfRange(&r)
                return r.chance(50) ? .copy(src: va, dst: someByte(&r, maps), len: bad) : .copy(src: someByte(&r, maps), dst: va, len: bad)
            }
            if maps.count >= 2, r.chance(20) {
                // Both sides end the same distance before the end of an earlier map's range, so
                // that both may fault at the same byte (the source is reported then).
                let a = maps[maps.count - 1 - r.below(min(maps.count, 6))]
                let b = maps[maps.count - 1 - r.below(min(maps.count, 6))]
                let k = UInt64(r.int(1...32))
                return .copy(src: a.va + a.len - k, dst: b.va + b.len - k, len: k + UInt64(r.int(0...32)))
            }
            let src = someByte(&r, maps)
            let dst: UInt64
            if r.chance(30) {   // near the source: overlapping often
                let delta = r.int(-64...64)
                dst = delta >= 0 ? src + UInt64(delta) : src - UInt64(-delta)
            } else {
                dst = someByte(&r, maps)
            }
            return .copy(src: src, dst: dst, len: len)
        }
    }

    static func makeMap(_ r: inout SplitMix64, _ maps: [Range], _ model: Model) -> Op {
        let huge = r.chance(35)
        var va: UInt64
        var len: UInt64
        if r.chance(5) {
            (va, len) = outOfRange(&r)
        } else if huge {
            va = r.chance(85) ? windowBase + UInt64(r.below(4)) * page2M : somePage(&r)
            let free = (0..<4).map { windowBase + UInt64($0) * page2M }.filter { region in
                !model.pageRange(region, page2M).contains { model.pages[$0] != nil }
            }
            if !free.isEmpty, r.chance(70) { va = r.pick(free) }   // often where it fits
            if r.chance(8) { va = r.pick([topHuge, topHuge + page2M]) }   // fits, or ends past MAX
            switch r.below(100) {
            case 0..<80: len = page2M
            case 80..<90: len = 2 * page2M
            case 90..<95: len = page2M + page4K
            default: len = page4K
            }
        } else {
            va = somePage(&r)
            if let m = recentMap(&r, maps, 30) {   // right after or before an earlier range
                va = r.chance(70) ? m.va + m.len : m.va - UInt64(r.int(1...3)) * page4K
            }
            if r.chance(7) { va += UInt64(r.int(1...4095)) }
            switch r.below(100) {
            case 0..<88: len = UInt64(r.int(1...3)) * page4K
            case 88..<94: len = page2M
            default: len = UInt64(r.int(1...3)) * page4K + 0x800
            }
        }
        let cache: String? = r.chance(60) ? nil : r.pick(["wb", "wt", "wc", "uc"])
        var options: [String] = []
        if huge { options.append("page=2M") } else if r.chance(30) { options.append("page=4K") }
        if let cache { options.append("cache=\(cache)") }
        if options.count == 2 && r.chance(50) { options.swapAt(0, 1) }
        return .map(va: va, len: len, prot: prot(&r), huge: huge, cache: cache, options: options)
    }

    static func rangeForUnmapProtect(_ r: inout SplitMix64, _ maps: [Range]) -> (UInt64, UInt64) {
        if r.chance(6) { return outOfRange(&r) }
        var va = somePage(&r)
        let huge = maps.suffix(8).filter(\.huge)
        if !huge.isEmpty, r.chance(40) {   // cut an earlier 2M map's range
            let m = r.pick(huge)
            va = r.chance(30) ? m.va - UInt64(r.int(0...2)) * page4K : m.va + UInt64(r.below(Int(m.len / page4K))) * page4K
        } else if let m = recentMap(&r, maps, 50) {   // a page in or around an earlier range
            let pages = Int(m.len / page4K)
            switch r.below(10) {
            case 0..<2: va = m.va - UInt64(r.int(1...2)) * page4K   // start before, end inside
            case 2..<4: va = m.va                                   // start at, end inside
            default: va = m.va + UInt64(r.below(pages)) * page4K
            }
        }
        if r.chance(6) { va += UInt64(r.int(1...4095)) }
        let len: UInt64
        switch r.below(100) {
        case 0..<55: len = UInt64(r.int(1...3)) * page4K
        case 55..<70: len = page2M
        case 70..<86: len = UInt64(r.int(1...700)) * page4K
        case 86..<93: len = r.chance(75) ? 2 * page2M : windowSize
        default: len = UInt64(r.int(1...3)) * page4K + UInt64(r.int(1...4095))
        }
        return (va, len)
    }

    // MARK: Text

    /// A number in one of the syntaxes of SCRIPT.md: hex, decimal, or scaled by K/M.
    static func number(_ x: UInt64, _ r: inout SplitMix64) -> String {
        switch r.below(10) {
        case 0..<6: return hex(x)
        case 6..<8: return String(x)
        default:
            if x != 0 && x % (1 << 20) == 0 { return r.chance(50) ? "\(x >> 20)M" : "0x\(String(x >> 20, radix: 16))M" }
            if x != 0 && x % (1 << 10) == 0 { return "\(x >> 10)K" }
            return hex(x).uppercased().replacingFirstX()
        }
    }

    static func render(_ op: Op, _ r: inout SplitMix64) -> String {
        let sep = r.chance(10) ? "\t" : " "
        var tokens: [String] = [op.name]
        switch op {
        case let .map(va, len, prot, _, _, options):
            tokens += [number(va, &r), number(len, &r), prot] + options
        case let .unmap(va, len):
            tokens += [number(va, &r), number(len, &r)]
        case let .protect(va, len, prot):
            tokens += [number(va, &r), number(len, &r), prot]
        case let .query(va):
            tokens += [number(va, &r)]
        case let .write(va, bytes):
            let digits = hexBytes(bytes)
            tokens += [number(va, &r), r.chance(20) ? digits.uppercased() : digits]
        case let .fill(va, len, byte):
            tokens += [number(va, &r), number(len, &r), r.chance(50) ? String(byte) : hex(UInt64(byte))]
        case let .read(va, len):
            tokens += [number(va, &r), number(len, &r)]
        case let .copy(src, dst, len):
            tokens += [number(src, &r), number(dst, &r), number(len, &r)]
        }
        return tokens.joined(separator: sep)
    }
}

private extension String {
    /// `0X1F` → `0x1F`: hex digits may be uppercase, the `0x` prefix may not.
    func replacingFirstX() -> String { "0x" + dropFirst(2) }
}

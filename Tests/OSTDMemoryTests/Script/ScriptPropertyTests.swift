// Random valid scripts run through `runScriptCommand --json`, every op line checked against an
// independent model of SCRIPT.md.
//
// A script is 20–60 ops over a small window so that ops collide often: VAs in
// [0x40000000, 0x40000000 + 8 MiB) (biased towards the 2 MiB boundaries and the pages next to
// them), a few pages just below MAX_USERSPACE_VADDR (0x7fff_ffff_f000) and in the 2 MiB region
// before the last one, and some out-of-range addresses and lengths. `map` uses 4K leaves mostly
// and 2M leaves sometimes (aligned or not), with random PROT letters in random order, and
// `page=`/`cache=` options in either order; `unmap` and `protect` take 4 KiB-aligned (sometimes
// unaligned) ranges that cut 2 MiB leaves at their start, their end or both; `write`, `fill`,
// `read` and `copy` move small ranges that cross pages, including unmapped, non-`u` and
// read-only ones; `copy` often overlaps, and sometimes has both sides run off their pages at the
// same byte; `query` looks anywhere, often around where an earlier `unmap`/`protect` cut. To aim
// well, the generator runs a model of its own: ops are drawn around recent successful maps, free
// 2 MiB regions and recent cut points. Numbers come in every syntax (hex, decimal, `K`/`M`
// suffixes, uppercase hex digits); blank lines, comments and tabs move line numbers around.
// Each op is decoded from one generated integer; 0 decodes to no op, so that shrinking can drop
// ops (a shrunk script may be shorter than 20 ops).
//
// The model is a dictionary from base-page number to what the contract says about that page: its
// PROT letters, cache policy, the size of the leaf that maps it, the physical address once a
// `query` has shown it, and its 4096 bytes (lazily: `nil` is zero-filled). With it, every op's
// line is predicted exactly: the error and its precedence (out-of-range, unaligned,
// access-conflict, already-mapped, page-fault; memory is large enough that out-of-memory never
// happens, so it is never expected), the `pages`/`bytes` counts, `mapped`/`va`/`len`/`prot`/
// `page`/`cache` of a query (splitting: a range boundary strictly inside a 2M leaf turns that
// leaf into 512 4K leaves; leaves are never merged), and byte-level faults (first inaccessible
// byte, `copied`, `data`; copy reads the source byte before writing the destination byte, a tie
// reports the source; bytes written before a fault stay). Physical addresses cannot be
// predicted, so `pa` is checked for consistency: size-aligned and inside memory; every page of a
// leaf at the reported offset from `pa`, the same as any earlier query of the same page said
// (a split keeps physical addresses); no two mapped pages at the same physical page.
//
// The summary must have `ops` and `failed` as counted, `memory` as given, and
// `frames_in_use - pt_frames` equal to 1 (the kernel root, not reachable from the user root)
// plus the number of mapped base pages (every data frame is one mapped base page; unmapped parts
// of a huge leaf are freed at once).
//
// A failing script records one issue at its first mismatching line (the model would diverge after
// it) with the whole script, the expected fields and the actual line; `propertyCheck` then shrinks
// the op codes and prints the input and seed. (Shrinking runs a script per candidate: a failure
// takes a minute or two to report.)

import Testing
import PropertyBased
import OSTDScript

@Suite struct ScriptPropertyTests {
    @Test func randomScriptsMatchTheModel() async {
        await propertyCheck(count: 40, input: Gen.int(in: 0...Int.max).array(of: 20...60)) { codes in
            let script = RandomScript(codes)
            checkScript(script)
        }
    }
}

// MARK: - Constants and helpers

private let maxUser: UInt64 = 0x7fff_ffff_f000
private let page4K: UInt64 = 1 << 12
private let page2M: UInt64 = 1 << 21
private let windowBase: UInt64 = 0x4000_0000
private let windowSize: UInt64 = 8 << 20
private let topHuge: UInt64 = 0x7fff_ffc0_0000   // the last 2 MiB region that can hold a 2M leaf
private let memoryArgument = "64M"
private let memoryBytes: UInt64 = 64 << 20


private func hexBytes(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef")
    var out = ""
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 15)])
    }
    return out
}

/// `[va, va + len)` is a valid user range: non-empty, no overflow, ends by MAX_USERSPACE_VADDR.
private func validRange(_ va: UInt64, _ len: UInt64) -> Bool {
    let (end, overflow) = va.addingReportingOverflow(len)
    return len > 0 && !overflow && end <= maxUser
}


// MARK: - Scripts

private enum Op {
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
private struct RandomScript {
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

// MARK: - The model

private struct PageState {
    var prot: String          // canonical letters, r w x u g
    var cache: String
    var huge: Bool            // mapped by a 2 MiB leaf
    var pa: UInt64?           // learned from a query
    var data: [UInt8]?        // nil: zero-filled

    var readable: Bool { prot.contains("u") }
    var writable: Bool { prot.contains("u") && prot.contains("w") }
}

/// A JSON value of a flat object.
private enum JSON: Equatable, CustomStringConvertible {
    case string(String)
    case int(Int)
    case bool(Bool)
    case null

    var description: String {
        switch self {
        case .string(let s): "\"\(s)\""
        case .int(let i): String(i)
        case .bool(let b): String(b)
        case .null: "null"
        }
    }
}

/// What the model predicts for one op: its fields, and for a mapped query the leaf to check `pa`
/// against.
private struct Expected {
    var fields: [(String, JSON)]
    var leaf: (va: UInt64, size: UInt64)? = nil
    var ok: Bool { fields.first { $0.0 == "ok" }?.1 == .bool(true) }
}

private final class Model {
    var pages: [UInt64: PageState] = [:]   // key: VA >> 12
    var paOwner: [UInt64: UInt64] = [:]    // PA >> 12 -> VA >> 12, for pages whose PA is known

    static func canonical(_ prot: String) -> String { String("rwxug".filter { prot.contains($0) }) }

    func fail(_ code: String, _ extra: [(String, JSON)] = []) -> Expected {
        Expected(fields: [("ok", .bool(false)), ("error", .string(code))] + extra)
    }

    func success(_ extra: [(String, JSON)]) -> Expected {
        Expected(fields: [("ok", .bool(true))] + extra)
    }

    func pageRange(_ va: UInt64, _ len: UInt64) -> StrideTo<UInt64> {
        stride(from: va >> 12, to: (va + len) >> 12, by: 1)
    }

    /// Splits the 2 MiB leaf that `boundary` falls strictly inside, if any.
    func split(at boundary: UInt64) {
        guard boundary % page2M != 0, let state = pages[boundary >> 12], state.huge else { return }
        let first = (boundary & ~(page2M - 1)) >> 12
        for p in first..<(first + 512) { pages[p]!.huge = false }
    }

    func remove(_ p: UInt64) {
        if let pa = pages[p]?.pa { paOwner[pa >> 12] = nil }
        pages[p] = nil
    }

    /// The offset of the first byte of `[va, va + len)` not accessible, or `nil`.
    func firstFault(_ va: UInt64, _ len: UInt64, write: Bool) -> UInt64? {
        var offset: UInt64 = 0
        while offset < len {
            let address = va + offset
            guard let state = pages[address >> 12], write ? state.writable : state.readable else { return offset }
            offset += page4K - (address & (page4K - 1))
        }
        return nil
    }

    func load(_ va: UInt64, _ count: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Int(count))
        var offset: UInt64 = 0
        while offset < count {
            let address = va + offset
            let inPage = Int(address & (page4K - 1))
            let n = min(Int(page4K) - inPage, Int(count - offset))
            if let data = pages[address >> 12]?.data {
                out.append(contentsOf: data[inPage..<(inPage + n)])
            } else {
                out.append(contentsOf: repeatElement(0, count: n))
            }
            offset += UInt64(n)
        }
        return out
    }

    func store(_ va: UInt64, _ bytes: ArraySlice<UInt8>) {
        var offset = 0
        while offset < bytes.count {
            let address = va + UInt64(offset)
            let inPage = Int(address & (page4K - 1))
            let n = min(Int(page4K) - inPage, bytes.count - offset)
            let p = address >> 12
            var data = pages[p]!.data ?? [UInt8](repeating: 0, count: Int(page4K))
            pages[p]!.data = nil
            let from = bytes.startIndex + offset
            data.replaceSubrange(inPage..<(inPage + n), with: bytes[from..<(from + n)])
            pages[p]!.data = data
            offset += n
        }
    }

    func fault(_ va: UInt64, copied: UInt64) -> [(String, JSON)] {
        [("va", .string(hex(va))), ("copied", .int(Int(copied)))]
    }

    /// Applies `op` and returns what its line must say.
    func apply(_ op: Op) -> Expected {
        switch op {
        case let .map(va, len, prot, huge, cache, _):
            guard validRange(va, len) else { return fail("out-of-range") }
            let size = huge ? page2M : page4K
            guard va % size == 0, len % size == 0 else { return fail("unaligned") }
            guard !pageRange(va, len).contains(where: { pages[$0] != nil }) else { return fail("already-mapped") }
            for p in pageRange(va, len) {
                pages[p] = PageState(prot: Self.canonical(prot), cache: cache ?? "wb", huge: huge, pa: nil, data: nil)
            }
            return success([("pages", .int(Int(len / page4K)))])

        case let .unmap(va, len):
            guard validRange(va, len) else { return fail("out-of-range") }
            guard va % page4K == 0, len % page4K == 0 else { return fail("unaligned") }
            split(at: va)
            split(at: va + len)
            var count = 0
            for p in pageRange(va, len) where pages[p] != nil {
                remove(p)
                count += 1
            }
            return success([("pages", .int(count))])

        case let .protect(va, len, prot):
            guard validRange(va, len) else { return fail("out-of-range") }
            guard va % page4K == 0, len % page4K == 0 else { return fail("unaligned") }
            split(at: va)
            split(at: va + len)
            var count = 0
            for p in pageRange(va, len) where pages[p] != nil {
                pages[p]!.prot = Self.canonical(prot)
                count += 1
            }
            return success([("pages", .int(count))])

        case let .query(va):
            guard va < maxUser else { return fail("out-of-range") }
            guard let state = pages[va >> 12] else { return success([("mapped", .bool(false))]) }
            let size = state.huge ? page2M : page4K
            let base = va & ~(size - 1)
            var expected = success([("mapped", .bool(true)), ("va", .string(hex(base))), ("len", .string(hex(size))),
                                    ("prot", .string(state.prot)), ("page", .string(state.huge ? "2M" : "4K")),
                                    ("cache", .string(state.cache))])
            expected.leaf = (base, size)
            return expected

        case let .write(va, bytes):
            let len = UInt64(bytes.count)
            guard validRange(va, len) else { return fail("out-of-range") }
            if let f = firstFault(va, len, write: true) {
                store(va, bytes[0..<Int(f)])
                return fail("page-fault", fault(va + f, copied: f))
            }
            store(va, bytes[...])
            return success([("bytes", .int(bytes.count))])

        case let .fill(va, len, byte):
            guard validRange(va, len) else { return fail("out-of-range") }
            let f = firstFault(va, len, write: true)
            let n = f ?? len
            store(va, [UInt8](repeating: byte, count: Int(n))[...])
            if let f { return fail("page-fault", fault(va + f, copied: f)) }
            return success([("bytes", .int(Int(len)))])

        case let .read(va, len):
            guard validRange(va, len) else { return fail("out-of-range") }
            if let f = firstFault(va, len, write: false) {
                return fail("page-fault", fault(va + f, copied: f) + [("data", .string(hexBytes(load(va, f))))])
            }
            return success([("data", .string(hexBytes(load(va, len))))])

        case let .copy(src, dst, len):
            guard validRange(src, len), validRange(dst, len) else { return fail("out-of-range") }
            guard !(src < dst + len && dst < src + len) else { return fail("access-conflict") }
            let fs = firstFault(src, len, write: false) ?? len
            let fd = firstFault(dst, len, write: true) ?? len
            let n = min(fs, fd)
            store(dst, load(src, n)[...])   // the ranges are disjoint: order does not matter
            if n < len {
                return fail("page-fault", fs <= fd ? fault(src + fs, copied: n) : fault(dst + fd, copied: n))
            }
            return success([("bytes", .int(Int(len)))])
        }
    }

    /// Checks a query's `pa` for the leaf `[va, va + size)`; returns the problems.
    func checkPhysical(_ pa: UInt64, leaf: (va: UInt64, size: UInt64)) -> [String] {
        var problems: [String] = []
        if pa % leaf.size != 0 { problems.append("pa \(hex(pa)) is not aligned to the leaf size \(hex(leaf.size))") }
        if pa + leaf.size > memoryBytes { problems.append("pa \(hex(pa)) + \(hex(leaf.size)) is past memory (\(memoryArgument))") }
        guard problems.isEmpty else { return problems }
        for i in 0..<(leaf.size >> 12) {
            let p = (leaf.va >> 12) + i
            let expected = pa + i * page4K
            if let known = pages[p]!.pa, known != expected {
                problems.append("page \(hex(p << 12)) was at pa \(hex(known)) before, now \(hex(expected))")
                break
            }
            if let owner = paOwner[expected >> 12], owner != p {
                problems.append("pa \(hex(expected)) of page \(hex(p << 12)) is also the pa of mapped page \(hex(owner << 12))")
                break
            }
            pages[p]!.pa = expected
            paOwner[expected >> 12] = p
        }
        return problems
    }
}

// MARK: - Running and checking

/// A flat JSON object (string, integer, boolean and null values), or `nil` when malformed.
private func parseFlatJSON(_ line: String) -> [String: JSON]? {
    var chars = Array(line.unicodeScalars)[...]
    func skipBlanks() { while let c = chars.first, c == " " { chars.removeFirst() } }
    func eat(_ c: Unicode.Scalar) -> Bool {
        skipBlanks()
        guard chars.first == c else { return false }
        chars.removeFirst()
        return true
    }
    func string() -> String? {
        guard eat("\"") else { return nil }
        var out = String.UnicodeScalarView()
        while let c = chars.popFirst() {
            switch c {
            case "\"": return String(out)
            case "\\":
                guard let e = chars.popFirst() else { return nil }
                switch e {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "u":
                    let digits = String(String.UnicodeScalarView(chars.prefix(4)))
                    chars = chars.dropFirst(4)
                    guard let v = UInt32(digits, radix: 16), let s = Unicode.Scalar(v) else { return nil }
                    out.append(s)
                default: out.append(e)
                }
            default: out.append(c)
            }
        }
        return nil
    }
    guard eat("{") else { return nil }
    var object: [String: JSON] = [:]
    if eat("}") { return object }
    repeat {
        guard let key = string(), eat(":") else { return nil }
        skipBlanks()
        guard let first = chars.first else { return nil }
        if first == "\"" {
            guard let s = string() else { return nil }
            object[key] = .string(s)
        } else {
            let token = String(String.UnicodeScalarView(chars.prefix { $0 != "," && $0 != "}" && $0 != " " }))
            chars = chars.dropFirst(token.unicodeScalars.count)
            switch token {
            case "true": object[key] = .bool(true)
            case "false": object[key] = .bool(false)
            case "null": object[key] = .null
            default:
                guard let i = Int(token) else { return nil }
                object[key] = .int(i)
            }
        }
    } while eat(",")
    guard eat("}") else { return nil }
    skipBlanks()
    return chars.isEmpty ? object : nil
}

private func numberedScript(_ text: String) -> String {
    text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().enumerated()
        .map { "\(String($0.offset + 1).leftPad(3))  \($0.element)" }.joined(separator: "\n")
}

private extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}

/// Runs `script` and checks every line against the model; records one issue at the first mismatch.
private func checkScript(_ script: RandomScript) {
    var output: [String] = []
    var errors: [String] = []
    let code = runScriptCommand(RunOptions(script: "p.ostd", json: true, memory: memoryArgument), text: script.text,
                                output: { output.append($0) }, errors: { errors.append($0) })
    func report(_ what: String) {
        Issue.record("\(what)\n--- script (\(script.ops.count) ops) ---\n\(numberedScript(script.text))\n---")
    }
    guard code == 0, errors.isEmpty, output.count == script.ops.count + 1 else {
        report("exit \(code), \(output.count) output lines for \(script.ops.count) ops, errors: \(errors)")
        return
    }
    let model = Model()
    var failed = 0
    for (i, op) in script.ops.enumerated() {
        let line = output[i]
        let expected = model.apply(op)
        if !expected.ok { failed += 1 }
        guard let actual = parseFlatJSON(line) else {
            report("line \(script.lines[i]): not a flat JSON object: \(line)")
            return
        }
        var problems: [String] = []
        let header: [(String, JSON)] = [("line", .int(script.lines[i])), ("op", .string(op.name))]
        for (key, value) in header + expected.fields where actual[key] != value {
            problems.append("\(key): expected \(value), got \(actual[key].map(\.description) ?? "nothing")")
        }
        if !expected.ok {
            if case .string? = actual["message"] {} else { problems.append("a failed op needs a string \"message\"") }
        }
        if problems.isEmpty, let leaf = expected.leaf {
            if case .string(let text) = actual["pa"], text.hasPrefix("0x"), let pa = UInt64(text.dropFirst(2), radix: 16),
               hex(pa) == text {
                problems += model.checkPhysical(pa, leaf: leaf)
            } else {
                problems.append("pa: expected a lowercase unpadded 0x hex string, got \(actual["pa"].map(\.description) ?? "nothing")")
            }
        }
        if !problems.isEmpty {
            let shown = expected.fields.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
            report("line \(script.lines[i]) (\(op.name)): \(problems.joined(separator: "; "))\n"
                   + "expected: \(shown)\nactual:   \(line)")
            return
        }
    }
    guard let summary = parseFlatJSON(output[script.ops.count]) else {
        report("summary is not a flat JSON object: \(output[script.ops.count])")
        return
    }
    var problems: [String] = []
    if summary["summary"] != .bool(true) { problems.append("no \"summary\": true") }
    if summary["ops"] != .int(script.ops.count) { problems.append("ops: expected \(script.ops.count)") }
    if summary["failed"] != .int(failed) { problems.append("failed: expected \(failed)") }
    if summary["memory"] != .string(hex(memoryBytes)) { problems.append("memory: expected \(hex(memoryBytes))") }
    if case .int(let inUse) = summary["frames_in_use"], case .int(let pt) = summary["pt_frames"] {
        if inUse - pt != 1 + model.pages.count {
            problems.append("frames_in_use - pt_frames = \(inUse - pt), expected 1 (the kernel root) + \(model.pages.count) mapped pages")
        }
    } else {
        problems.append("frames_in_use and pt_frames must be integers")
    }
    if !problems.isEmpty {
        report("summary: \(problems.joined(separator: "; "))\nactual: \(output[script.ops.count])")
    }
}

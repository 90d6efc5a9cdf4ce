// Decoding fuzzer bytes into an op sequence.
//
// The decoder is deterministic, total and bounded: bytes are read one at a time and read as zero
// once the input runs out, so any input (the empty one included) decodes to a sequence; decoding
// stops at `maxOps` ops or when the input is used up, whichever comes first. Each op reads a kind
// byte and then its operands, each chosen by a selector byte from a few shapes, so that ops meet:
// addresses fall mostly in a 16 MiB window of eight 2 MiB regions (near each region's start and
// end, or 2 MiB aligned, so 4K and 2M leaves overlap, split and get protected), or at or just
// after an earlier `map`'s address (so that byte ops often hit mapped pages), plus edges (0, the
// top of user space, past it, a 1 GiB-aligned address). Lengths are 4K or 2M multiples, odd byte
// counts, 0, 1 GiB (out of memory on the small machine) and overflowing ones. Huge-page maps are
// usually aligned, and protections usually `rwu` plus some letters, so that user writes can
// succeed. `read` is capped at 256 KiB so that its result text stays small; every other op costs
// at most what the machine's memory allows, whatever the input.

import OSTDScript

/// A cursor over the input that yields zeros past its end.
struct FuzzBytes {
    let bytes: [UInt8]
    var index = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isExhausted: Bool { index >= bytes.count }

    mutating func byte() -> UInt8 {
        guard index < bytes.count else { return 0 }
        defer { index += 1 }
        return bytes[index]
    }

    mutating func u16() -> UInt16 { UInt16(byte()) << 8 | UInt16(byte()) }
}

enum FuzzDecoder {
    /// At most this many ops per input.
    static let maxOps = 64
    /// The window most addresses fall in: eight 2 MiB regions.
    static let windowBase: UInt64 = 0x1000_0000
    static let windowSize: UInt64 = 16 << 20
    static let page: UInt64 = 4 << 10
    static let huge: UInt64 = 2 << 20
    /// `MAX_USERSPACE_VADDR`.
    static let maxUser: UInt64 = 0x7fff_ffff_f000
    /// A `read` asks for at most this much (unless its length is out of range anyway).
    static let maxRead: UInt64 = 256 << 10

    /// The op sequence `data` stands for.
    static func decode(_ data: [UInt8]) -> [Op] {
        var input = FuzzBytes(data)
        var ops: [Op] = []
        while ops.count < maxOps, !input.isExhausted {
            ops.append(op(&input, after: ops))
        }
        return ops
    }

    static func op(_ input: inout FuzzBytes, after earlier: [Op]) -> Op {
        // The addresses of the earlier maps, most recent first.
        let mapped = earlier.reversed().compactMap { op -> UInt64? in
            if case .map(let va, _, _, _, _) = op { return va } else { return nil }
        }
        func address(_ input: inout FuzzBytes) -> UInt64 { Self.address(&input, mapped: mapped) }
        switch input.byte() % 16 {
        case 0, 1, 2, 3:
            var va = address(&input)
            var len = length(&input)
            let prot = self.prot(&input)
            let options = input.byte()
            let page: LeafSize = switch options & 7 { case 0...4: .size4K; case 5, 6: .size2M; default: .size1G }
            if page != .size4K, options & 0x60 != 0 {
                // Usually aligned: the start rounded down, the length up, to the leaf size.
                va &= ~(page.bytes - 1)
                if len > 0, len <= 1 << 40 { len = (len + page.bytes - 1) & ~(page.bytes - 1) }
            }
            return .map(va: va, len: len, prot: prot, page: page, cache: ScriptCache.allCases[Int(options >> 3) % 4])
        case 4, 5:
            return .unmap(va: address(&input), len: length(&input))
        case 6, 7:
            return .protect(va: address(&input), len: length(&input), prot: prot(&input))
        case 8:
            return .query(va: address(&input))
        case 9, 10:
            let va = address(&input)
            let count = 1 + Int(input.byte() % 32)
            return .write(va: va, bytes: (0..<count).map { _ in input.byte() })
        case 11:
            return .fill(va: address(&input), len: length(&input), byte: input.byte())
        case 12, 13:
            let va = address(&input)
            let len = length(&input)
            return .read(va: va, len: len >= 1 << 40 ? len : min(len, maxRead))
        default:
            return .copy(src: address(&input), dst: address(&input), len: length(&input))
        }
    }

    /// A page in one of the window's 2 MiB regions: one of its first or last 16 pages.
    static func windowPage(_ input: inout FuzzBytes) -> UInt64 {
        let region = windowBase + UInt64(input.byte() % 8) * huge
        let b = input.byte()
        let index = b & 0x80 != 0 ? 511 - UInt64(b % 16) : UInt64(b % 16)
        return region + index * page
    }

    static func address(_ input: inout FuzzBytes, mapped: [UInt64]) -> UInt64 {
        let selector = input.byte()
        switch selector % 16 {
        case 0...2: return windowPage(&input)
        case 3...5:
            // At or just after an earlier map's address (a window page when there is none).
            guard !mapped.isEmpty else { return windowPage(&input) }
            let b = input.byte()
            let base = mapped[Int(b % 4) % mapped.count]
            let offset: UInt64 = switch b >> 6 { case 0, 1: 0; case 2: UInt64(input.byte()) * 16; default: page * UInt64(input.byte() % 16) }
            return base &+ offset
        case 6, 7, 8: return windowBase + UInt64(input.byte() % 8) * huge
        case 9: return windowBase + UInt64(input.u16() % UInt16(windowSize / page)) * page
        case 10:
            // Unaligned: inside a window page, or just below a 2 MiB boundary.
            if selector & 0x10 != 0 { return windowPage(&input) + UInt64(input.u16() % 4096) }
            return windowBase + UInt64(1 + input.byte() % 8) * huge - (1 + UInt64(input.byte()))
        case 11: return 0
        case 12: return maxUser - page * UInt64(1 + input.byte() % 4)
        case 13: return (maxUser & ~(huge - 1)) - huge * UInt64(input.byte() % 2)
        case 14: return 1 << 30
        default:
            let wild: [UInt64] = [maxUser, maxUser + page, 1 << 47, ~(page - 1), 0xffff_8000_0000_0000, UInt64.max, page]
            return wild[Int(input.byte()) % wild.count]
        }
    }

    static func length(_ input: inout FuzzBytes) -> UInt64 {
        switch input.byte() % 16 {
        case 0...5: return page * UInt64(1 + input.byte() % 16)
        case 6, 7, 8: return huge * UInt64(1 + input.byte() % 4)
        case 9: return page * UInt64(1 + input.u16() % UInt16(windowSize / page))
        case 10, 11: return UInt64(1 + UInt16(input.byte()))
        case 12: return 0
        case 13: return 1 << 30
        case 14: return input.byte() & 1 == 0 ? UInt64.max : UInt64.max - page + 1
        default: return huge + page * UInt64(1 + input.byte() % 16)
        }
    }

    /// Usually `rwu` with some of `x g`, else any letters.
    static func prot(_ input: inout FuzzBytes) -> Prot {
        let b = input.byte()
        let usual = b & 0xc0 != 0
        return Prot(writable: usual || b & 1 != 0, executable: b & 2 != 0, user: usual || b & 4 != 0, global: b & 8 != 0)
    }
}

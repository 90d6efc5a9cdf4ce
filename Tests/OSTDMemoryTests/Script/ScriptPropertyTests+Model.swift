// The independent model of SCRIPT.md: what the contract says about each mapped base page (PROT
// letters, cache policy, leaf size, physical address once seen, bytes), the line every op must
// print, and the consistency checks on a query's physical address.

import Testing
import PropertyBased
import OSTDScript

// MARK: - The model

struct PageState {
    var prot: String          // canonical letters, r w x u g
    var cache: String
    var huge: Bool            // mapped by a 2 MiB leaf
    var pa: UInt64?           // learned from a query
    var data: [UInt8]?        // nil: zero-filled

    var readable: Bool { prot.contains("u") }
    var writable: Bool { prot.contains("u") && prot.contains("w") }
}

/// A JSON value of a flat object.
enum JSON: Equatable, CustomStringConvertible {
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
struct Expected {
    var fields: [(String, JSON)]
    var leaf: (va: UInt64, size: UInt64)? = nil
    var ok: Bool { fields.first { $0.0 == "ok" }?.1 == .bool(true) }
}

final class Model {
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

    /// `unmap` and `protect`: the range must be valid and 4 KiB-aligned; the 2 MiB leaves its ends
    /// fall strictly inside are split, then `change` is applied to every mapped page in it, in
    /// address order, and the line reports how many there were.
    func changeMappedPages(_ va: UInt64, _ len: UInt64, _ change: (UInt64) -> Void) -> Expected {
        guard validRange(va, len) else { return fail("out-of-range") }
        guard va % page4K == 0, len % page4K == 0 else { return fail("unaligned") }
        split(at: va)
        split(at: va + len)
        var count = 0
        for p in pageRange(va, len) where pages[p] != nil {
            change(p)
            count += 1
        }
        return success([("pages", .int(count))])
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
            return changeMappedPages(va, len) { p in remove(p) }

        case let .protect(va, len, prot):
            return changeMappedPages(va, len) { p in pages[p]!.prot = Self.canonical(prot) }

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

// A script's ops packed into one byte array (`Script.packed`), so that holding a whole script
// before it runs costs a few bytes per op rather than an `Op` enum's stride and an allocation per
// `write`. Each op is: its line as a zigzag LEB128 difference from the previous op's line; a tag
// byte (the op's kind in bits 0–2; for `map`, the leaf size in bits 3–4 and the cache policy in
// bits 5–6); for `map` and `protect` a byte of protection letters; its numbers as LEB128; and for
// `write` the byte count and the bytes themselves. A `query 0` on the next line takes 3 bytes.

extension Script {
    /// Appends `scriptOp` at the end.
    public mutating func append(_ scriptOp: ScriptOp) {
        let delta = scriptOp.line &- lastLine
        appendNumber(UInt64(bitPattern: Int64((delta << 1) ^ (delta >> 63))))
        lastLine = scriptOp.line
        count += 1
        switch scriptOp.op {
        case .map(let va, let len, let prot, let page, let cache):
            let pageIndex = LeafSize.allCases.firstIndex(of: page)!
            let cacheIndex = ScriptCache.allCases.firstIndex(of: cache)!
            packed.append(0 | UInt8(pageIndex) << 3 | UInt8(cacheIndex) << 5)
            packed.append(prot.bits)
            appendNumbers(va, len)
        case .unmap(let va, let len): packed.append(1); appendNumbers(va, len)
        case .protect(let va, let len, let prot): packed.append(2); packed.append(prot.bits); appendNumbers(va, len)
        case .query(let va): packed.append(3); appendNumbers(va)
        case .write(let va, let bytes): packed.append(4); appendNumbers(va, UInt64(bytes.count)); packed += bytes
        case .fill(let va, let len, let byte): packed.append(5); appendNumbers(va, len); packed.append(byte)
        case .read(let va, let len): packed.append(6); appendNumbers(va, len)
        case .copy(let src, let dst, let len): packed.append(7); appendNumbers(src, dst, len)
        }
    }

    private mutating func appendNumbers(_ values: UInt64...) {
        for value in values { appendNumber(value) }
    }

    /// `value` as LEB128: seven bits a byte, low bits first, the top bit set on all but the last.
    private mutating func appendNumber(_ value: UInt64) {
        var rest = value
        while rest >= 0x80 {
            packed.append(UInt8(rest & 0x7f) | 0x80)
            rest >>= 7
        }
        packed.append(UInt8(rest))
    }
}

/// Decodes a packed script's ops in order.
public struct ScriptIterator: IteratorProtocol {
    let packed: [UInt8]
    var at = 0
    var line = 0

    public mutating func next() -> ScriptOp? {
        guard at < packed.count else { return nil }
        let zigzag = number()
        line &+= Int(Int64(bitPattern: (zigzag >> 1) ^ (0 &- (zigzag & 1))))
        return ScriptOp(line: line, op: op(tag: byte()))
    }

    private mutating func op(tag: UInt8) -> Op {
        switch tag & 7 {
        case 0:
            let page = LeafSize.allCases[Int(tag >> 3 & 3)]
            let cache = ScriptCache.allCases[Int(tag >> 5 & 3)]
            let prot = Prot(bits: byte())
            return .map(va: number(), len: number(), prot: prot, page: page, cache: cache)
        case 1: return .unmap(va: number(), len: number())
        case 2:
            let prot = Prot(bits: byte())
            return .protect(va: number(), len: number(), prot: prot)
        case 3: return .query(va: number())
        case 4:
            let va = number()
            let count = Int(number())
            defer { at += count }
            return .write(va: va, bytes: Array(packed[at..<at + count]))
        case 5: return .fill(va: number(), len: number(), byte: byte())
        case 6: return .read(va: number(), len: number())
        default: return .copy(src: number(), dst: number(), len: number())
        }
    }

    private mutating func byte() -> UInt8 {
        defer { at += 1 }
        return packed[at]
    }

    private mutating func number() -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let next = byte()
            value |= UInt64(next & 0x7f) << shift
            if next < 0x80 { return value }
            shift += 7
        }
    }
}

extension Prot {
    /// The letters `w x u g` as bits 0–3 (`r` is always there).
    var bits: UInt8 {
        (writable ? 1 : 0) | (executable ? 2 : 0) | (user ? 4 : 0) | (global ? 8 : 0)
    }

    init(bits: UInt8) {
        self.init(writable: bits & 1 != 0, executable: bits & 2 != 0, user: bits & 4 != 0, global: bits & 8 != 0)
    }
}

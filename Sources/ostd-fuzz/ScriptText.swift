// A decoded op sequence as script text (SCRIPT.md syntax), so that a finding can be replayed with
// `ostd-mm run --audit --memory 64M FILE` and turned into a test.

import OSTDScript

extension Op {
    /// The op as one script line; `ScriptParser` parses it back to the same op.
    var scriptLine: String {
        switch self {
        case .map(let va, let len, let prot, let page, let cache):
            return "map \(hex(va)) \(hex(len)) \(prot.letters) page=\(page.rawValue) cache=\(cache.rawValue)"
        case .unmap(let va, let len): return "unmap \(hex(va)) \(hex(len))"
        case .protect(let va, let len, let prot): return "protect \(hex(va)) \(hex(len)) \(prot.letters)"
        case .query(let va): return "query \(hex(va))"
        case .write(let va, let bytes):
            let digits = bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
            return "write \(hex(va)) \(digits)"
        case .fill(let va, let len, let byte): return "fill \(hex(va)) \(hex(len)) \(hex(UInt64(byte)))"
        case .read(let va, let len): return "read \(hex(va)) \(hex(len))"
        case .copy(let src, let dst, let len): return "copy \(hex(src)) \(hex(dst)) \(hex(len))"
        }
    }
}

/// `ops` as a script, one op a line.
func scriptText(_ ops: some Sequence<Op>) -> String {
    ops.map { $0.scriptLine + "\n" }.joined()
}

private func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

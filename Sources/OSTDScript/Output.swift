// The output of `ostd-mm run` (SCRIPT.md, "JSON Lines output"): one object per op, then the
// summary; or the same as aligned text for people.
//
// JSON is written by hand, field by field, so the order is the contract's: `line`, `op`, `ok`,
// then the op's fields, or `error`, `message` and the fault's fields. Addresses are lowercase
// `0x` hex strings without padding; counts are integers. Lines are written piece by piece into a
// bounded `ScriptOutput`; a large `read`'s data (`.userBytes`) is read and encoded as it is written,
// so no line is ever held whole.

extension OpResult {
    /// Writes the op's line (without its newline) to `output`, as JSON or as text; `data` writes
    /// the hex digits of a `.userBytes` value as it reads them.
    public func write(to output: ScriptOutput, json: Bool, data: (_ va: UInt64, _ count: Int) -> Void) {
        if json { writeJSON(to: output, data: data) } else { writeText(to: output, data: data) }
    }

    func writeJSON(to output: ScriptOutput, data: (UInt64, Int) -> Void) {
        output.append("{\"line\":\(line),\"op\":\"\(op)\",\"ok\":\(ok)")
        if let error {
            output.append(",\"error\":\"\(error.rawValue)\",\"message\":")
            output.appendJSONString(message ?? "")
        }
        for (name, value) in fields {
            output.append(",\"\(name)\":")
            value.writeJSON(to: output, data: data)
        }
        output.append("}")
    }

    func writeText(to output: ScriptOutput, data: (UInt64, Int) -> Void) {
        let status = ok ? "ok" : "FAILED " + (error?.rawValue ?? "")
        output.append(String(line).leftPadded(to: 5) + "  " + op.padded(to: 8) + status.padded(to: 24))
        for (i, (name, value)) in fields.enumerated() {
            output.append((i == 0 ? "" : " ") + name + "=")
            value.writeText(to: output, data: data)
        }
        if let message, !ok { output.append((fields.isEmpty ? "" : "  ") + "(" + message + ")") }
    }

    /// The op as one JSON object (a `.userBytes` value prints no digits).
    public var jsonLine: String { rendered { writeJSON(to: $0, data: { _, _ in }) } }

    /// The op as a line of text: line number, op, outcome, fields (a `.userBytes` value prints no
    /// digits).
    public var textLine: String { rendered { writeText(to: $0, data: { _, _ in }) } }
}

/// What `body` writes to an output, as a string.
func rendered(_ body: (ScriptOutput) -> Void) -> String {
    var bytes: [UInt8] = []
    let output = ScriptOutput { bytes.append(contentsOf: $0) }
    body(output)
    output.flush()
    return String(decoding: bytes, as: UTF8.self)
}

extension ResultValue {
    func writeJSON(to output: ScriptOutput, data: (UInt64, Int) -> Void) {
        switch self {
        case .int(let value): output.append(String(value))
        case .address(let value): output.append("\"" + hex(value) + "\"")
        case .text(let value): output.appendJSONString(value)
        case .bool(let value): output.append(String(value))
        case .userBytes(let va, let count):
            output.append("\"")
            data(va, count)
            output.append("\"")
        }
    }

    func writeText(to output: ScriptOutput, data: (UInt64, Int) -> Void) {
        switch self {
        case .int(let value): output.append(String(value))
        case .address(let value): output.append(hex(value))
        case .text(let value): output.append(value)
        case .bool(let value): output.append(String(value))
        case .userBytes(let va, let count): data(va, count)
        }
    }
}

extension ScriptSummary {
    /// The summary as the last JSON line.
    public var jsonLine: String {
        "{\"summary\":true,\"ops\":\(ops),\"failed\":\(failed),\"root\":\"\(hex(root))\",\"memory\":\"\(hex(memory))\","
            + "\"frames_in_use\":\(framesInUse),\"pt_frames\":\(ptFrames),\"audit\":\"\(audit ? "ok" : "off")\"}"
    }

    /// The summary as text.
    public var textLine: String {
        "summary: \(ops) ops, \(failed) failed; root \(hex(root)), memory \(hex(memory)), "
            + "\(framesInUse) frames in use, \(ptFrames) page-table frames, audit \(audit ? "ok" : "off")"
    }
}

extension ScriptOutput {
    /// Appends `value` as a JSON string literal: its UTF-8 copied as it is, but for `"`, `\` and
    /// the control characters, which are escaped. A string with none of them (a read's hex, most
    /// messages) is copied in one piece.
    func appendJSONString(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            append("\"")
            var clean = 0
            // SAFETY (both appends): the slices lie inside `utf8`, which is valid inside this
            // closure, and `append` copies the bytes before returning.
            for (i, byte) in utf8.enumerated() where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                append(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: utf8[clean..<i])))
                append(jsonEscape(byte))
                clean = i + 1
            }
            append(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: utf8[clean...])))
            append("\"")
        }
    }
}

/// The JSON escape of an ASCII byte that needs one.
private func jsonEscape(_ byte: UInt8) -> String {
    switch byte {
    case UInt8(ascii: "\""): return "\\\""
    case UInt8(ascii: "\\"): return "\\\\"
    case UInt8(ascii: "\n"): return "\\n"
    case UInt8(ascii: "\r"): return "\\r"
    case UInt8(ascii: "\t"): return "\\t"
    default: return "\\u00" + (byte < 0x10 ? "0" : "") + String(byte, radix: 16)
    }
}

extension String {
    func padded(to length: Int) -> String {
        count >= length ? self + " " : self + String(repeating: " ", count: length - count)
    }

    func leftPadded(to length: Int) -> String {
        count >= length ? self : String(repeating: " ", count: length - count) + self
    }
}

// The output of `ostd-mm run` (SCRIPT.md, "JSON Lines output"): one object per op, then the
// summary; or the same as aligned text for people.
//
// JSON is written by hand, field by field, so the order is the contract's: `line`, `op`, `ok`,
// then the op's fields, or `error`, `message` and the fault's fields. Addresses are lowercase
// `0x` hex strings without padding; counts are integers.

extension OpResult {
    /// The op as one JSON object.
    public var jsonLine: String {
        var out = "{\"line\":\(line),\"op\":\"\(op)\",\"ok\":\(ok)"
        if let error {
            out += ",\"error\":\"\(error.rawValue)\",\"message\":\(jsonString(message ?? ""))"
        }
        for (name, value) in fields { out += ",\"\(name)\":\(value.json)" }
        return out + "}"
    }

    /// The op as a line of text: line number, op, outcome, fields.
    public var textLine: String {
        let status = ok ? "ok" : "FAILED " + (error?.rawValue ?? "")
        var out = String(line).leftPadded(to: 5) + "  " + op.padded(to: 8) + status.padded(to: 24)
        out += fields.map { "\($0.0)=\($0.1.text)" }.joined(separator: " ")
        if let message, !ok { out += (fields.isEmpty ? "" : "  ") + "(" + message + ")" }
        return out
    }
}

extension ResultValue {
    var json: String {
        switch self {
        case .int(let value): return String(value)
        case .address(let value): return "\"" + hex(value) + "\""
        case .text(let value): return jsonString(value)
        case .bool(let value): return String(value)
        }
    }

    var text: String {
        switch self {
        case .int(let value): return String(value)
        case .address(let value): return hex(value)
        case .text(let value): return value
        case .bool(let value): return String(value)
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

/// `value` as a JSON string literal.
func jsonString(_ value: String) -> String {
    var out = "\""
    for scalar in value.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 {
                out += "\\u00" + (scalar.value < 0x10 ? "0" : "") + String(scalar.value, radix: 16)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

extension String {
    func padded(to length: Int) -> String {
        count >= length ? self + " " : self + String(repeating: " ", count: length - count)
    }

    func leftPadded(to length: Int) -> String {
        count >= length ? self : String(repeating: " ", count: length - count) + self
    }
}

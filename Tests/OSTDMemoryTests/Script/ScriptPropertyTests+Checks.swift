// Running a script and checking its output: every line parsed as a flat JSON object and compared
// with the model's prediction, the summary's counts, and one issue with the numbered script at
// the first mismatch.

import Testing
import PropertyBased
import OSTDScript

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
func checkScript(_ script: RandomScript) {
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

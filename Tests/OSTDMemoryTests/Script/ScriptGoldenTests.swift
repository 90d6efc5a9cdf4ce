// Golden scripts of `ostd-mm run` (contract: SCRIPT.md): every `Tests/Scripts/NAME.ostd` runs in
// process through `runScriptCommand` with `--json`, and its standard output must equal
// `NAME.jsonl` line by line (exit 0, nothing on standard error) — or, for invalid scripts and
// arguments, its standard error must equal `NAME.stderr` (exit 2, nothing on standard output).
// `NAME.args` holds the arguments (default `--memory 32M`). See Tests/Scripts/README.md.
//
// The expected files were produced by the implementation and then checked line by line against
// SCRIPT.md by hand (addresses, counts, error precedence, `copied` and `data`, summary numbers).
// Besides the exact comparison, every expected JSON line is checked for the contract's shape:
// the fields each op must carry, lowercase unpadded hex, and a summary whose `ops` and `failed`
// agree with the op lines above it.
//
// `read-huge-range` runs from a test of its own: it is the regression of a `read` that allocated
// its whole range up front and crashed on a huge one.

import Foundation
import Testing
import OSTDScript

// MARK: - The cases

enum Golden {
    /// `Tests/Scripts`, found from this file's path (`Tests/OSTDMemoryTests/Script/…`).
    static let directory: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()   // Script
        .deletingLastPathComponent()   // OSTDMemoryTests
        .deletingLastPathComponent()   // Tests
        .appendingPathComponent("Scripts")

    /// Cases run by a test of their own instead of the main one (regressions with a story).
    static let knownBugs: Set<String> = ["read-huge-range"]

    /// Every case name (`NAME` of `NAME.ostd`), sorted.
    static var names: [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return files.filter { $0.hasSuffix(".ostd") }.map { String($0.dropLast(5)) }.sorted()
    }

    /// The cases that run in the main test.
    static var activeNames: [String] { names.filter { !knownBugs.contains($0) } }

    static func url(_ name: String, _ ext: String) -> URL {
        directory.appendingPathComponent("\(name).\(ext)")
    }

    static func text(_ name: String, _ ext: String) -> String? {
        try? String(contentsOf: url(name, ext), encoding: .utf8)
    }

    /// The lines of a text file (a final newline does not make an extra empty line).
    static func lines(_ text: String) -> [String] {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        return lines
    }

    /// The options of a case: `--json`, and `NAME.args` (or `--memory 32M`).
    static func options(_ name: String) throws -> RunOptions {
        var options = RunOptions(script: "\(name).ostd", json: true, memory: "32M")
        guard let args = text(name, "args") else { return options }
        var tokens = args.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).map(String.init)[...]
        while let token = tokens.popFirst() {
            switch token {
            case "--json": break
            case "--audit": options.audit = true
            case "--memory":
                guard let value = tokens.popFirst() else { throw ArgsError(name: name, problem: "--memory needs a value") }
                options.memory = value
            default: throw ArgsError(name: name, problem: "unknown argument '\(token)'")
            }
        }
        return options
    }

    struct ArgsError: Error, CustomStringConvertible {
        var name: String
        var problem: String
        var description: String { "\(name).args: \(problem)" }
    }

    /// What a run printed and returned.
    struct Run {
        var code: Int32
        var output: [String]
        var errors: [String]
    }

    static func run(_ name: String) throws -> Run {
        let script = try #require(text(name, "ostd"), "cannot read \(name).ostd")
        let options = try options(name)
        var output: [String] = []
        var errors: [String] = []
        let code = runScriptCommand(options, text: script, output: { output.append($0) }, errors: { errors.append($0) })
        return Run(code: code, output: output, errors: errors)
    }

    /// Runs a case and compares it with its expected file.
    static func check(_ name: String) throws {
        let run = try run(name)
        if let expectedErrors = text(name, "stderr") {
            #expect(run.code == 2, "\(name): exit code")
            #expect(run.output.isEmpty, "\(name): an invalid script must print nothing on standard output, got \(run.output)")
            compare(expected: lines(expectedErrors), actual: run.errors, what: "\(name).stderr")
        } else {
            let expected = try #require(text(name, "jsonl"), "\(name) has neither .jsonl nor .stderr")
            #expect(run.code == 0, "\(name): exit code; standard error: \(run.errors)")
            #expect(run.errors.isEmpty, "\(name): standard error: \(run.errors)")
            compare(expected: lines(expected), actual: run.output, what: "\(name).jsonl")
        }
    }

    /// Records one issue listing every differing line (up to a limit), or nothing when equal.
    static func compare(expected: [String], actual: [String], what: String) {
        guard expected != actual else { return }
        var report = ["\(what): output differs (expected \(expected.count) lines, got \(actual.count))"]
        var shown = 0
        for i in 0..<max(expected.count, actual.count) {
            let e = i < expected.count ? expected[i] : nil
            let a = i < actual.count ? actual[i] : nil
            guard e != a else { continue }
            shown += 1
            if shown > 12 {
                report.append("  … more differences")
                break
            }
            report.append("  line \(i + 1):")
            report.append("    - expected: \(e ?? "<none>")")
            report.append("    + actual:   \(a ?? "<none>")")
        }
        Issue.record(Comment(rawValue: report.joined(separator: "\n")))
    }
}

// MARK: - The contract's shape of a JSON Lines output

enum JSONContract {
    static let codes: Set<String> = ["out-of-range", "unaligned", "access-conflict", "already-mapped", "out-of-memory", "page-fault"]
    static let ops: Set<String> = ["map", "unmap", "protect", "query", "write", "fill", "read", "copy"]

    /// `0x` and lowercase hex digits, no padding.
    static func isHex(_ value: Any?) -> Bool {
        guard let string = value as? String, string.hasPrefix("0x") else { return false }
        let digits = string.dropFirst(2)
        return !digits.isEmpty && digits.allSatisfy { "0123456789abcdef".contains($0) }
            && (digits == "0" || !digits.hasPrefix("0"))
    }

    static func hexValue(_ value: Any?) -> UInt64? {
        guard isHex(value), let string = value as? String else { return nil }
        return UInt64(string.dropFirst(2), radix: 16)
    }

    /// The raw JSON text of `key`'s value in `line` (numbers and booleans only: up to the next `,`
    /// or `}`); JSONSerialization's `NSNumber`s do not tell integers from booleans portably.
    static func raw(_ key: String, in line: String) -> Substring? {
        guard let start = line.range(of: "\"\(key)\":")?.upperBound else { return nil }
        return line[start...].prefix { $0 != "," && $0 != "}" }
    }

    static func isInt(_ key: String, in line: String) -> Bool {
        guard let token = raw(key, in: line), !token.isEmpty else { return false }
        return token.allSatisfy(\.isASCII) && token.allSatisfy(\.isNumber)
    }

    static func isBool(_ key: String, in line: String) -> Bool {
        raw(key, in: line) == "true" || raw(key, in: line) == "false"
    }

    /// Canonical PROT letters: `r`, then some of `w x u g` in that order.
    static func isCanonicalProt(_ value: Any?) -> Bool {
        guard let prot = value as? String, prot.hasPrefix("r") else { return false }
        var order = Array("wxug")[...]
        for letter in prot.dropFirst() {
            guard let index = order.firstIndex(of: letter) else { return false }
            order = order[(index + 1)...]
        }
        return true
    }

    /// The problems of one output (`lines`), given the `--memory` it ran with.
    static func problems(_ lines: [String], memory: UInt64?) -> [String] {
        var problems: [String] = []
        guard !lines.isEmpty else { return ["no output at all"] }
        var previousLine = 0
        var failed = 0
        for (i, text) in lines.enumerated() {
            func problem(_ message: String) { problems.append("output line \(i + 1): \(message): \(text)") }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
                problem("not a JSON object")
                continue
            }
            if i == lines.count - 1 {
                if object["summary"] as? Bool != true || !isBool("summary", in: text) { problem("the last line is not the summary") }
                if !isInt("ops", in: text) || object["ops"] as? Int != lines.count - 1 { problem("ops is not the number of op lines (\(lines.count - 1))") }
                if !isInt("failed", in: text) || object["failed"] as? Int != failed { problem("failed is not the number of failed ops (\(failed))") }
                if !isHex(object["root"]) { problem("root is not hex") }
                if !isHex(object["memory"]) || (memory != nil && hexValue(object["memory"]) != memory) { problem("memory is not --memory") }
                if !isInt("frames_in_use", in: text) || !isInt("pt_frames", in: text) { problem("frames_in_use, pt_frames must be integers") }
                if object["audit"] as? String != "off" && object["audit"] as? String != "ok" { problem("audit is neither off nor ok") }
                continue
            }
            guard isInt("line", in: text), let line = object["line"] as? Int, line > previousLine else {
                problem("line missing or not increasing")
                continue
            }
            previousLine = line
            guard let op = object["op"] as? String, ops.contains(op) else {
                problem("op missing or unknown")
                continue
            }
            guard isBool("ok", in: text), let ok = object["ok"] as? Bool else {
                problem("ok missing")
                continue
            }
            if !ok {
                failed += 1
                guard let code = object["error"] as? String, codes.contains(code) else {
                    problem("error missing or not a code of the table")
                    continue
                }
                if !(object["message"] is String) { problem("message missing") }
                if code == "page-fault" {
                    if !isHex(object["va"]) { problem("page-fault without a hex va") }
                    if !isInt("copied", in: text) { problem("page-fault without an integer copied") }
                    if op == "read" {
                        let copied = object["copied"] as? Int ?? -1
                        let data = object["data"] as? String
                        if data == nil || data!.count != 2 * copied { problem("a faulting read's data must hold the copied bytes") }
                    }
                }
                continue
            }
            switch op {
            case "map", "unmap", "protect":
                if !isInt("pages", in: text) { problem("pages missing") }
            case "write", "fill", "copy":
                if !isInt("bytes", in: text) { problem("bytes missing") }
            case "read":
                guard let data = object["data"] as? String, data.count % 2 == 0,
                      data.allSatisfy({ "0123456789abcdef".contains($0) }) else {
                    problem("data is not lowercase hex")
                    break
                }
            default: // query
                guard isBool("mapped", in: text), let mapped = object["mapped"] as? Bool else {
                    problem("mapped missing")
                    break
                }
                guard mapped else { break }
                let sizes: [UInt64: String] = [0x1000: "4K", 0x20_0000: "2M", 0x4000_0000: "1G"]
                guard let va = hexValue(object["va"]), let len = hexValue(object["len"]), let pa = hexValue(object["pa"]),
                      let page = sizes[len] else {
                    problem("va, len, pa must be hex, len a leaf size")
                    break
                }
                if va % len != 0 || pa % len != 0 { problem("a leaf's va and pa are aligned to its size") }
                if object["page"] as? String != page { problem("page does not match len") }
                if !isCanonicalProt(object["prot"]) { problem("prot is not canonical") }
                if !["wb", "wt", "wc", "uc"].contains(object["cache"] as? String ?? "") { problem("cache is not wb, wt, wc or uc") }
            }
        }
        return problems
    }
}

// MARK: - Tests

@Suite("ostd-mm run: golden scripts")
struct ScriptGoldenTests {
    @Test("golden script", arguments: Golden.activeNames)
    func golden(_ name: String) throws {
        try Golden.check(name)
    }

    @Test("every case is complete, and every expected JSON output has the contract's shape")
    func casesAreWellFormed() throws {
        let names = Golden.names
        #expect(names.count >= 30, "expected the golden cases in \(Golden.directory.path), found \(names.count)")
        for bug in Golden.knownBugs { #expect(names.contains(bug), "known bug case \(bug) has no script") }
        let files = try FileManager.default.contentsOfDirectory(atPath: Golden.directory.path)
        for file in files where !file.hasSuffix(".ostd") && file != "README.md" {
            let stem = String(file.prefix { $0 != "." })
            #expect(names.contains(stem), "\(file) has no \(stem).ostd")
        }
        for name in names {
            let jsonl = Golden.text(name, "jsonl")
            let stderr = Golden.text(name, "stderr")
            #expect((jsonl == nil) != (stderr == nil), "\(name) needs exactly one of .jsonl and .stderr")
            if let stderr {
                let lines = Golden.lines(stderr)
                #expect(lines.count == 1, "\(name).stderr: one line expected")
                let isScriptError = lines.first?.hasPrefix("\(name).ostd:") == true && lines.first?.contains(": error: ") == true
                let isArgumentError = lines.first?.hasPrefix("ostd-mm: error: ") == true
                #expect(isScriptError || isArgumentError, "\(name).stderr: not `FILE:LINE: error: …` nor an argument error")
            }
            if let jsonl {
                let memory = ScriptParser.parseNumber(try Golden.options(name).memory)
                for problem in JSONContract.problems(Golden.lines(jsonl), memory: memory) {
                    Issue.record("\(name).jsonl: \(problem)")
                }
            }
        }
    }

    /// Regression: `read 0 0x7ffffffff000` allocated 128 TiB before reading and aborted; it now
    /// reads in chunks and faults at once.
    @Test
    func goldenReadOfAHugeRange() throws {
        try Golden.check("read-huge-range")
    }

    /// SCRIPT.md, Errors: an op that fails changes nothing, "no leaked frame"; `map` out of memory
    /// is rolled back. The same script with and without failing maps ends with the same summary.
    @Test("a map that runs out of memory leaves frames_in_use and pt_frames as they were")
    func failedMapsLeaveNoFrameBehind() throws {
        let before = "map 0x1000 4K rwu\nmap 0x40000000 4M rwu page=2M\n"
        let failing = [
            "map 0x80000000 16M rwu",                // 4 KiB leaves; new level-2 and level-1 nodes
            "map 0x8000000000 15M rwu",              // a fresh root entry: new level-3, -2, -1 nodes
            "map 0xc0000000 16M rwu page=2M",        // a few 2 MiB blocks, then none
            "map 0x100000000 1G rwu page=1G",        // no 1 GiB block in 16 MiB
        ]
        let after = "query 0x80000000\nquery 0x8000000000\nquery 0xc0000000\n"
        func summary(_ script: String) throws -> String {
            var output: [String] = []
            let code = runScriptCommand(RunOptions(script: "t.ostd", json: true, memory: "16M"), text: script,
                                        output: { output.append($0) }, errors: { _ in })
            #expect(code == 0)
            let last = try #require(output.last)
            // Everything but the op counts.
            return String(last[last.range(of: "\"root\"")!.lowerBound...])
        }
        let baseline = try summary(before + after)
        for map in failing {
            var output: [String] = []
            _ = runScriptCommand(RunOptions(script: "t.ostd", json: true, memory: "16M"), text: before + map + "\n" + after,
                                 output: { output.append($0) }, errors: { _ in })
            #expect(output.count == 7)
            #expect(output[2].contains("\"error\":\"out-of-memory\""), "\(map): \(output[2])")
            for query in output[3...5] { #expect(query.hasSuffix("\"mapped\":false}"), "\(map): \(query)") }
            #expect(try summary(before + map + "\n" + after) == baseline, "\(map)")
        }
    }
}

// The fuzz target: one input is decoded into at most 64 ops (Decoder.swift), which run on a fresh
// 64 MiB machine with the specification audit on. After every op the audit's quiescent-point
// checks must find nothing, or the process stops with the violations and the ops so far as a
// script (the script text is checked to parse back to the same ops, so the replay is faithful).
// A failing op (out of range, unaligned, already mapped, out of memory, page fault...) is an
// ordinary result, not a finding; a trap in the core is a finding (libFuzzer reports the crash).
// `LLVMFuzzerTestOneInput` is the conventional libFuzzer entry, for a driver that links
// libFuzzer's own `main`; SwiftPM's executables keep their own `main`, which hands `runInput` to
// libFuzzer's driver instead (Entry.swift); the smoke mode calls `runInput` too.

import OSTDScript
import OSTDSpec

/// The machine every input runs on.
let fuzzMemory = 64 << 20

/// What one input did: ops run and ops that succeeded.
struct FuzzStats {
    var ops = 0
    var succeeded = 0
}

/// Runs the ops `data` decodes to, auditing after each; stops the process on a violation.
@discardableResult
func runInput(_ data: [UInt8]) -> FuzzStats {
    let ops = FuzzDecoder.decode(data)
    checkRoundTrip(ops)
    let runner: ScriptRunner
    do {
        runner = try ScriptRunner(memory: fuzzMemory, audit: true)
    } catch {
        fatalError("ostd-fuzz: cannot start a \(fuzzMemory >> 20) MiB machine: \(error)")
    }
    var stats = FuzzStats()
    for (index, op) in ops.enumerated() {
        let result = runner.run(ScriptOp(line: index + 1, op: op))
        stats.ops += 1
        if result.ok { stats.succeeded += 1 }
        let violations = runner.auditViolations()
        guard violations.isEmpty else {
            fatalError("""
                ostd-fuzz: audit violation after op \(index + 1) (\(op.scriptLine)):
                \(violations.map { "  \($0.predicate): \($0.detail)" }.joined(separator: "\n"))
                replay with `ostd-mm run --audit --memory \(fuzzMemory >> 20)M FILE`, FILE being:
                \(scriptText(ops.prefix(index + 1)))
                """)
        }
    }
    return stats
}

/// The script text a finding prints must replay the same ops: it parses back to them.
func checkRoundTrip(_ ops: [Op]) {
    let text = scriptText(ops)
    let parsed: [Op]
    do {
        parsed = try ScriptParser.parse(text, file: "<fuzz>").ops.map(\.op)
    } catch {
        fatalError("ostd-fuzz: the decoded ops' script does not parse: \(error)\n\(text)")
    }
    guard parsed == ops else {
        fatalError("ostd-fuzz: the decoded ops' script parses to other ops:\n\(text)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    runInput(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

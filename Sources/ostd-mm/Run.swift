// `ostd-mm run SCRIPT`: runs an op script against a fresh machine (contract: SCRIPT.md; the
// language in our words: docs/scripts.md). The work is `runScriptCommand` in OSTDScript; this
// file wires it to the script's file (read as it is parsed), standard output (written a bounded
// buffer at a time, a line at a time on a terminal), standard error and a progress line.

import ArgumentParser
import OSTDHost
import OSTDScript

#if canImport(Glibc)
import Glibc
#endif

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an op script against a fresh machine (see docs/scripts.md).",
        discussion: "Exit codes: 0 the script ran, 2 invalid script or arguments (nothing ran), 3 audit violation, 1 other.")

    @Argument(help: "The script's path, or - for standard input.")
    var script: String

    @Flag(help: "Print JSON Lines: one object per op, then a summary.")
    var json = false

    @Option(help: "Physical memory size: a multiple of 2M, e.g. 256M or 0x40000000.")
    var memory = "256M"

    @Option(help: "After the last op, write physical memory to this file (sparse).")
    var image: String?

    @Flag(help: "Check the executable specification after every op.")
    var audit = false

    func run() throws {
        let options = RunOptions(script: script, json: json, memory: memory, image: image, audit: audit)
        let progress = Progress(label: "ops")
        let output = ScriptOutput(flushesLines: isatty(1) != 0, sink: writeToStandardOutput)
        let code = runScriptCommand(options, output: output, errors: printToStandardError, progress: progress.update)
        progress.finish()
        if code != 0 { throw ExitCode(code) }
    }
}

/// Writes all of `bytes` to standard output (a failed write drops the rest, as `print` would).
func writeToStandardOutput(_ bytes: UnsafeRawBufferPointer) {
    var rest = bytes[...]
    while !rest.isEmpty {
        // SAFETY: `rest` is a slice of `bytes`, valid for the call; `write` only reads it.
        let count = write(1, UnsafeRawBufferPointer(rebasing: rest).baseAddress, rest.count)
        if count < 0, errno == EINTR { continue }
        guard count > 0 else { return }
        rest = rest.dropFirst(count)
    }
}

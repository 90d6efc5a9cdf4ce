// `ostd-mm dump SCRIPT`: runs an op script as `run` does, then shows the address space it left: the
// page-table tree and a map of the mapped ranges; `--svg FILE` also draws the map. The work is
// `dumpScriptCommand` in OSTDScript; this file wires it to standard output and standard error.

import ArgumentParser
import OSTDHost
import OSTDScript

struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an op script, then show the page-table tree and the mapped ranges it left.",
        discussion: "Only failed ops are printed, one line each. Exit codes: 0 the script ran, 2 invalid script or arguments (nothing ran), 3 audit violation, 1 other.")

    @Argument(help: "The script's path, or - for standard input.")
    var script: String

    @Option(help: "Physical memory size: a multiple of 2M, e.g. 256M or 0x40000000.")
    var memory = "256M"

    @Option(help: "Also draw the user half's mapped ranges to this SVG file.")
    var svg: String?

    @Flag(help: "Check the executable specification after every op.")
    var audit = false

    func run() throws {
        let options = DumpOptions(script: script, memory: memory, svg: svg, audit: audit)
        let code = dumpScriptCommand(options, output: { print($0) }, errors: printToStandardError)
        if code != 0 { throw ExitCode(code) }
    }
}

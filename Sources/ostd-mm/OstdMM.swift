// The `ostd-mm` command: run op scripts (`run`), show address spaces (`dump`), a tour of the
// memory manager (`demo`), its benchmarks (`bench`) and the hardware page-walker check (`hwcheck`).
//
// Usage errors exit with 2, as SCRIPT.md's contract says (ArgumentParser's default is 64), and
// every message to standard error is made safe for a terminal (`printToStandardError`).

import ArgumentParser
import OSTDHost

@main
struct OstdMM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ostd-mm",
        abstract: "The memory-management core of Asterinas OSTD, in Swift.",
        subcommands: [Run.self, Dump.self, Demo.self, Bench.self, HwCheck.self, Boot.self])

    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            // Help and version go to standard output, as ArgumentParser prints them.
            if code == .success { exit(withError: error) }
            // Everything else through printToStandardError, which keeps an argument's control
            // characters away from the terminal.
            let message = fullMessage(for: error)
            if !message.isEmpty { printToStandardError(message) }
            exit(withError: ExitCode(code == .validationFailure ? 2 : code.rawValue))
        }
    }
}

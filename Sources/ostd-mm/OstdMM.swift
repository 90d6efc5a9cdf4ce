// The `ostd-mm` command: run op scripts (`run`), show address spaces (`dump`), a tour of the
// memory manager (`demo`) and its benchmarks (`bench`).
//
// Usage errors exit with 2, as SCRIPT.md's contract says (ArgumentParser's default is 64).

import ArgumentParser
import OSTDHost

@main
struct OstdMM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ostd-mm",
        abstract: "The memory-management core of Asterinas OSTD, in Swift.",
        subcommands: [Run.self, Dump.self, Demo.self, Bench.self])

    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                printToStandardError(fullMessage(for: error))
                exit(withError: ExitCode(2))
            }
            exit(withError: error)
        }
    }
}

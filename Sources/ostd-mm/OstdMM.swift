// The `ostd-mm` command: a tour of the memory manager (`demo`) and its benchmarks (`bench`).

import ArgumentParser

@main
struct OstdMM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ostd-mm",
        abstract: "The memory-management core of Asterinas OSTD, in Swift.",
        subcommands: [Demo.self, Bench.self])
}

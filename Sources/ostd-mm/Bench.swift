// `ostd-mm bench`: release-mode microbenchmarks of the memory manager, with baselines measured in
// the same run. Each benchmark runs once to warm up, then `repetitions` times; the reported figure
// is the median. Never a pass/fail threshold: numbers are for people to compare. The scaling
// benchmarks (ScalingBenchmarks.swift) run on a small machine of their own with 8 CPUs (two of
// them used), and a summary line per pair gives their speedup on two threads.
//
// `--filter NAME` (repeatable) runs the benchmark of that name; with `--prefix`, every benchmark
// whose name starts with it. A filter that selects nothing is a usage error (exit 2), which lists
// the names. `--list` prints the names (with `--json`, also the operation counts and whether
// instructions can be counted); `--count-instructions N` is scripts/bench-instructions' mode
// (Benchmark.swift).
//
// Memory: each group of benchmarks has a machine of its own (a fresh allocator). Machines are
// made empty up front (reserved, nothing resident); just before a group's first benchmark its
// machine gets huge pages and resident metadata (and resident RAM where the benchmarks hand out
// frames), and after the group's last one it is checked for leaked frames and released. A
// benchmark is dropped as soon as it has run, and with it any state it kept (a `Lazy` table). So
// only one group's memory is resident at a time.

import ArgumentParser
import OSTDHost
@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the microbenchmarks (build with -c release).")

    @Flag(help: "Print JSON Lines {\"bench\": NAME, \"ns_per_op\": X} instead of a table.")
    var json = false

    @Flag(help: "Fewer repetitions: finishes in a few seconds.")
    var quick = false

    @Option(help: "Run only the benchmark of this name (repeatable); see --prefix.")
    var filter: [String] = []

    @Flag(help: "Run every benchmark whose name starts with a --filter text.")
    var prefix = false

    @Flag(help: "Print the benchmarks' names (those --filter selects) instead of running them; with --json, also their operation counts and whether scripts/bench-instructions can count their instructions.")
    var list = false

    @Option(help: ArgumentHelp("Run each selected benchmark once with this many operations and no warm-up, its timed parts inside `countedSection` (scripts/bench-instructions runs this under callgrind).",
                               visibility: .hidden))
    var countInstructions: Int?

    func validate() throws {
        if prefix && filter.isEmpty { throw ValidationError("--prefix needs a --filter") }
        if let count = countInstructions, count < 64 || count % 64 != 0 {
            throw ValidationError("--count-instructions needs a positive multiple of 64 (some benchmarks work in batches of 16 or 64)")
        }
    }

    func run() throws {
        var groups = try Bench.groups()
        try select(&groups)
        if list {
            for bench in groups.flatMap(\.benchmarks) {
                print(json ? "{\"bench\": \"\(bench.name)\", \"operations\": \(bench.operations), \"countable\": \(bench.countable)}"
                           : bench.name)
            }
            return
        }
        if let count = countInstructions {
            for bench in groups.flatMap(\.benchmarks) {
                guard bench.countable else {
                    throw ValidationError("\(bench.name)'s instructions cannot be counted: its threads spin at a start line")
                }
                guard count <= bench.operations else {
                    throw ValidationError("--count-instructions \(count) is more than \(bench.name)'s \(bench.operations) operations")
                }
            }
        }
        #if DEBUG
        if countInstructions == nil {
            printToStandardError("warning: this is a debug build; run `swift run -c release ostd-mm bench` for real numbers")
        }
        #endif
        let repetitions = quick ? 5 : 21
        let total = groups.reduce(0) { $0 + $1.benchmarks.count }
        let progress = Progress(label: "benchmarks")
        var results: [BenchResult] = []
        // Each group, and each benchmark, is dropped (with what it kept) as soon as it has run.
        while !groups.isEmpty {
            var group = groups.removeFirst()
            if let machine = group.machine, countInstructions == nil {
                machine.adviseHugePages()
                machine.populateMetadata()
                // The frames these benchmarks hand out are resident RAM.
                if group.residentMemory { machine.populateMemory() }
            }
            while !group.benchmarks.isEmpty {
                let bench = group.benchmarks.removeFirst()
                if let count = countInstructions {
                    bench.countOnce(operations: count)
                    print("{\"bench\": \"\(bench.name)\", \"counted_operations\": \(count)}")
                    continue
                }
                progress.show("[\(results.count + 1)/\(total)] \(bench.name)…", force: true)
                let result = bench.measure(repetitions: repetitions)
                progress.finish()
                print(json ? result.jsonLine : result.tableRow)
                results.append(result)
            }
            if let machine = group.machine, machine.outstandingFrames != 0 {
                throw ValidationError("the \(group.name) benchmarks leaked \(machine.outstandingFrames) frames")
            }
        }
        for line in ScalingBenchmarks.summary(results, json: json) { print(line) }
    }

    /// Keeps in `groups` only the benchmarks the filters select (all without one), and only the
    /// groups left with some; a filter that selects nothing is a usage error.
    private func select(_ groups: inout [Group]) throws {
        guard !filter.isEmpty else { return }
        let names = groups.flatMap { $0.benchmarks.map(\.name) }
        let matches = { (name: String, text: String) in prefix ? name.hasPrefix(text) : name == text }
        for text in filter where !names.contains(where: { matches($0, text) }) {
            throw ValidationError((prefix ? "no benchmark's name starts with '\(text)'" : "no benchmark is named '\(text)'")
                                  + "; the benchmarks are: " + names.joined(separator: ", "))
        }
        for i in groups.indices {
            groups[i].benchmarks.removeAll { bench in !filter.contains { matches(bench.name, $0) } }
        }
        groups.removeAll { $0.benchmarks.isEmpty }
    }

    /// Benchmarks that share a machine (none for the baselines).
    struct Group {
        let name: String
        let machine: Machine?
        /// Whether all of the machine's memory is made resident before the group runs (its
        /// benchmarks hand out frames, whose first touch must not be a host page fault), or
        /// only its metadata.
        let residentMemory: Bool
        var benchmarks: [Benchmark]
    }

    /// Every benchmark, in the order they run, in groups; the machines are reserved, not yet
    /// resident.
    static func groups() throws -> [Group] {
        let frames = try Machine.host(memory: 1 << 30, cpus: 1)
        let tables = try Machine.host(memory: PageTableBenchmarks.machineMemory, cpus: 1)
        let query = try Machine.host(memory: PageTableBenchmarks.machineMemory, cpus: 1)
        let spaces = try Machine.host(memory: 1 << 30, cpus: 1)
        let scaling = try Machine.host(memory: 64 << 20, cpus: 8)
        return [
            Group(name: "frame", machine: frames, residentMemory: true, benchmarks: FrameBenchmarks.all(machine: frames)),
            Group(name: "page-table", machine: tables, residentMemory: false, benchmarks: PageTableBenchmarks.all(machine: tables)),
            Group(name: "query-rand", machine: query, residentMemory: false,
                  benchmarks: [PageTableBenchmarks.queryRandom(machine: query)]),
            Group(name: "address-space", machine: spaces, residentMemory: true, benchmarks: VmSpaceBenchmarks.all(machine: spaces)),
            Group(name: "scaling", machine: scaling, residentMemory: true, benchmarks: ScalingBenchmarks.all(machine: scaling)),
            Group(name: "fragmentation", machine: nil, residentMemory: false, benchmarks: FragmentationBenchmarks.all()),
            Group(name: "baseline", machine: nil, residentMemory: false, benchmarks: Baselines.all()),
        ]
    }
}

// `ostd-mm bench`: release-mode microbenchmarks of the memory manager, with baselines measured in
// the same run. Each benchmark runs once to warm up, then `repetitions` times; the reported figure
// is the median. Never a pass/fail threshold: numbers are for people to compare. The scaling
// benchmarks (ScalingBenchmarks.swift) run on a small machine of their own with 8 CPUs (two of
// them used), and a summary line per pair gives their speedup on two threads.

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

    @Option(help: "Run only the benchmarks whose name contains this text.")
    var filter: String?

    func run() throws {
        #if DEBUG
        printToStandardError("warning: this is a debug build; run `swift run -c release ostd-mm bench` for real numbers")
        #endif
        let repetitions = quick ? 5 : 21
        let machine = try Machine.host(memory: 1 << 30, cpus: 1)
        let tableMachine = try Machine.host(memory: 3 << 30, cpus: 1)
        let scalingMachine = try Machine.host(memory: 64 << 20, cpus: 8)
        for host in [machine, tableMachine, scalingMachine] {
            host.adviseHugePages()
            host.populateMetadata()
        }
        // The benchmarks (and the tables they keep) are gone when this returns.
        func runAll() throws {
            let all = FrameBenchmarks.all(machine: machine) + PageTableBenchmarks.all(machine: tableMachine)
                + VmSpaceBenchmarks.all(machine: machine) + ScalingBenchmarks.all(machine: scalingMachine)
                + FragmentationBenchmarks.all() + Baselines.all()
            let benches = all.filter { filter.map($0.name.contains) ?? true }
            guard !benches.isEmpty else {
                throw ValidationError("no benchmark's name contains '\(filter ?? "")'; the benchmarks are: "
                                      + all.map(\.name).joined(separator: ", "))
            }
            // The frames the frame and address-space benchmarks hand out are resident RAM.
            machine.populateMemory()
            scalingMachine.populateMemory()
            let progress = Progress(label: "benchmarks")
            var results: [BenchResult] = []
            for (i, bench) in benches.enumerated() {
                progress.show("[\(i + 1)/\(benches.count)] \(bench.name)…", force: true)
                let result = bench.measure(repetitions: repetitions)
                progress.finish()
                print(json ? result.jsonLine : result.tableRow)
                results.append(result)
            }
            for line in ScalingBenchmarks.summary(results, json: json) { print(line) }
        }
        try runAll()
        guard machine.outstandingFrames == 0, tableMachine.outstandingFrames == 0,
              scalingMachine.outstandingFrames == 0 else {
            throw ValidationError("benchmarks leaked frames")
        }
    }
}

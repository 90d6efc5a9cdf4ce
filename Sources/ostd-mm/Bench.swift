// `ostd-mm bench`: release-mode microbenchmarks of the memory manager, with baselines measured in
// the same run. Each benchmark runs once to warm up, then `repetitions` times; the reported figure
// is the median. Never a pass/fail threshold: numbers are for people to compare.

import ArgumentParser
import OSTDHost
import OSTDMemory

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
        for host in [machine, tableMachine] {
            host.adviseHugePages()
            host.populateMetadata()
        }
        // The frames the frame and address-space benchmarks hand out are resident RAM.
        machine.populateMemory()
        // The benchmarks (and the tables they keep) are gone when this returns.
        func runAll() {
            let benches = (FrameBenchmarks.all(machine: machine) + PageTableBenchmarks.all(machine: tableMachine)
                + VmSpaceBenchmarks.all(machine: machine) + Baselines.all())
                .filter { filter.map($0.name.contains) ?? true }
            let progress = Progress(label: "benchmarks")
            for (i, bench) in benches.enumerated() {
                progress.show("[\(i + 1)/\(benches.count)] \(bench.name)…", force: true)
                let result = bench.measure(repetitions: repetitions)
                progress.finish()
                print(json ? result.jsonLine : result.tableRow)
            }
        }
        runAll()
        guard machine.outstandingFrames == 0, tableMachine.outstandingFrames == 0 else {
            throw ValidationError("benchmarks leaked frames")
        }
    }
}

/// One benchmark: `timed(n)` performs `n` operations and returns the nanoseconds they took,
/// leaving any set-up and clean-up it needs outside the timed part.
struct Benchmark {
    let name: String
    let operations: Int
    /// Bytes moved per operation, for a throughput figure (0: report ns per op only).
    var bytesPerOperation = 0
    let timed: (Int) -> UInt64

    /// A benchmark whose whole body is timed.
    init(name: String, operations: Int, bytesPerOperation: Int = 0, body: @escaping (Int) -> Void) {
        self.init(name: name, operations: operations, bytesPerOperation: bytesPerOperation, timing: { n in
            let start = monotonicNanoseconds()
            body(n)
            return monotonicNanoseconds() - start
        })
    }

    /// A benchmark that times itself.
    static func selfTimed(name: String, operations: Int, bytesPerOperation: Int = 0,
                          timed: @escaping (Int) -> UInt64) -> Benchmark {
        Benchmark(name: name, operations: operations, bytesPerOperation: bytesPerOperation, timing: timed)
    }

    private init(name: String, operations: Int, bytesPerOperation: Int, timing timed: @escaping (Int) -> UInt64) {
        self.name = name
        self.operations = operations
        self.bytesPerOperation = bytesPerOperation
        self.timed = timed
    }

    func measure(repetitions: Int) -> BenchResult {
        _ = timed(operations)   // warm-up
        var samples: [Double] = []
        for _ in 0..<repetitions {
            samples.append(Double(timed(operations)) / Double(operations))
        }
        samples.sort()
        return BenchResult(name: name, nsPerOp: samples[samples.count / 2], bytesPerOperation: bytesPerOperation)
    }
}

struct BenchResult {
    let name: String
    let nsPerOp: Double
    let bytesPerOperation: Int

    /// Gigabytes per second, when the benchmark moves bytes.
    var gbps: Double? { bytesPerOperation == 0 ? nil : Double(bytesPerOperation) / nsPerOp }

    var jsonLine: String {
        if let gbps { return "{\"bench\": \"\(name)\", \"ns_per_op\": \(fixed(nsPerOp)), \"gbps\": \(fixed(gbps))}" }
        return "{\"bench\": \"\(name)\", \"ns_per_op\": \(fixed(nsPerOp))}"
    }

    var tableRow: String {
        let throughput = gbps.map { "  \(fixed($0)) GB/s" } ?? ""
        return name.padding(toLength: 28) + fixed(nsPerOp).leftPadded(to: 10) + " ns/op" + throughput
    }
}

/// `value` with two decimals.
func fixed(_ value: Double) -> String {
    let hundredths = Int((value * 100).rounded())
    let fraction = hundredths % 100
    return "\(hundredths / 100)." + (fraction < 10 ? "0" : "") + "\(fraction)"
}

extension String {
    func leftPadded(to length: Int) -> String {
        count >= length ? self : String(repeating: " ", count: length - count) + self
    }
}

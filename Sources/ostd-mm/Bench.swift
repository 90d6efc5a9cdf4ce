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

    func run() throws {
        #if DEBUG
        printToStandardError("warning: this is a debug build; run `swift run -c release ostd-mm bench` for real numbers")
        #endif
        let repetitions = quick ? 5 : 21
        let machine = try Machine.host(memory: 1 << 30, cpus: 1)
        var results: [BenchResult] = []
        for bench in FrameBenchmarks.all(machine: machine) + Baselines.all() {
            let result = bench.measure(repetitions: repetitions)
            results.append(result)
            if json { print(result.jsonLine) } else { print(result.tableRow) }
        }
        guard machine.outstandingFrames == 0 else { throw ValidationError("benchmarks leaked frames") }
    }
}

/// One benchmark: `body(n)` performs `n` operations.
struct Benchmark {
    let name: String
    let operations: Int
    /// Bytes moved per operation, for a throughput figure (0: report ns per op only).
    var bytesPerOperation = 0
    let body: (Int) -> Void

    func measure(repetitions: Int) -> BenchResult {
        body(operations)   // warm-up
        var samples: [Double] = []
        for _ in 0..<repetitions {
            let start = monotonicNanoseconds()
            body(operations)
            samples.append(Double(monotonicNanoseconds() - start) / Double(operations))
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

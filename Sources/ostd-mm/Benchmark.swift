// The benchmark harness: what a benchmark is, how it is measured (one warm-up run, then the median
// of the repetitions, in ns per op and GB/s) and printed, and the helpers the benchmarks' bodies
// use: `timed`, `blackHole` and `Lazy` set-up.

import OSTDHost

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

/// A value made on first use.
final class Lazy<Value> {
    private let make: () -> Value
    private var made: Value?

    init(_ make: @escaping () -> Value) { self.make = make }

    var value: Value {
        if let made { return made }
        let value = make()
        made = value
        return value
    }
}

/// The nanoseconds `body` takes.
@inline(__always)
func timed(_ body: () -> Void) -> UInt64 {
    let start = monotonicNanoseconds()
    body()
    return monotonicNanoseconds() - start
}

/// Keeps `value` alive so the optimiser cannot drop the work that computed it.
@inline(never)
func blackHole<T>(_ value: T) {}

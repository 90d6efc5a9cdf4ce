// The benchmark harness: what a benchmark is, how it is measured (one warm-up run, then the median
// of the repetitions, in ns per op and GB/s; for a benchmark that times its threads also each
// thread's own ns per op) and printed, and the helpers the benchmarks' bodies use: `timed`,
// `blackHole` and `Lazy` set-up.
//
// Instruction counting (`bench --count-instructions N`, driven by scripts/bench-instructions under
// callgrind): a benchmark runs once with N operations and no warm-up, and every timed part runs
// inside `countedSection`, a function that is never inlined, which callgrind is told to count
// alone (`--toggle-collect`); set-up and clean-up outside the timed parts are not counted. The
// script runs N and 2N and divides the difference by N, so what a timed part does once per run
// cancels out too. A benchmark whose threads spin at a start line (`multiThreaded`) is not
// `countable`: callgrind runs threads one at a time, and would count the spinning.

import OSTDHost

/// One timed run of a benchmark: the wall-clock nanoseconds of the whole and, for a benchmark
/// that times its threads (`multiThreaded`), each thread's own nanoseconds (otherwise empty)
/// and the nanoseconds per cache-line handoff between them measured before (two threads).
struct Timing {
    let wall: UInt64
    var perThread: [UInt64] = []
    var handoff: Double? = nil
    /// Counts a benchmark reports besides its time, as (JSON field, value), from its last run.
    var figures: [(String, Int)] = []
}

/// One benchmark: `timed(n)` performs `n` operations and returns the nanoseconds they took,
/// leaving any set-up and clean-up it needs outside the timed part.
struct Benchmark {
    let name: String
    let operations: Int
    /// Bytes moved per operation, for a throughput figure (0: report ns per op only).
    var bytesPerOperation = 0
    /// The threads the operations are spread over, evenly.
    var threads = 1
    /// Whether its instructions can be counted (`countOnce`): all its work on the calling thread,
    /// timed with `timed`.
    var countable = true
    let timed: (Int) -> Timing

    /// A benchmark whose whole body is timed.
    init(name: String, operations: Int, bytesPerOperation: Int = 0, body: @escaping (Int) -> Void) {
        self.init(name: name, operations: operations, bytesPerOperation: bytesPerOperation, threads: 1, timing: { n in
            Timing(wall: ostd_mm.timed { body(n) })
        })
    }

    /// A benchmark that times itself.
    static func selfTimed(name: String, operations: Int, bytesPerOperation: Int = 0,
                          timed: @escaping (Int) -> UInt64) -> Benchmark {
        Benchmark(name: name, operations: operations, bytesPerOperation: bytesPerOperation, threads: 1,
                  timing: { Timing(wall: timed($0)) })
    }

    /// A benchmark whose `operations` are spread evenly over `threads` threads; `timed` returns
    /// the wall-clock time of the whole and each thread's own (`threads` of them).
    static func multiThreaded(name: String, operations: Int, threads: Int,
                              timed: @escaping (Int) -> Timing) -> Benchmark {
        var benchmark = Benchmark(name: name, operations: operations, bytesPerOperation: 0, threads: threads, timing: timed)
        benchmark.countable = false
        return benchmark
    }

    init(name: String, operations: Int, bytesPerOperation: Int, threads: Int,
                 timing timed: @escaping (Int) -> Timing) {
        self.name = name
        self.operations = operations
        self.bytesPerOperation = bytesPerOperation
        self.threads = threads
        self.timed = timed
    }

    /// Runs once to warm up, then `repetitions` times; the medians of the runs' wall-clock ns
    /// per op and (when the benchmark times its threads) of their threads' mean ns per op of
    /// their own share and of the handoffs between them.
    func measure(repetitions: Int) -> BenchResult {
        _ = timed(operations)   // warm-up
        var samples: [Double] = []
        var threadSamples: [Double] = []
        var handoffs: [Double] = []
        var figures: [(String, Int)] = []
        let perThread = Double(operations / threads)
        for _ in 0..<repetitions {
            let timing = timed(operations)
            samples.append(Double(timing.wall) / Double(operations))
            figures = timing.figures
            if let handoff = timing.handoff { handoffs.append(handoff) }
            if !timing.perThread.isEmpty {
                precondition(timing.perThread.count == threads, "\(name) timed \(timing.perThread.count) threads, not \(threads)")
                let mean = timing.perThread.reduce(0.0) { $0 + Double($1) } / Double(threads)
                threadSamples.append(mean / perThread)
            }
        }
        return BenchResult(name: name, nsPerOp: median(samples), bytesPerOperation: bytesPerOperation,
                           threads: threads, threadNsPerOp: threadSamples.isEmpty ? nil : median(threadSamples),
                           handoffNs: handoffs.isEmpty ? nil : median(handoffs), figures: figures)
    }

    /// Runs once with `operations` operations and no warm-up, its timed parts inside
    /// `countedSection` (for callgrind; see the top of this file).
    func countOnce(operations: Int) {
        precondition(countable, "\(name)'s instructions cannot be counted")
        InstructionCounting.isOn = true
        defer { InstructionCounting.isOn = false }
        _ = timed(operations)
    }
}

/// The middle value of `samples` (the upper middle one of an even count).
func median(_ samples: [Double]) -> Double {
    samples.sorted()[samples.count / 2]
}

struct BenchResult {
    let name: String
    /// Wall-clock nanoseconds per operation; on several threads, of all threads' operations
    /// together (the inverse of the throughput of all of them).
    let nsPerOp: Double
    let bytesPerOperation: Int
    var threads = 1
    /// For a benchmark that times its threads: a thread's own nanoseconds per operation of its
    /// share (the mean over the threads), the inverse of the throughput per thread.
    var threadNsPerOp: Double? = nil
    /// For two timed threads: nanoseconds per one-way handoff of a cache line between them,
    /// measured just before the timed part (the machine's condition, not the benchmark's).
    var handoffNs: Double? = nil
    /// `Timing.figures` of the last run.
    var figures: [(String, Int)] = []

    /// Gigabytes per second, when the benchmark moves bytes.
    var gbps: Double? { bytesPerOperation == 0 ? nil : Double(bytesPerOperation) / nsPerOp }

    /// Millions of operations per second, all threads together.
    var mops: Double { 1000 / nsPerOp }

    var jsonLine: String {
        var fields = "\"bench\": \"\(name)\", \"ns_per_op\": \(fixed(nsPerOp))"
        if let gbps { fields += ", \"gbps\": \(fixed(gbps))" }
        if let threadNsPerOp {
            fields += ", \"threads\": \(threads), \"mops\": \(fixed(mops)), \"thread_ns_per_op\": \(fixed(threadNsPerOp))"
                + ", \"thread_mops\": \(fixed(1000 / threadNsPerOp))"
        }
        if let handoffNs { fields += ", \"handoff_ns\": \(fixed(handoffNs))" }
        for (field, value) in figures { fields += ", \"\(field)\": \(value)" }
        return "{" + fields + "}"
    }

    var tableRow: String {
        let throughput = gbps.map { "  \(fixed($0)) GB/s" } ?? ""
        let perThread = threadNsPerOp.map {
            "  \(fixed(mops)) Mops/s on \(threads) thread\(threads == 1 ? "" : "s"); "
                + "each thread \(fixed(1000 / $0)) Mops/s, \(fixed($0)) ns/op"
        } ?? ""
        let handoff = handoffNs.map { "; handoff \(fixed($0)) ns" } ?? ""
        return name.padding(toLength: 28) + fixed(nsPerOp).leftPadded(to: 10) + " ns/op" + throughput + perThread + handoff
            + figures.map { "  \($0) \($1)" }.joined()
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

/// The nanoseconds `body` takes; when counting instructions, 0, with `body` run inside
/// `countedSection`.
@inline(__always)
func timed(_ body: () -> Void) -> UInt64 {
    if InstructionCounting.isOn {
        countedSection(body)
        return 0
    }
    let start = monotonicNanoseconds()
    body()
    return monotonicNanoseconds() - start
}

/// Whether the timed parts run inside `countedSection` (set by `Benchmark.countOnce`, on the
/// main thread, while no benchmark thread runs).
enum InstructionCounting {
    // SAFETY: written only by `countOnce` on the main thread while no benchmark thread runs, and
    // read by the timed parts that thread then runs: no concurrent access.
    nonisolated(unsafe) static var isOn = false
}

/// Runs `body`: what scripts/bench-instructions has callgrind count (`--toggle-collect`
/// matches this name, in its specialisations' symbols too). Never inlined, so that it is a
/// function of its own to callgrind.
@inline(never)
func countedSection(_ body: () -> Void) {
    body()
}

/// Keeps `value` alive so the optimiser cannot drop the work that computed it.
@inline(never)
func blackHole<T>(_ value: T) {}

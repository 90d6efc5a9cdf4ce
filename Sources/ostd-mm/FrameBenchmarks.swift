// Benchmarks of the frame layer: allocation and freeing, single and batched, zeroed or not, and
// clone and drop.

@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec

enum FrameBenchmarks {
    static func all(machine: Machine) -> [Benchmark] {
        let noZero = FrameAllocOptions().zeroed(false)
        return [
            Benchmark(name: "frame-alloc-free", operations: 1_000_000) { n in
                machine.withCpu(0) {
                    for _ in 0..<n { _ = try! noZero.allocFrame(in: machine) }
                }
            },
            Benchmark(name: "frame-alloc-free-unbound", operations: 1_000_000) { n in
                for _ in 0..<n { _ = try! noZero.allocFrame(in: machine) }
            },
            Benchmark(name: "frame-alloc-free-zeroed", operations: 200_000) { n in
                machine.withCpu(0) {
                    for _ in 0..<n { _ = try! FrameAllocOptions().allocFrame(in: machine) }
                }
            },
            Benchmark(name: "frame-alloc-free-batch-64", operations: 64 * 10_000) { n in
                machine.withCpu(0) { allocThenFree(machine, batches: n / 64, of: 64) }
            },
            cloneDrop(machine),
            Benchmark(name: "segment-alloc-free-16", operations: 200_000) { n in
                for _ in 0..<n { _ = try! noZero.allocSegment(16, in: machine) }
            },
        ]
    }

    private static func cloneDrop(_ machine: Machine) -> Benchmark {
        Benchmark(name: "frame-clone-drop", operations: 10_000_000) { n in
            let frame = try! FrameAllocOptions().zeroed(false).allocFrame(in: machine)
            for _ in 0..<n { _ = frame.clone() }
        }
    }

    /// Allocates `batchSize` frames, then frees them, `batches` times: cache refills and flushes.
    private static func allocThenFree(_ machine: Machine, batches: Int, of batchSize: Int) {
        var held: [Paddr] = []
        held.reserveCapacity(batchSize)
        for _ in 0..<batches {
            for _ in 0..<batchSize { held.append(try! FrameAllocOptions().zeroed(false).allocFrame(in: machine).intoRaw()) }
            for paddr in held { _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine) }
            held.removeAll(keepingCapacity: true)
        }
    }
}

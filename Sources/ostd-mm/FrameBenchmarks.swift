// Benchmarks of the frame layer and the baselines they are read against.

import OSTDHost
import OSTDMemory
import Synchronization

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

enum Baselines {
    static func all() -> [Benchmark] {
        let source = UnsafeMutableRawPointer.allocate(byteCount: 64 << 10, alignment: 4096)
        let destination = UnsafeMutableRawPointer.allocate(byteCount: 64 << 10, alignment: 4096)
        source.initializeMemory(as: UInt8.self, repeating: 1, count: 64 << 10)
        destination.initializeMemory(as: UInt8.self, repeating: 0, count: 64 << 10)
        return [
            Benchmark(name: "zero-4k", operations: 200_000, bytesPerOperation: 4096) { n in
                for i in 0..<n { memsetBaseline(destination + (i & 15) * 4096, 4096) }
            },
            Benchmark(name: "memcpy-64k", operations: 20_000, bytesPerOperation: 64 << 10) { n in
                for _ in 0..<n { memcpyBaseline(destination, source, 64 << 10) }
            },
            // The floor under clone+drop: one atomic increment and one decrement of a word.
            Benchmark(name: "atomic-inc-dec", operations: 10_000_000) { n in
                let word = Atomic<UInt64>(1)
                for _ in 0..<n {
                    word.add(1, ordering: .relaxed)
                    word.subtract(1, ordering: .releasing)
                }
            },
        ]
    }
}

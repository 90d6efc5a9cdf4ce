// The baselines the other benchmarks are read against, measured in the same run: libc's `memset`
// of 4 KiB and `memcpy` of 64 KiB (OSTDHost's out-of-line wrappers), and an atomic increment and
// decrement, the floor under a frame's clone and drop.

import OSTDHost
import Synchronization

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

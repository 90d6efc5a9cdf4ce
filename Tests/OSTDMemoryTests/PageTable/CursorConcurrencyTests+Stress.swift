// The stress test: threads map and unmap 4 KiB frames in random ranges, shared by all threads
// (around a 2 MiB, a 1 GiB and a 512 GiB boundary) or private, now and then sweeping a region;
// under its cursor each checks that its changes hold, and at the end every frame mapped was
// unmapped exactly once and nothing leaked. Failures name the random seed.

import Foundation
import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

extension CursorConcurrencyTests {
    // MARK: 2. Stress

    struct StressSetup: Sendable, CustomTestStringConvertible {
        let threads: Int
        let iterations: Int
        let bindCpus: Bool
        var testDescription: String { "\(threads) threads\(bindCpus ? " bound to CPUs" : ""), \(iterations) rounds each" }
    }

    static let stressSetups = [
        StressSetup(threads: 2, iterations: 2000, bindCpus: false),
        StressSetup(threads: 4, iterations: 1000, bindCpus: true),
    ]

    /// Threads map and unmap 4 KiB frames in random ranges: some shared by all threads (around a
    /// 2 MiB, a 1 GiB and a 512 GiB boundary, so that cursors lock subtrees of every level), some
    /// private; now and then one sweeps a region with a range that takes whole level-1 subtrees.
    /// Under its cursor a thread checks that what it mapped stays mapped and what it unmapped
    /// stays unmapped. At the end every frame mapped was unmapped exactly once, only the root is
    /// left, and nothing leaked.
    @Test(arguments: stressSetups)
    func randomMapUnmapStress(setup: StressSetup) throws {
        let (machine, table) = try machineWithEmptyTable(memory: 32 << 20, cpus: setup.bindCpus ? setup.threads : 1)
        let mapped = SharedInt(), taken = SharedInt()
        let failures = Failures()
        let seed = UInt64.random(in: 0...UInt64.max)
        let property = rw

        // (first page, page count): shared regions, then each thread's private ones.
        let sharedRegions: [(UInt64, Int)] = [
            (mib2 - 16 * kib4, 32),
            (gib1 - 16 * kib4, 32),
            (gib512 - 8 * kib4, 16),
        ]
        let sweeps: [Range<Vaddr>] = [
            Vaddr(0)..<Vaddr(2 * mib2),
            Vaddr(gib1 - mib2)..<Vaddr(gib1 + mib2),
            Vaddr(gib512 - mib2)..<Vaddr(gib512 + mib2),
        ]

        let finished = runThreads(setup.threads, timeout: .seconds(30)) { thread in
            var rng = SplitMix64(state: seed &+ UInt64(thread) &* 0x1_0000_0001)
            let privateRegions: [(UInt64, Int)] = [
                (UInt64(thread + 2) * gib1 + mib2 - 8 * kib4, 16),
                (UInt64(thread + 2) * gib512, 16),
            ]
            func work() {
                for round in 0..<setup.iterations {
                    let pick = Int(rng.next() % 100)
                    let (base, count) = pick < 55 ? sharedRegions[pick % 3] : privateRegions[pick % 2]
                    let first = Int(rng.next() % UInt64(count))
                    let length = 1 + Int(rng.next() % UInt64(min(8, count - first)))
                    let range = pages(base + UInt64(first) * kib4, length)
                    let op = Int(rng.next() % 100)
                    do {
                        if op < 4 {
                            // Sweep a shared region with a range covering whole level-1 nodes.
                            let sweep = sweeps[round % 3]
                            var cursor = try table.cursorMut(sweep)
                            taken.add(takeAll(&cursor, upTo: sweep.upperBound))
                            try cursor.jump(sweep.lowerBound)
                            failures.check(cursor.findNext(sweep.upperBound - sweep.lowerBound) == nil,
                                           "thread \(thread): \(sweep) still mapped after the sweep")
                            _ = consume cursor
                            continue
                        }
                        var cursor = try table.cursorMut(range)
                        if op < 50 || op >= 85 {
                            // Map every page that is free; check they all are mapped then.
                            var page = range.lowerBound
                            while page < range.upperBound {
                                try cursor.jump(page)
                                let frame = try FrameAllocOptions().zeroed(false).allocFrame(in: machine)
                                let paddr = frame.paddr
                                if let failure = cursor.tryMap(MappedItem(frame: frame, property: property)) {
                                    failures.check(failure.error == .alreadyMapped(page),
                                                   "thread \(thread): tryMap at \(page) failed with \(failure.error)")
                                    _ = consume failure
                                } else {
                                    mapped.add(1)
                                    try cursor.jump(page)
                                    failures.check(try cursor.query().item?.paddr == paddr,
                                                   "thread \(thread): the page just mapped at \(page) is not there")
                                }
                                page = page + pageSize
                            }
                            page = range.lowerBound
                            while page < range.upperBound {
                                try cursor.jump(page)
                                failures.check(try cursor.query().item != nil,
                                               "thread \(thread): \(page) unmapped under a cursor that mapped it")
                                page = page + pageSize
                            }
                        }
                        if op >= 50 {
                            // Unmap all, or a part.
                            var part = range
                            if op >= 85 {
                                let start = Int(rng.next() % UInt64(length))
                                let end = start + 1 + Int(rng.next() % UInt64(length - start))
                                part = (range.lowerBound + start * pageSize)..<(range.lowerBound + end * pageSize)
                            }
                            try cursor.jump(part.lowerBound)
                            let count = takeAll(&cursor, upTo: part.upperBound)
                            taken.add(count)
                            if op >= 85 {
                                failures.check(count == part.pageCount(pageSize),
                                               "thread \(thread): took \(count) pages of \(part), all mapped by it")
                                // Nobody else can have mapped it meanwhile: this map must work.
                                try cursor.jump(part.lowerBound)
                                let frame = try FrameAllocOptions().zeroed(false).allocFrame(in: machine)
                                if let failure = cursor.tryMap(MappedItem(frame: frame, property: property)) {
                                    failures.record("thread \(thread): remapping \(part.lowerBound) failed: \(failure.error)")
                                    _ = consume failure
                                } else {
                                    mapped.add(1)
                                }
                            } else {
                                try cursor.jump(part.lowerBound)
                                failures.check(cursor.findNext(part.upperBound - part.lowerBound) == nil,
                                               "thread \(thread): \(part) still mapped after unmapping it")
                            }
                        }
                        _ = consume cursor
                    } catch {
                        failures.record("thread \(thread) round \(round): \(error)")
                    }
                }
            }
            if setup.bindCpus { machine.withCpu(thread) { work() } } else { work() }
        }
        try requireThreadsDone(finished, failures, table, deadlock: "stress threads deadlocked (seed \(seed))", note: " (seed \(seed))")
        #expect(table.structuralViolations() == [], "seed \(seed)")
        #expect(table.view().mappings.count == mapped.load() - taken.load(), "seed \(seed)")
        let rest = try unmapEverything(table)
        #expect(mapped.load() == taken.load() + rest, "seed \(seed)")
        #expect(mapped.load() > setup.threads * setup.iterations / 4)
        expectOnlyTheRoot(table, machine)
        #expect(machine.cleanInv())
    }
}

private extension Range where Bound == Vaddr {
    /// The number of `size`-byte pages in the range.
    func pageCount(_ size: Int) -> Int { (upperBound - lowerBound) / size }
}

// Benchmarks of the page table, shaped like the peer's (the Rust `x86_64` crate measured over a
// 2 GiB region): sequential map, unmap and protect of 4 KiB pages with one cursor, random
// queries, and 2 MiB maps. Set-up and clean-up stay outside the timed part. Data frames come from
// the CPU's frame cache without zeroing, so "map" includes frame allocation and "unmap" includes
// frame freeing and node reclamation. The sequential 4 KiB benchmarks' `n` operations are the
// region's first `n` pages: all 524 288 when timed, fewer when counting instructions (N and 2N,
// Benchmark.swift); the random ones take the first `n` of their addresses.
//
// `query-rand` reads a table of its own, mapped when it first runs on a machine nothing else
// uses (`queryRandom(machine:)`): the same frames and nodes in the same places every time, so its
// figure does not depend on the benchmarks before it. (It read the table `protect-4k-seq` had
// mapped on the shared machine, wherever earlier benchmarks had left the allocator's free
// frames, and measured 13–47 ns as the set of benchmarks run before it changed.)

import OSTDHost
@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec

enum PageTableBenchmarks {
    /// The region the 4 KiB benchmarks cover: 2 GiB, 524 288 pages.
    static let region = Vaddr(0)..<Vaddr(2 << 30)
    static var pages: Int { Int(region.upperBound.rawValue) / pageSize }
    static let rw = PageProperty.user(.rw)
    /// The memory of a machine for these benchmarks: one mapped region at a time, its 2 GiB of
    /// data frames and 1 029 nodes, and the metadata of all the machine's frames (33 MiB).
    static let machineMemory = (2 << 30) + (64 << 20)

    /// The benchmarks on `machine` (of `machineMemory`), in order; `query-rand` is not among them
    /// (`queryRandom(machine:)`).
    static func all(machine: Machine) -> [Benchmark] {
        // Protect and translate read one table, mapped once: they measure a warm table, as the
        // peer's `update_flags` and `translate` loops do.
        let mapped = Lazy { mappedTable(machine) }
        return [
            Benchmark.selfTimed(name: "map-4k-seq", operations: pages) { n in
                let table = try! PageTable<UserPtConfig>(empty: machine)
                return machine.withCpu(0) { timed { mapAll(table, machine, count: n) } }
            },
            // The page table alone: untracked pages, no frame allocation or reference counting.
            Benchmark.selfTimed(name: "map-4k-untracked", operations: pages) { n in
                let table = try! PageTable<UserPtConfig>(empty: machine)
                defer { unmapAll(table, step: Int(region.upperBound.rawValue)) }
                return machine.withCpu(0) { timed { mapAllUntracked(table, count: n) } }
            },
            Benchmark.selfTimed(name: "unmap-4k-seq", operations: pages) { n in
                let table = mappedTable(machine)
                return machine.withCpu(0) { timed { unmapAll(table, in: firstPages(n), step: n * pageSize) } }
            },
            Benchmark.selfTimed(name: "unmap-4k-each", operations: pages) { n in
                let table = mappedTable(machine)
                return machine.withCpu(0) { timed { unmapAll(table, in: firstPages(n), step: pageSize) } }
            },
            Benchmark.selfTimed(name: "protect-4k-seq", operations: pages) { n in
                let table = mapped.value
                return timed { protectAll(table, count: n) }
            },
            translateRandom(mapped),
            Benchmark.selfTimed(name: "map-2m-seq", operations: 8192) { n in
                let table = try! PageTable<UserPtConfig>(empty: machine)
                let elapsed = timed { mapHuge(table, count: n) }
                unmapAll(table, in: Vaddr(0)..<Vaddr(UInt64(n) << 21), step: n << 21)
                return elapsed
            },
        ]
    }

    /// Random `jump` + `query` with one cursor over the mapped region, of a table of its own on
    /// `machine` (of `machineMemory`), which nothing else may use: mapped at the first run, before
    /// any other frame of the machine is allocated, so always with the same frames and nodes.
    static func queryRandom(machine: Machine) -> Benchmark {
        let addresses = randomPages(count: 1 << 20)
        let mapped = Lazy { mappedTable(machine) }
        return Benchmark.selfTimed(name: "query-rand", operations: addresses.count) { n in
            var cursor = try! mapped.value.cursor(region)
            var sum: UInt64 = 0
            let elapsed = timed {
                for va in addresses.prefix(n) {
                    try! cursor.jump(va)
                    sum &+= try! cursor.query().item!.paddr.rawValue
                }
            }
            blackHole(sum)
            return elapsed
        }
    }

    /// Random lock-free walks (`pageWalk`, what the MMU does), as the peer's `translate`, inside
    /// one read-side section.
    private static func translateRandom(_ mapped: Lazy<PageTable<UserPtConfig>>) -> Benchmark {
        let addresses = randomPages(count: 1 << 20)
        return Benchmark.selfTimed(name: "translate-rand", operations: addresses.count) { n in
            let table = mapped.value
            var sum: UInt64 = 0
            // One read-side section for the loop, as OSTD's `page_walk` runs in its caller's.
            let elapsed = table.withReadSection { section in
                timed {
                    for va in addresses.prefix(n) { sum &+= table.pageWalk(va, in: section)!.paddr.rawValue }
                }
            }
            blackHole(sum)
            return elapsed
        }
    }

    // MARK: Operations

    /// The first `count` pages of the region.
    static func firstPages(_ count: Int) -> Range<Vaddr> { region.lowerBound..<(region.lowerBound + count * pageSize) }

    /// Maps the first `count` pages (default: all) with fresh frames, with one cursor over the region.
    static func mapAll(_ table: PageTable<UserPtConfig>, _ machine: Machine, count: Int = pages) {
        // Bounds `count`, so that the loop is compiled as with the constant `pages`.
        precondition(count <= pages)
        let options = FrameAllocOptions().zeroed(false)
        var cursor = try! table.cursorMut(region)
        for _ in 0..<count {
            // SAFETY: a tracked frame in a benchmark table that no CPU uses.
            unsafe cursor.map(MappedItem(frame: try! options.allocFrame(in: machine), property: rw))
        }
    }

    static func mapAllUntracked(_ table: PageTable<UserPtConfig>, count: Int) {
        precondition(count <= pages)   // as in `mapAll`
        var cursor = try! table.cursorMut(region)
        for i in 0..<count {
            // SAFETY: a benchmark table that no CPU ever uses; it maps the machine's own memory.
            unsafe cursor.map(MappedItem(untracked: Paddr(UInt64(i) << 12), level: 1, property: rw))
        }
    }

    /// Removes everything, `step` bytes per `takeNext` call (the whole range: whole subtrees
    /// come out at once; one page: leaf by leaf, with node reclamation).
    static func unmapAll(_ table: PageTable<UserPtConfig>, in range: Range<Vaddr> = region, step: Int) {
        var cursor = try! table.cursorMut(range)
        while cursor.virtAddr < range.upperBound {
            // SAFETY: no CPU uses the table, so no TLB can reach what is removed.
            _ = unsafe cursor.takeNext(min(step, range.upperBound - cursor.virtAddr))
        }
    }

    /// Toggles `W` on the first `count` pages, with one cursor over the region.
    static func protectAll(_ table: PageTable<UserPtConfig>, count: Int) {
        precondition(count <= pages)   // as in `mapAll`
        let end = firstPages(count).upperBound
        var cursor = try! table.cursorMut(region)
        // SAFETY: no CPU uses the table, so no TLB holds the old rights.
        while unsafe cursor.protectNext(end - cursor.virtAddr, { $0.flags.formSymmetricDifference(.w) }) != nil {}
    }

    static func mapHuge(_ table: PageTable<UserPtConfig>, count: Int) {
        var cursor = try! table.cursorMut(Vaddr(0)..<Vaddr(UInt64(count) << 21))
        for i in 0..<count {
            // SAFETY: as in `mapAllUntracked`.
            unsafe cursor.map(MappedItem(untracked: Paddr(UInt64(i) << 21), level: 2, property: rw))
        }
    }

    /// A table with the whole region mapped.
    static func mappedTable(_ machine: Machine) -> PageTable<UserPtConfig> {
        let table = try! PageTable<UserPtConfig>(empty: machine)
        machine.withCpu(0) { mapAll(table, machine) }
        return table
    }

    /// `count` page addresses spread over the region by a fixed linear congruential sequence.
    static func randomPages(count: Int) -> [Vaddr] {
        var state: UInt64 = 0x9e37_79b9_7f4a_7c15
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Vaddr(((state >> 33) % UInt64(pages)) << 12)
        }
    }
}

// Scaling benchmarks of the page table: do cursors over disjoint ranges, on two CPUs at once, go
// twice as fast as on one? Each `-tN` benchmark runs N threads (pthreads, each bound to its own
// simulated CPU), every thread doing the same work in its own range of one shared user page
// table; `-t1` and `-t2` of a group differ only in the number of threads.
//
// Design:
// - A run creates a fresh table and lays out what must outlive the cycles (below), then starts
//   the threads. Each binds to its CPU, prepares its region (untimed), and waits at a start line
//   (spinning); once all are there the main thread notes the time and releases them. The run's
//   wall-clock time is from that release to the last thread's end; each thread also times its
//   own share. Thread creation, set-up and the table's teardown are outside both.
// - An operation is one 4 KiB page mapped or unmapped. Data frames come from the thread's CPU
//   frame cache without zeroing, as in `map-4k-seq`; unmapping drops them back into it.
// - Thread i runs on CPU 4i of a machine with 8: the CPU-local frame caches are 16-byte records
//   side by side (`CpuLocal`), so those of CPUs 0 and 1 share a cache line, and two threads
//   allocating on them slow each other down whatever the page table does. Four records apart
//   they never share one, and what is measured is the page table.
// - `scale-2m`: the threads' 2 MiB ranges lie 64 MiB apart in one 1 GiB region (so they share
//   the root, a level-3 and a level-2 node, and no cache line of the level-2 node's entries). A
//   cycle: a `cursorMut` over the 2 MiB maps 512 pages, drop; another takes them all back
//   (`takeNext`), drop. A page mapped at the region's end keeps the shared level-3 and level-2
//   nodes alive, so one thread alone does not free and rebuild them every cycle; each cycle
//   still allocates its level-1 node and frees it when the unmapping cursor is dropped. So the
//   mapping cursor finds its level-2 entry absent, and as the range covers that entry exactly it
//   stops at the shared level-2 node (Locking.swift) and holds that node's lock while it maps
//   its 512 pages: the two threads' mapping cursors take turns on that lock, and will with
//   any descent as long as a cursor stops there.
// - `scale-1g`: thread i works in the 1 GiB at (i + 1) × 512 GiB, so the threads' regions are
//   under different root entries and share only the root node. A cycle: a `cursorMut` over
//   64 KiB maps 16 pages, drop; another unmaps them, drop; the next cycle moves 64 KiB on. A
//   page mapped at the end of each 2 MiB of the region (set up untimed; the cycles skip that
//   64 KiB) keeps every node below the root alive, so the cycles measure cursors, not node
//   allocation. `scale-1g-reclaim` is the same without those pages: every unmapping cursor
//   leaves its level-1, level-2 and level-3 nodes empty, frees them (locking the path from the
//   root again) and the next cycle allocates them anew. `scale-1g-private` is `scale-1g` with a
//   table per thread, so the threads share no page-table node at all: the control, how far two
//   threads scale on this machine when nothing of the table is shared.
// - Each two-thread run also measures, untimed, just before its start line, the two threads
//   passing a counter back and forth through one atomic word: the cost of moving a contended
//   cache line from one host CPU to the other, reported as `handoff`. On the project's VM it is
//   either 40–65 or about 200 ns, as the host places the two virtual CPUs (which can change
//   from one run to the next), and more when another process has one of them; the shared
//   tables' speedups follow it, so compare runs at a like handoff.
// Every cursor is created from the root. Until issue 15 the descent was hand over hand, so every
// cursor locked the root on its way down; now it reads the root's entries without a lock, and
// the cursors borrow the table (`withCursorMut`), so no reference count of it is touched either.

import Glibc
import OSTDHost
@_spi(OSTDInternals) import OSTDMemory
import Synchronization

enum ScalingBenchmarks {
    static let rw = PageProperty.user(.rw)
    /// A thread's cycles per run: a one-thread run takes 20–30 ms on the project machine.
    static let cycles2m = 1_000
    static let cycles1g = 30_000

    /// How far apart the threads' CPUs are: far enough for their frame caches' records
    /// (16 bytes each) to lie in different cache lines.
    static let cpuStride = 4

    /// The benchmarks, on `machine`, which must have `cpuStride + 1` CPUs.
    static func all(machine: Machine) -> [Benchmark] {
        precondition(machine.cpuCount > cpuStride, "the scaling benchmarks need a machine with \(cpuStride + 1) CPUs")
        return [1, 2].map { twoMiB(machine, threads: $0) }
            + OneGiB.allCases.flatMap { variant in [1, 2].map { oneGiB(machine, threads: $0, variant) } }
    }

    // MARK: The workloads

    /// The 1 GiB region the 2 MiB ranges of `scale-2m` lie in (root entry 0, level-3 entry 1).
    static let region2m = Vaddr(1 << 30)
    /// How far apart the threads' 2 MiB ranges are: 32 level-2 entries, 4 cache lines.
    static let stride2m = 64 << 20

    /// `scale-2m-tN`: each thread maps and unmaps its own 2 MiB, 512 pages per cursor.
    static func twoMiB(_ machine: Machine, threads: Int) -> Benchmark {
        scaling(name: "scale-2m-t\(threads)", machine, threads: threads, cycles: cycles2m, pagesPerCycle: 2 * 512,
                prepareTable: { table in mapFresh(table, machine, at: region2m + ((1 << 30) - pageSize), count: 1) },
                prepareThread: { _, _ in },
                cycle: { table, thread, _ in
                    let start = region2m + thread * stride2m
                    mapFresh(table, machine, at: start, count: 512)
                    unmapAll(table, in: start..<start + (2 << 20))
                })
    }

    /// 64 KiB windows per 2 MiB in `scale-1g`: the last one of each holds the page that keeps
    /// the level-1 node (in `scale-1g-reclaim` it is skipped all the same).
    static let windowsPerChunk = 31

    /// The first address of thread `thread`'s 1 GiB region in `scale-1g`: under root entry
    /// `thread + 1`.
    static func region1g(_ thread: Int) -> Vaddr { Vaddr(UInt64(thread + 1) << 39) }

    /// The variants of `scale-1g`, named by the text after `scale-1g`.
    enum OneGiB: String, CaseIterable {
        /// One table; every node below the root kept.
        case kept = ""
        /// One table; nodes freed and allocated anew every cycle.
        case reclaim = "-reclaim"
        /// A table per thread; every node below the root kept.
        case privateTables = "-private"
    }

    /// `scale-1g-tN` and its variants: each thread maps and unmaps 16 pages per cursor, moving
    /// through its own 1 GiB region.
    static func oneGiB(_ machine: Machine, threads: Int, _ variant: OneGiB) -> Benchmark {
        let windows = 512 * windowsPerChunk
        return scaling(name: "scale-1g\(variant.rawValue)-t\(threads)", machine, threads: threads,
                       privateTables: variant == .privateTables, cycles: cycles1g, pagesPerCycle: 2 * 16,
                       prepareTable: { _ in },
                       prepareThread: { table, thread in
                           if variant != .reclaim { mapChunkEnds(table, machine, in: region1g(thread)) }
                       },
                       cycle: { table, thread, i in
                           let window = i % windows
                           let start = region1g(thread) + (window / windowsPerChunk) * (2 << 20)
                               + (window % windowsPerChunk) * (64 << 10)
                           mapFresh(table, machine, at: start, count: 16)
                           unmapAll(table, in: start..<start + (64 << 10))
                       })
    }

    // MARK: Operations

    /// Maps `count` fresh 4 KiB frames from `start` on, with one cursor over exactly them.
    /// The cursors borrow the table for their scope (`withCursorMut`), as OSTD's borrow
    /// `&PageTable`: a cursor that retained it would add two contended atomics on the shared
    /// table object's reference count to every cursor.
    static func mapFresh(_ table: PageTable<UserPtConfig>, _ machine: Machine, at start: Vaddr, count: Int) {
        let options = FrameAllocOptions().zeroed(false)
        try! table.withCursorMut(start..<start + count * pageSize) { (cursor: inout CursorMut<UserPtConfig>) in
            for _ in 0..<count {
                // SAFETY: a tracked frame in a benchmark table that no CPU uses.
                unsafe cursor.map(MappedItem(frame: try! options.allocFrame(in: machine), property: rw))
            }
        }
    }

    /// Takes everything in `range` with one borrowing cursor.
    static func unmapAll(_ table: PageTable<UserPtConfig>, in range: Range<Vaddr>) {
        try! table.withCursorMut(range) { (cursor: inout CursorMut<UserPtConfig>) in
            // SAFETY: no CPU uses the table, so no TLB can reach what is removed.
            while unsafe cursor.takeNext(range.upperBound - cursor.virtAddr) != nil {}
        }
    }

    /// Maps one page at the end of each 2 MiB of the 1 GiB at `region`, so that none of the
    /// region's nodes is ever left empty.
    static func mapChunkEnds(_ table: PageTable<UserPtConfig>, _ machine: Machine, in region: Vaddr) {
        for chunk in 0..<512 {
            mapFresh(table, machine, at: region + chunk * (2 << 20) + ((2 << 20) - pageSize), count: 1)
        }
    }

    // MARK: Running threads together

    /// A benchmark of `threads` threads, thread i on CPU `i × cpuStride`, each running
    /// `cycles` cycles (`cycle(table, i, k)` for k in 0 ..< cycles) of `pagesPerCycle`
    /// operations on a fresh table (with `privateTables`, a fresh table each). `prepareTable`
    /// runs first, on the main thread; `prepareThread(table, i)` on thread i before the start
    /// line. Only the cycles are timed.
    static func scaling(name: String, _ machine: Machine, threads: Int, privateTables: Bool = false,
                        cycles: Int, pagesPerCycle: Int,
                        prepareTable: @escaping (PageTable<UserPtConfig>) -> Void,
                        prepareThread: @escaping (PageTable<UserPtConfig>, Int) -> Void,
                        cycle: @escaping (PageTable<UserPtConfig>, Int, Int) -> Void) -> Benchmark {
        Benchmark.multiThreaded(name: name, operations: threads * cycles * pagesPerCycle, threads: threads) { n in
            let cyclesPerThread = n / threads / pagesPerCycle
            let tables = (0..<(privateTables ? threads : 1)).map { _ in try! PageTable<UserPtConfig>(empty: machine) }
            for table in tables { prepareTable(table) }
            // The tables, and every frame left in them, go when the run's last reference drops.
            return runTogether(threads) { thread, startLine in
                let table = tables[thread % tables.count]
                return machine.withCpu(thread * cpuStride) {
                    prepareThread(table, thread)
                    let handoff = threads == 2 ? startLine.handoff(thread) : nil
                    var times = startLine.timed { for k in 0..<cyclesPerThread { cycle(table, thread, k) } }
                    times.handoff = handoff
                    return times
                }
            }
        }
    }

    /// Runs `body(i, startLine)` on `count` new threads, `body` calling `startLine.timed` once
    /// with its timed part, and returns the wall-clock time from the start line's release to the
    /// last thread's end, each thread's own time, and the handoff a thread measured.
    static func runTogether(_ count: Int, _ body: @escaping (Int, StartLine) -> ThreadTimes) -> Timing {
        let startLine = StartLine(threads: count)
        let tasks = (0..<count).map { i in ThreadTask { body(i, startLine) } }
        let ids = tasks.map { $0.start() }
        let released = startLine.releaseWhenAllArrive()
        for id in ids { pthread_join(id, nil) }
        let times = tasks.map { $0.result! }
        return Timing(wall: times.map(\.end).max()! - released, perThread: times.map { $0.end - $0.start },
                      handoff: times.lazy.compactMap(\.handoff).first)
    }

    // MARK: Summary

    /// One line per group whose `-t1` and `-t2` both ran: the throughputs and the speedup (in
    /// JSON Lines with `json`).
    static func summary(_ results: [BenchResult], json: Bool) -> [String] {
        let groups = results.map(\.name).filter { $0.hasPrefix("scale-") && $0.hasSuffix("-t1") }.map { String($0.dropLast(3)) }
        return groups.compactMap { group in
            guard let one = results.first(where: { $0.name == group + "-t1" }),
                  let two = results.first(where: { $0.name == group + "-t2" }) else { return nil }
            let speedup = two.mops / one.mops
            if json {
                let handoff = two.handoffNs.map { ", \"handoff_ns\": \(fixed($0))" } ?? ""
                return "{\"scaling\": \"\(group)\", \"mops_1_thread\": \(fixed(one.mops)), "
                    + "\"mops_2_threads\": \(fixed(two.mops)), \"speedup\": \(fixed(speedup))" + handoff + "}"
            }
            let handoff = two.handoffNs.map { " (handoff \(fixed($0)) ns)" } ?? ""
            return "\(group): 1 thread \(fixed(one.mops)) Mops/s, 2 threads \(fixed(two.mops)) Mops/s, "
                + "speedup \(fixed(speedup))" + handoff
        }
    }
}

/// When a thread saw the start line released, and when it finished (monotonic nanoseconds);
/// on the thread that measured it, the handoff before the start line.
struct ThreadTimes {
    let start: UInt64
    let end: UInt64
    var handoff: Double? = nil
}

/// A start line for threads: each arrives and spins until the main thread, once all have
/// arrived, releases them together.
final class StartLine: Sendable {
    private let threads: Int
    private let arrived = Atomic<Int>(0)
    private let released = Atomic<Bool>(false)

    /// The counter `handoff` passes, and how many threads have come to it.
    private let handoffCount = Atomic<Int>(0)
    private let atHandoff = Atomic<Int>(0)
    /// One-way handoffs `handoff` times.
    static let handoffs = 2_000

    init(threads: Int) { self.threads = threads }

    /// With two threads, both calling it: once both are here, passes a counter back and forth
    /// with the other thread, thread 0 on the even counts and thread 1 on the odd ones, and
    /// returns, on thread 0, the nanoseconds per one-way handoff (nil on thread 1).
    func handoff(_ thread: Int) -> Double? {
        precondition(threads == 2 && (0...1).contains(thread), "a handoff is between threads 0 and 1")
        atHandoff.add(1, ordering: .releasing)
        while atHandoff.load(ordering: .acquiring) < 2 {}
        let start = monotonicNanoseconds()
        for count in stride(from: thread, to: StartLine.handoffs, by: 2) {
            while handoffCount.load(ordering: .acquiring) != count {}
            handoffCount.store(count + 1, ordering: .releasing)
        }
        guard thread == 0 else { return nil }
        // Thread 0's last pass is count `handoffs - 2`; wait for thread 1's last.
        while handoffCount.load(ordering: .acquiring) != StartLine.handoffs {}
        return Double(monotonicNanoseconds() - start) / Double(StartLine.handoffs)
    }

    /// Arrives, waits for the release, and times `body` from the moment the thread saw it.
    func timed(_ body: () -> Void) -> ThreadTimes {
        arrived.add(1, ordering: .releasing)
        while !released.load(ordering: .acquiring) {}
        let start = monotonicNanoseconds()
        body()
        return ThreadTimes(start: start, end: monotonicNanoseconds())
    }

    /// Waits (sleeping, to leave the CPUs to the threads) until every thread has arrived, then
    /// releases them; returns the time of the release.
    func releaseWhenAllArrive() -> UInt64 {
        while arrived.load(ordering: .acquiring) < threads { usleep(50) }
        let now = monotonicNanoseconds()
        released.store(true, ordering: .releasing)
        return now
    }
}

/// The body of one pthread and, once the thread has been joined, what it returned.
final class ThreadTask {
    private let body: () -> ThreadTimes
    /// Written by the thread; read only after `pthread_join`, which orders the two.
    var result: ThreadTimes?

    init(_ body: @escaping () -> ThreadTimes) { self.body = body }

    /// Starts a thread running the body; the caller must keep `self` alive and join the thread.
    func start() -> pthread_t {
        var id = pthread_t()
        // SAFETY: the pointer is to `self`, which the caller keeps alive until it has joined the
        // thread, and which nothing else touches while the thread runs.
        let rc = unsafe pthread_create(&id, nil, { raw in
            let task = unsafe Unmanaged<ThreadTask>.fromOpaque(raw!).takeUnretainedValue()
            task.result = task.body()
            return nil
        }, unsafe Unmanaged.passUnretained(self).toOpaque())
        precondition(rc == 0, "pthread_create failed: \(rc)")
        return id
    }
}

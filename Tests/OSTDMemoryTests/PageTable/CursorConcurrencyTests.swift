// Cursors from several threads: overlapping cursors serialize, cursors over disjoint subtrees run
// at the same time, and mapping, unmapping and node reclamation from several threads keep the
// tree sound and leak nothing. Threads are Foundation threads; every wait has a deadline, so a
// deadlock shows up as a failed expectation rather than a hung test run.

import Foundation
import Synchronization
import Testing
@testable import OSTDMemory

// MARK: - Helpers

private let kib4: UInt64 = 0x1000
private let mib2: UInt64 = 1 << 21
private let gib1: UInt64 = 1 << 30
private let gib512: UInt64 = 1 << 39
/// The end of the user half, exclusive.
private let userEnd: UInt64 = 1 << 47

/// `count` 4 KiB pages from `start`.
private func pages(_ start: UInt64, _ count: Int) -> Range<Vaddr> {
    Vaddr(start)..<Vaddr(start + UInt64(count) * kib4)
}

/// A fresh machine (16 MiB and one CPU unless asked) and an empty user table on it: the setup of
/// every test here.
private func machineWithEmptyTable(memory: Int = 16 << 20, cpus: Int = 1) throws
    -> (machine: Machine, table: PageTable<UserPtConfig>) {
    let machine = makeMachine(memory: memory, cpus: cpus)
    return (machine, try PageTable<UserPtConfig>(empty: machine))
}

/// What every test checks once its threads are done: the workers' failures are reported, every
/// thread finished (else `deadlock`), and no node was left locked (`note` ends that message).
private func requireThreadsDone(_ finished: Bool, _ failures: Failures, _ table: PageTable<UserPtConfig>,
                                deadlock: Comment, note: String = "",
                                sourceLocation: SourceLocation = #_sourceLocation) throws {
    failures.report(sourceLocation: sourceLocation)
    try #require(finished, deadlock, sourceLocation: sourceLocation)
    try #require(lockedNodes(table) == [], "nodes left locked with no cursor alive\(note)",
                 sourceLocation: sourceLocation)
}

/// The table is sound and back to its root, and the root is the machine's only outstanding frame.
private func expectOnlyTheRoot(_ table: PageTable<UserPtConfig>, _ machine: Machine,
                               sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(table.structuralViolations() == [], sourceLocation: sourceLocation)
    #expect(table.nodes().count == 1, sourceLocation: sourceLocation)
    #expect(machine.outstandingFrames == 1, sourceLocation: sourceLocation)
}

/// The nodes of `table` whose lock is taken, walking without locks: at a quiescent point, a
/// lock some cursor failed to release (the next cursor there would spin forever).
private func lockedNodes<C>(_ table: PageTable<C>) -> [Paddr] {
    table.nodes().map(\.paddr).filter { NodeRef($0, table.context).isLocked }
}

/// Drops a fragment, returning the number of leaves it held.
private func leafCount<C>(_ frag: consuming PageTableFrag<C>) -> Int {
    switch consume frag {
    case .mapped: return 1
    case .strayPageTable(_, _, _, let numFrames): return numFrames
    }
}

/// Takes everything from the cursor's position up to `end`; returns the number of leaves taken.
private func takeAll(_ cursor: inout CursorMut<UserPtConfig>, upTo end: Vaddr) -> Int {
    var taken = 0
    while cursor.virtAddr < end {
        guard let frag = cursor.takeNext(end - cursor.virtAddr) else { break }
        taken += leafCount(frag)
    }
    return taken
}

/// Maps a fresh tracked frame at `va`; returns its physical address.
@discardableResult
private func mapFresh(_ table: PageTable<UserPtConfig>, _ va: Vaddr) throws -> Paddr {
    let frame = try FrameAllocOptions().zeroed(false).allocFrame(in: table.machine)
    let paddr = frame.paddr
    var cursor = try table.cursorMut(va..<(va + pageSize))
    cursor.map(MappedItem(frame: frame, property: .user(.rw)))
    _ = consume cursor
    return paddr
}

/// Unmaps the whole user half; returns the number of leaves taken.
private func unmapEverything(_ table: PageTable<UserPtConfig>) throws -> Int {
    var cursor = try table.cursorMut(Vaddr(0)..<Vaddr(userEnd))
    let taken = takeAll(&cursor, upTo: Vaddr(userEnd))
    _ = consume cursor
    return taken
}


enum CursorKind: Sendable { case mutable, readOnly }

/// Two cursors' ranges and kinds, A created first.
struct CursorPair: Sendable, CustomTestStringConvertible {
    let name: String
    let a: Range<Vaddr>
    let aKind: CursorKind
    let b: Range<Vaddr>
    let bKind: CursorKind

    init(_ name: String, _ a: Range<Vaddr>, _ b: Range<Vaddr>,
         aKind: CursorKind = .mutable, bKind: CursorKind = .mutable) {
        self.name = name
        self.a = a
        self.aKind = aKind
        self.b = b
        self.bKind = bKind
    }

    var testDescription: String { name }
}

// MARK: - Tests

@Suite(.serialized) struct CursorConcurrencyTests {
    let rw = PageProperty.user(.rw)

    // MARK: 1. Mutual exclusion

    static let overlapping: [CursorPair] = [
        CursorPair("same page", pages(0x1000, 1), pages(0x1000, 1)),
        CursorPair("partial overlap across a 2 MiB boundary", pages(mib2 - 4 * kib4, 6), pages(mib2, 6)),
        CursorPair("small inside large (large first)", Vaddr(0)..<Vaddr(2 * gib1), pages(gib1 + 0x5000, 1)),
        CursorPair("large around small (small first)", pages(gib1 + 0x5000, 1), Vaddr(0)..<Vaddr(2 * gib1)),
        CursorPair("across a 512 GiB boundary", pages(gib512 - 2 * kib4, 4), pages(gib512, 1)),
        CursorPair("root-locking cursor against a deep one", pages(gib512 - kib4, 2), pages(gib512 - kib4, 1)),
        CursorPair("mutable, then read-only", pages(0x1000, 2), pages(0x2000, 1), bKind: .readOnly),
        CursorPair("read-only, then mutable", pages(0x1000, 2), pages(0x2000, 1), aKind: .readOnly),
    ]

    /// A holds a cursor and changes the mapping at an address both ranges cover; B, asking for an
    /// overlapping cursor meanwhile, gets it only after A dropped its own, and then sees A's change.
    @Test(arguments: overlapping)
    func overlappingCursorsSerialize(pair: CursorPair) throws {
        let (machine, table) = try machineWithEmptyTable()
        let shared = max(pair.a.lowerBound, pair.b.lowerBound)
        #expect(pair.a.contains(shared) && pair.b.contains(shared))
        let original = try mapFresh(table, shared)
        let expected = SharedInt()   // the paddr B must find at `shared`
        expected.store(Int(original.rawValue))

        let holders = SharedInt()    // cursors alive now; never more than one
        let aHolding = SharedInt(), bStarting = SharedInt(), aReleasing = SharedInt()
        let bSawRelease = SharedInt()
        let failures = Failures()

        let finished = runThreads(2) { thread in
            do {
                if thread == 0 {
                    // A
                    func hold() {
                        failures.check(holders.add(1) == 1, "A: another cursor is alive")
                        aHolding.store(1)
                        failures.check(waitUntil(.seconds(5)) { bStarting.load() == 1 }, "A: B never started")
                        Thread.sleep(forTimeInterval: 0.05)   // B is now spinning on a lock
                        aReleasing.store(1)
                        holders.add(-1)
                    }
                    switch pair.aKind {
                    case .mutable:
                        var cursor = try table.cursorMut(pair.a)
                        try cursor.jump(shared)
                        if case .mapped(let va, let item)? = cursor.takeNext(pageSize) {
                            failures.check(va == shared && item.paddr == original, "A: took the wrong page")
                        } else {
                            failures.record("A: nothing to take at \(shared)")
                        }
                        let frame = try FrameAllocOptions().zeroed(false).allocFrame(in: machine)
                        expected.store(Int(frame.paddr.rawValue))
                        try cursor.jump(shared)
                        cursor.map(MappedItem(frame: frame, property: rw))
                        hold()
                        _ = consume cursor
                    case .readOnly:
                        let cursor = try table.cursor(pair.a)
                        hold()
                        _ = consume cursor
                    }
                } else {
                    // B
                    guard waitUntil(.seconds(5), { aHolding.load() == 1 }) else {
                        failures.record("B: A never got its cursor")
                        return
                    }
                    func check(_ item: MappedItemRef?) {
                        failures.check(aReleasing.load() == 1, "B got its cursor while A still held one")
                        failures.check(holders.add(1) == 1, "B: another cursor is alive")
                        failures.check(item?.paddr.rawValue == UInt64(expected.load()),
                                       "B does not see A's mapping: \(String(describing: item))")
                        holders.add(-1)
                    }
                    bStarting.store(1)
                    switch pair.bKind {
                    case .mutable:
                        var cursor = try table.cursorMut(pair.b)
                        bSawRelease.store(aReleasing.load())
                        try cursor.jump(shared)
                        check(try cursor.query().item)
                        _ = consume cursor
                    case .readOnly:
                        var cursor = try table.cursor(pair.b)
                        bSawRelease.store(aReleasing.load())
                        try cursor.jump(shared)
                        check(try cursor.query().item)
                        _ = consume cursor
                    }
                }
            } catch {
                failures.record("thread \(thread): \(error)")
            }
        }
        try requireThreadsDone(finished, failures, table, deadlock: "the two cursors deadlocked")
        // B asked for its cursor 50 ms before A let go, and got it only after.
        #expect(bSawRelease.load() == 1)

        #expect(try unmapEverything(table) == 1)
        expectOnlyTheRoot(table, machine)
        #expect(machine.cleanInv())
    }

    /// Many threads take cursors over one page and count how many are inside at once: never more
    /// than one, and no increment is lost (the counter is plain memory guarded by the cursor).
    @Test func sameRangeIsACriticalSection() throws {
        let (machine, table) = try machineWithEmptyTable()
        let range = pages(gib1 + 0x7000, 1)
        let inside = SharedInt()
        let failures = Failures()
        // A non-atomic counter, incremented only under the cursor.
        let plain = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        plain.initialize(to: 0)
        defer { plain.deallocate() }
        let address = Int(bitPattern: plain)
        let rounds = 300
        let finished = runThreads(2) { thread in
            let counter = UnsafeMutablePointer<Int>(bitPattern: address)!
            for _ in 0..<rounds {
                do {
                    var cursor = try table.cursorMut(range)
                    failures.check(inside.add(1) == 1, "two cursors over \(range) at once")
                    let value = counter.pointee
                    if try cursor.query().item == nil {
                        cursor.map(MappedItem(frame: try FrameAllocOptions().zeroed(false).allocFrame(in: machine),
                                              property: rw))
                    } else {
                        _ = takeAll(&cursor, upTo: range.upperBound)
                    }
                    counter.pointee = value + 1
                    inside.add(-1)
                    _ = consume cursor
                } catch {
                    failures.record("thread \(thread): \(error)")
                }
            }
        }
        try requireThreadsDone(finished, failures, table, deadlock: "cursors deadlocked")
        #expect(plain.pointee == 2 * rounds)
        _ = try unmapEverything(table)
        expectOnlyTheRoot(table, machine)
    }

    // MARK: 1b. Parallelism

    static let disjoint: [CursorPair] = [
        CursorPair("same level-2 node, different level-1 nodes", pages(0x1000, 1), pages(mib2 + 0x1000, 1)),
        CursorPair("same level-3 node, different 1 GiB regions", pages(0x1000, 1), pages(gib1 + 0x1000, 1)),
        CursorPair("different 512 GiB regions", pages(0x1000, 1), pages(gib512 + 0x1000, 1)),
        CursorPair("level-2 subtree against another 1 GiB region", pages(mib2 - kib4, 2), pages(gib1 + 0x3000, 4)),
        CursorPair("level-3 subtree against another 512 GiB region", pages(gib1 - kib4, 2), pages(gib512 + 0x1000, 1)),
        CursorPair("large range against another 512 GiB region", Vaddr(0)..<Vaddr(4 * gib1), pages(3 * gib512, 8)),
        CursorPair("read-only A, mutable B", pages(0x1000, 1), pages(gib1 + 0x1000, 1), aKind: .readOnly),
        CursorPair("mutable A, read-only B", pages(0x1000, 1), pages(gib1 + 0x1000, 1), bKind: .readOnly),
    ]

    /// A holds a cursor; meanwhile B creates its own over a disjoint subtree, maps, unmaps (so its
    /// nodes are reclaimed, re-locking from the root) and drops it. A must see B finish before
    /// dropping its cursor.
    @Test(arguments: disjoint)
    func disjointCursorsProceedInParallel(pair: CursorPair) throws {
        let (machine, table) = try machineWithEmptyTable()
        // Read-only cursors do not allocate: give them a path to lock.
        let aPage = pair.a.lowerBound, bPage = pair.b.lowerBound
        let aOriginal = try mapFresh(table, aPage)
        let bOriginal = try mapFresh(table, bPage)
        let nodesBefore = table.nodes().count

        let aHolding = SharedInt(), bDone = SharedInt(), aSawB = SharedInt()
        let aLocked = SharedInt()
        let failures = Failures()
        let finished = runThreads(2) { thread in
            do {
                if thread == 0 {
                    func hold() {
                        aHolding.store(1)
                        aSawB.store(waitUntil(.seconds(5)) { bDone.load() == 1 } ? 1 : 0)
                    }
                    switch pair.aKind {
                    case .mutable:
                        var cursor = try table.cursorMut(pair.a)
                        aLocked.store(Int(cursor.lockedLevel))
                        if case .mapped(_, let item)? = cursor.takeNext(pageSize) {
                            failures.check(item.paddr == aOriginal, "A: took the wrong page")
                        } else {
                            failures.record("A: nothing to take")
                        }
                        try cursor.jump(aPage)
                        cursor.map(MappedItem(frame: try FrameAllocOptions().zeroed(false).allocFrame(in: machine),
                                              property: rw))
                        hold()
                        _ = consume cursor
                    case .readOnly:
                        var cursor = try table.cursor(pair.a)
                        aLocked.store(Int(cursor.lockedLevel))
                        failures.check(try cursor.query().item?.paddr == aOriginal, "A: wrong mapping")
                        hold()
                        _ = consume cursor
                    }
                } else {
                    guard waitUntil(.seconds(5), { aHolding.load() == 1 }) else {
                        failures.record("B: A never got its cursor")
                        return
                    }
                    switch pair.bKind {
                    case .mutable:
                        do {
                            var cursor = try table.cursorMut(pair.b)
                            let taken = takeAll(&cursor, upTo: pair.b.upperBound)
                            failures.check(taken == 1, "B took \(taken) pages, not 1")
                            try cursor.jump(bPage)
                            let frame = try FrameAllocOptions().zeroed(false).allocFrame(in: machine)
                            let paddr = frame.paddr
                            cursor.map(MappedItem(frame: frame, property: rw))
                            try cursor.jump(bPage)
                            failures.check(try cursor.query().item?.paddr == paddr, "B: its mapping is not there")
                            _ = consume cursor
                        }
                        // Unmap the last page in a fresh cursor: its drop reclaims the nodes of
                        // B's path, locking from the root down while A still holds its cursor.
                        var cursor = try table.cursorMut(pair.b)
                        let taken = takeAll(&cursor, upTo: pair.b.upperBound)
                        failures.check(taken == 1, "B took \(taken) pages, not 1")
                        _ = consume cursor
                    case .readOnly:
                        var cursor = try table.cursor(pair.b)
                        failures.check(try cursor.query().item?.paddr == bOriginal, "B: wrong mapping")
                        _ = consume cursor
                    }
                    bDone.store(1)
                }
            } catch {
                failures.record("thread \(thread): \(error)")
            }
        }
        try requireThreadsDone(finished, failures, table, deadlock: "the two cursors deadlocked")
        #expect(aSawB.load() == 1, "B could not work while A held a cursor over a disjoint subtree (A locked level \(aLocked.load()))")
        #expect(table.structuralViolations() == [])
        if pair.bKind == .mutable {
            // B's pages and every node only they needed are gone.
            #expect(table.pageWalk(bPage) == nil)
            #expect(table.nodes().count < nodesBefore)
        }
        #expect(try unmapEverything(table) == (pair.bKind == .mutable ? 1 : 2))
        expectOnlyTheRoot(table, machine)
        #expect(machine.cleanInv())
    }

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

    // MARK: 3. Reclamation under concurrency

    /// One thread's page, and a wider range around it that holds no other thread's page.
    struct Lane: Sendable {
        let page: UInt64
        let wide: Range<Vaddr>
        init(_ page: UInt64, _ wide: Range<UInt64>) {
            self.page = page
            self.wide = Vaddr(wide.lowerBound)..<Vaddr(wide.upperBound)
        }
    }

    struct ReclaimSetup: Sendable, CustomTestStringConvertible {
        let name: String
        let lanes: [Lane]
        let deferred: Bool
        var testDescription: String { name + (deferred ? ", deferred reclamation" : "") }
    }

    static let reclaimSetups = [
        ReclaimSetup(name: "same level-3 node, different level-2 nodes",
                     lanes: [Lane(0x1000, 0..<gib1), Lane(gib1 + 0x1000, (gib1 - mib2)..<(gib1 + mib2))],
                     deferred: false),
        ReclaimSetup(name: "same level-2 node, different level-1 nodes",
                     lanes: [Lane(0x1000, 0..<mib2), Lane(mib2 + 0x1000, (mib2 - 0x10000)..<(mib2 + 0x2000))],
                     deferred: false),
        ReclaimSetup(name: "three threads sharing level-3 and level-2 nodes",
                     lanes: [Lane(gib1 + 0x1000, gib1..<(gib1 + mib2)),
                             Lane(gib1 + mib2 + 0x1000, (gib1 + mib2 - 0x4000)..<(gib1 + 2 * mib2)),
                             Lane(2 * gib1 + 0x1000, (2 * gib1 - mib2)..<(2 * gib1 + mib2))],
                     deferred: false),
        ReclaimSetup(name: "same level-3 node, different level-2 nodes",
                     lanes: [Lane(0x1000, 0..<gib1), Lane(gib1 + 0x1000, (gib1 - mib2)..<(gib1 + mib2))],
                     deferred: true),
    ]

    /// Each thread maps then unmaps one page again and again, so the nodes on its path are
    /// allocated and reclaimed over and over while the other threads do the same next to it, in
    /// three styles: unmapping in a fresh one-page cursor (reclaimed when it is dropped),
    /// mapping and unmapping in one cursor, and in a cursor over a wider range (nodes below its
    /// locked root go at once, the rest when the cursor is dropped).
    @Test(arguments: reclaimSetups)
    func reclamationUnderConcurrency(setup: ReclaimSetup) throws {
        let (machine, table) = try machineWithEmptyTable(memory: 64 << 20)
        table.defersReclamation = setup.deferred
        let failures = Failures()
        let rounds = setup.deferred ? 300 : 600
        let property = rw
        let finished = runThreads(setup.lanes.count) { thread in
            let va = Vaddr(setup.lanes[thread].page)
            let one = pages(va.rawValue, 1)
            let region = setup.lanes[thread].wide
            for round in 0..<rounds {
                do {
                    let frame = try FrameAllocOptions().zeroed(false).allocFrame(in: machine)
                    let paddr = frame.paddr
                    switch round % 3 {
                    case 0:
                        do {
                            var cursor = try table.cursorMut(one)
                            cursor.map(MappedItem(frame: frame, property: property))
                            _ = consume cursor
                        }
                        var cursor = try table.cursorMut(one)
                        if case .mapped(_, let item)? = cursor.takeNext(pageSize) {
                            failures.check(item.paddr == paddr, "thread \(thread): took a foreign page")
                        } else {
                            failures.record("thread \(thread): its page vanished")
                        }
                        _ = consume cursor
                    case 1:
                        var cursor = try table.cursorMut(one)
                        cursor.map(MappedItem(frame: frame, property: property))
                        try cursor.jump(va)
                        failures.check(try cursor.query().item?.paddr == paddr, "thread \(thread): map lost")
                        try cursor.jump(va)
                        failures.check(takeAll(&cursor, upTo: one.upperBound) == 1, "thread \(thread): take failed")
                        _ = consume cursor
                    default:
                        var cursor = try table.cursorMut(region)
                        try cursor.jump(va)
                        cursor.map(MappedItem(frame: frame, property: property))
                        try cursor.jump(region.lowerBound)
                        failures.check(cursor.findNext(region.upperBound - region.lowerBound) == va, "thread \(thread): map lost")
                        failures.check(takeAll(&cursor, upTo: region.upperBound) == 1, "thread \(thread): take failed")
                        _ = consume cursor
                    }
                } catch {
                    failures.record("thread \(thread) round \(round): \(error)")
                }
            }
        }
        try requireThreadsDone(finished, failures, table, deadlock: "threads deadlocked")
        #expect(table.structuralViolations() == [])
        #expect(table.nodes().count == 1)
        if setup.deferred {
            let retired = table.retiredCount
            #expect(retired > 0)
            #expect(machine.outstandingFrames == 1 + retired)
            #expect(table.reclaimRetired() == retired)
            #expect(table.retiredCount == 0)
        }
        #expect(machine.outstandingFrames == 1)
        #expect(machine.cleanInv())
    }

    // MARK: 4. Deferred reclamation

    /// With `defersReclamation`, unmapping the last page detaches the three nodes of its path but
    /// does not free them: they wait in the table, still counted as outstanding frames, until
    /// `reclaimRetired()`.
    @Test func deferredReclamationWaitsForReclaimRetired() throws {
        let (machine, table) = try machineWithEmptyTable()
        table.defersReclamation = true
        let va = Vaddr(gib1 + 0x5000)
        let paddr = try mapFresh(table, va)
        #expect(table.nodes().count == 4)
        #expect(machine.outstandingFrames == 5)   // root, 3 nodes, the frame
        do {
            var cursor = try table.cursorMut(va..<(va + pageSize))
            if case .mapped(_, let item)? = cursor.takeNext(pageSize) {
                #expect(item.paddr == paddr)
            } else {
                Issue.record("nothing taken")
            }
            _ = consume cursor
        }
        // Detached (the tree is back to its root) but not freed.
        #expect(table.nodes().count == 1)
        #expect(table.structuralViolations() == [])
        #expect(table.retiredCount == 3)
        #expect(machine.outstandingFrames == 4)
        #expect(table.reclaimRetired() == 3)
        #expect(table.retiredCount == 0)
        #expect(machine.outstandingFrames == 1)
        #expect(table.reclaimRetired() == 0)
        #expect(machine.cleanInv())
    }

    /// The same when the nodes go while the cursor lives (below its locked subtree root): they
    /// are handed to the table only when the cursor is dropped, and wait there.
    @Test func deferredReclamationOfNodesBelowTheCursorRoot() throws {
        let (machine, table) = try machineWithEmptyTable()
        table.defersReclamation = true
        for round in 0..<3 {
            let va = Vaddr(UInt64(round) * gib512 + gib1 + 0x5000)
            try mapFresh(table, va)
            do {
                // Spans two root entries: the cursor locks the root.
                var cursor = try table.cursorMut(Vaddr(0)..<Vaddr(4 * gib512))
                #expect(cursor.lockedLevel == 4)
                try cursor.jump(va)
                #expect(takeAll(&cursor, upTo: va + pageSize) == 1)
                #expect(table.nodes().count == 1)
                #expect(table.retiredCount == 3 * round)   // not yet handed over
                _ = consume cursor
            }
            #expect(table.retiredCount == 3 * (round + 1))
            #expect(machine.outstandingFrames == 1 + 3 * (round + 1))
        }
        #expect(table.structuralViolations() == [])
        #expect(table.reclaimRetired() == 9)
        #expect(machine.outstandingFrames == 1)
    }

    /// Retired nodes still waiting when the table goes are freed with it.
    @Test func droppingTheTableFreesRetiredNodes() throws {
        let machine = makeMachine()
        do {
            let table = try PageTable<UserPtConfig>(empty: machine)
            table.defersReclamation = true
            let va = Vaddr(0x7000)
            try mapFresh(table, va)
            var cursor = try table.cursorMut(va..<(va + pageSize))
            #expect(takeAll(&cursor, upTo: va + pageSize) == 1)
            _ = consume cursor
            #expect(table.retiredCount == 3)
            #expect(machine.outstandingFrames == 4)
        }
        #expect(machine.outstandingFrames == 0)
        #expect(machine.cleanInv())
    }
}

private extension Range where Bound == Vaddr {
    /// The number of `size`-byte pages in the range.
    func pageCount(_ size: Int) -> Int { (upperBound - lowerBound) / size }
}

// Linearizability of whole cursor transactions (issue 15).
//
// Design. T threads (2, 4 or 8, each bound to its own simulated CPU, and once with 4 threads bound
// to none) run *transactions* on one user page table. A transaction creates one cursor, mutable
// most of the time, over a random page-aligned range in a few hot windows (around a 2 MiB, a 1 GiB
// and a 512 GiB boundary, shared by every thread, and two private windows per thread), does one to
// four operations in it (map a fresh 4 KiB frame with a random property, take the next leaf,
// protect the next leaf with a random change, query a page, find the next mapped page), and records
// what each one observed. Then, still holding the cursor, it takes a ticket from a global atomic
// counter, and only after that drops the cursor (and then the frames it took, as a caller would
// after the TLB flush). If cursors over overlapping ranges exclude each other, the ticket order is
// a serial order of the transactions: no other transaction touching the range can run between a
// transaction's cursor creation and its ticket. So after the run the transactions are replayed in
// ticket order against `SerialModel`, a dictionary from page to leaf, and every observation made
// during the concurrent run must be exactly what the model gives at that point of the serial order
// (linearizability of whole transactions, not only of the final state). The final contents, read
// through one read-only cursor over the user half, must equal the model's; then the tree's
// structure, the reference accounting, the unmapping of everything, the frames' return and the
// machine's metadata are checked. Failures name the seed; `OSTD_LINEARIZABILITY_SEED` reruns one
// (the choices each thread makes, not the interleaving).
//
// Ranges stay well below 2 MiB, so `takeNext` never removes a whole subtree (a range that covered
// one would need 512 pages): every take is one 4 KiB leaf, and the model needs no node structure.
// Each thread starts with four transactions whose ranges lock a subtree of each level (1 to 4),
// then draws ranges at random; the test checks that all four levels were locked. Each thread
// runs until a time budget is spent or a cap on transactions is reached, whichever comes first, so
// that a case stays around a second in a debug build (where the cap is often reached first) and
// under ThreadSanitizer (where the budget is); no assertion depends on how many transactions ran.

import Foundation
import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

extension CursorConcurrencyTests {
    // MARK: 4. Linearizability of cursor transactions

    struct LinearizabilitySetup: Sendable, CustomTestStringConvertible {
        let threads: Int
        let bindCpus: Bool
        var testDescription: String {
            "\(threads) threads" + (bindCpus ? ", each bound to its own CPU" : ", bound to no CPU")
        }
    }

    static let linearizabilitySetups = [
        LinearizabilitySetup(threads: 2, bindCpus: true),
        LinearizabilitySetup(threads: 4, bindCpus: true),
        LinearizabilitySetup(threads: 8, bindCpus: true),
        LinearizabilitySetup(threads: 4, bindCpus: false),
    ]

    /// How long the threads of one case start new transactions.
    static let linearizabilityBudget: Duration = .milliseconds(800)
    /// The most transactions one thread runs.
    static let transactionsPerThread = 10_000

    /// Threads run cursor transactions over overlapping ranges; replayed in the order of the
    /// tickets they took while holding their cursors, every transaction observes what a serial
    /// run in that order gives, and the table ends as the serial run does, leaking nothing.
    @Test(arguments: linearizabilitySetups)
    func cursorTransactionsAreLinearizable(setup: LinearizabilitySetup) throws {
        let seed = getenv("OSTD_LINEARIZABILITY_SEED").flatMap { UInt64(String(cString: $0)) }
            ?? UInt64.random(in: 0...UInt64.max)
        let (machine, table) = try machineWithEmptyTable(cpus: setup.bindCpus ? setup.threads : 1)
        let tickets = SharedInt()
        let log = TransactionLog(threads: setup.threads)
        let failures = Failures()
        let deadline = ContinuousClock.now + Self.linearizabilityBudget

        let finished = runThreads(setup.threads, timeout: .seconds(60)) { thread in
            var worker = TransactionWorker(thread: thread, seed: seed, table: table, tickets: tickets)
            func work() {
                var committed: [Transaction] = []
                for index in 0..<Self.transactionsPerThread {
                    if index >= TransactionWorker.levelRanges.count && ContinuousClock.now >= deadline { break }
                    do {
                        committed.append(try worker.run(index))
                        // Let the others at the locks: a spinning waiter seldom wins a lock that
                        // its holder takes again at once (without this, in one run, two threads
                        // changed places in the commit order 134 times in 40,000 transactions).
                        sched_yield()
                    } catch {
                        failures.record("seed \(seed): thread \(thread), transaction \(index): \(error)")
                    }
                }
                log.set(committed, thread: thread)
            }
            if setup.bindCpus { machine.withCpu(thread) { work() } } else { work() }
        }
        try requireThreadsDone(finished, failures, table, deadlock: "transaction threads deadlocked (seed \(seed))",
                               note: " (seed \(seed))")

        // Every ticket was taken by exactly one recorded transaction.
        let transactions = log.inCommitOrder
        try #require(transactions.map(\.ticket) == Array(1..<(transactions.count + 1)),
                     "seed \(seed): tickets are not 1 ... \(transactions.count), one per transaction")

        var model = SerialModel()
        let mismatches = model.replay(transactions)
        for mismatch in mismatches.prefix(10) { Issue.record("seed \(seed): \(mismatch)") }
        if mismatches.count > 10 { Issue.record("seed \(seed): ... and \(mismatches.count - 10) more mismatches") }
        #expect(try Self.leavesThroughCursor(table) == model.leaves,
                "seed \(seed): the table's final contents differ from the serial run's")

        // Cursors of every level ran.
        #expect(Set(transactions.map(\.lockedLevel)) == [1, 2, 3, 4], "seed \(seed)")

        // Quiescent checks with the mappings in place, then unmap everything: nothing leaked.
        #expect(table.structuralViolations() == [], "seed \(seed)")
        let owners = machine.metaRegionOwners(pathsInPt: table.pathsInPt())
        #expect(owners.accountingViolations() == [], "seed \(seed)")
        #expect(try unmapEverything(table) == model.leaves.count, "seed \(seed)")
        expectOnlyTheRoot(table, machine)
        #expect(machine.cleanInv(), "seed \(seed)")

        print("linearizability, \(setup.testDescription): \(Self.summary(transactions)); "
              + "\(model.leaves.count) pages mapped at the end; seed \(seed)")
    }

    /// What a run exercised, in words: its transactions, how often the commit order passes from
    /// one thread to another, and how many steps observed each kind of outcome.
    static func summary(_ transactions: [Transaction]) -> String {
        let switches = zip(transactions, transactions.dropFirst()).filter { $0.thread != $1.thread }.count
        var outcomes: [String: Int] = [:]
        for recorded in transactions.flatMap(\.steps) {
            let outcome: String
            switch recorded.observed {
            case .leaf(let leaf): outcome = leaf == nil ? "queries of empty pages" : "queries of mapped pages"
            case .found(let va): outcome = va == nil ? "findNext finding nothing" : "findNext finding a page"
            case .mapped: outcome = "maps"
            case .refused: outcome = "maps refused"
            case .took(let leaf): outcome = leaf == nil ? "takes of nothing" : "takes"
            case .tookSubtree: outcome = "subtrees taken"
            case .protected(let range, _): outcome = range == nil ? "protects of nothing" : "protects"
            }
            outcomes[outcome, default: 0] += 1
        }
        let counts = outcomes.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        return "\(transactions.count) transactions, \(switches) changes of thread along the commit order; \(counts)"
    }

    /// The replay rejects a history that no serial order explains: a query that saw a page empty
    /// although a transaction with an earlier ticket had mapped it. With the tickets swapped the
    /// same history is serial. (The check of the concurrent run is only as good as this.)
    @Test func serialReplayRejectsAStaleObservation() {
        let page = Vaddr(mib2)
        let leaf = Leaf(va: page, size: pageSize, paddr: Paddr(0x5000), property: rw)
        let mapper = Transaction(thread: 0, index: 0, range: pages(mib2, 1), mutable: true, lockedLevel: 1,
                                 steps: [RecordedStep(.map(leaf), .mapped)], ticket: 1)
        let reader = Transaction(thread: 1, index: 0, range: pages(mib2, 1), mutable: false, lockedLevel: 1,
                                 steps: [RecordedStep(.query(page), .leaf(nil))], ticket: 2)
        var stale = SerialModel()
        #expect(stale.replay([mapper, reader]).count == 1)
        var serial = SerialModel()
        #expect(serial.replay([reader, mapper]) == [])
        #expect(serial.leaves == [page: leaf])
    }
}

// The types of the test, nested in the suite so that their short names stay local to it.
extension CursorConcurrencyTests {
    // MARK: What a transaction does and sees

    /// A leaf as the cursors report it: where, how large, which frame, and its property.
    struct Leaf: Hashable, Sendable, CustomStringConvertible {
        let va: Vaddr
        let size: Int
        let paddr: Paddr
        let property: PageProperty

        init(va: Vaddr, size: Int, paddr: Paddr, property: PageProperty) {
            self.va = va
            self.size = size
            self.paddr = paddr
            self.property = property
        }

        /// The leaf `query` reported over `range`.
        init(_ range: Range<Vaddr>, _ item: MappedItemRef) {
            self.init(va: range.lowerBound, size: range.upperBound - range.lowerBound, paddr: item.paddr,
                      property: item.property)
        }

        var description: String { "\(va) (\(size / 1024) KiB) -> \(paddr) \(property)" }
    }

    /// A change `protectNext` applies to the property of the leaf it finds.
    enum ProtectionChange: Sendable, CustomStringConvertible {
        /// Sets the access rights (`r`, `w`, `x`) to these, keeping the other flags.
        case rights(PageFlags)
        case cache(CachePolicy)
        case toggleAvail2
        case toggleGlobal

        func apply(_ property: inout PageProperty) {
            switch self {
            case .rights(let rights): property.flags = property.flags.subtracting(.rwx).union(rights)
            case .cache(let cache): property.cache = cache
            case .toggleAvail2: property.flags.formSymmetricDifference(.avail2)
            case .toggleGlobal: property.privilegedFlags.formSymmetricDifference(.global)
            }
        }

        var description: String {
            switch self {
            case .rights(let rights): return "rights \(rights)"
            case .cache(let cache): return "cache \(cache)"
            case .toggleAvail2: return "toggle avail2"
            case .toggleGlobal: return "toggle global"
            }
        }
    }

    /// One operation of a transaction, with its inputs; the cursor first jumps to the address.
    enum Step: Sendable, CustomStringConvertible {
        /// `query` at a page.
        case query(Vaddr)
        /// `findNext` over `pages` pages from an address.
        case findNext(Vaddr, pages: Int)
        /// `tryMap` of a fresh frame (the leaf says where, which frame and with what property).
        case map(Leaf)
        /// `takeNext` over `pages` pages from an address.
        case take(Vaddr, pages: Int)
        /// `protectNext` over `pages` pages from an address, with a change.
        case protect(Vaddr, pages: Int, ProtectionChange)

        var description: String {
            switch self {
            case .query(let va): return "query \(va)"
            case .findNext(let va, let n): return "findNext \(va) +\(n) pages"
            case .map(let leaf): return "map \(leaf)"
            case .take(let va, let n): return "takeNext \(va) +\(n) pages"
            case .protect(let va, let n, let change): return "protectNext \(va) +\(n) pages, \(change)"
            }
        }
    }

    /// What a step observed.
    enum Observation: Equatable, Sendable, CustomStringConvertible {
        /// `query`: the leaf at the page, or none.
        case leaf(Leaf?)
        /// `findNext`: the first mapped address, or none.
        case found(Vaddr?)
        /// `tryMap` mapped the frame.
        case mapped
        /// `tryMap` handed the frame back.
        case refused(PageTableError)
        /// `takeNext`: the leaf it removed, or none.
        case took(Leaf?)
        /// `takeNext` removed a whole subtree (ranges here are too small for that: never expected).
        case tookSubtree(Vaddr, leaves: Int)
        /// `protectNext`: the range of the leaf it changed and the property the change saw, or none.
        case protected(Range<Vaddr>?, was: PageProperty?)

        var description: String {
            switch self {
            case .leaf(let leaf): return leaf.map { "leaf \($0)" } ?? "no leaf"
            case .found(let va): return va.map { "found \($0)" } ?? "found nothing"
            case .mapped: return "mapped"
            case .refused(let error): return "refused: \(error)"
            case .took(let leaf): return leaf.map { "took \($0)" } ?? "took nothing"
            case .tookSubtree(let va, let n): return "took a subtree at \(va) with \(n) leaves"
            case .protected(let range, let was):
                guard let range else { return "protected nothing" }
                return "protected \(range.lowerBound)..<\(range.upperBound), was \(was.map(String.init(describing:)) ?? "?")"
            }
        }
    }

    struct RecordedStep: Sendable {
        let step: Step
        let observed: Observation
        init(_ step: Step, _ observed: Observation) {
            self.step = step
            self.observed = observed
        }
    }

    /// One committed transaction: its cursor, what it did and saw, and its place in the commit order.
    struct Transaction: Sendable, CustomStringConvertible {
        let thread: Int
        /// Its number among its thread's transactions.
        let index: Int
        let range: Range<Vaddr>
        let mutable: Bool
        /// The level of the subtree its cursor locked.
        let lockedLevel: PagingLevel
        let steps: [RecordedStep]
        /// Taken from the global counter while the cursor was held: 1 for the first commit.
        let ticket: Int

        var description: String {
            "ticket \(ticket) (thread \(thread)'s transaction \(index), \(mutable ? "mutable" : "read-only") cursor "
                + "over \(range.lowerBound)..<\(range.upperBound), locked level \(lockedLevel))"
        }
    }

    /// The transactions the threads committed: one slot per thread, written by that thread when it
    /// finishes and read by the test's thread once every thread has finished.
    ///
    /// Not a `Mutex`: ThreadSanitizer does not see the ordering a contended `Mutex` gives on Linux
    /// (its slow path waits in the kernel), and reports a race on what it guards.
    final class TransactionLog: @unchecked Sendable {
        // SAFETY (`@unchecked Sendable`): slot `i` is written only by thread `i`, once, before that
        // thread counts itself finished in `runThreads` (an atomic add); the slots are read only
        // after `runThreads` has seen every thread finished (an atomic load of that counter), so
        // every write happens before every read, and no two threads write one slot.
        private let slots: UnsafeMutableBufferPointer<[Transaction]>

        init(threads: Int) {
            slots = .allocate(capacity: threads)
            slots.initialize(repeating: [])
        }

        deinit { slots.deinitialize().deallocate() }

        /// Thread `thread`'s transactions; called once, by that thread.
        func set(_ transactions: [Transaction], thread: Int) { slots[thread] = transactions }
        /// Every transaction, in ticket order; only once every thread has finished.
        var inCommitOrder: [Transaction] { slots.joined().sorted { $0.ticket < $1.ticket } }
    }

    // MARK: The serial model

    /// The page table as a dictionary from page to leaf, and each step's specification on it.
    struct SerialModel {
        private(set) var leaves: [Vaddr: Leaf] = [:]
        /// The page each mapped frame is mapped at: a fresh frame must not be mapped already.
        private var pageOfFrame: [Paddr: Vaddr] = [:]

        /// Replays `transactions` in the order given; returns every step whose observation differs
        /// from the model's, and every frame mapped while the model still had it mapped, in words.
        mutating func replay(_ transactions: [Transaction]) -> [String] {
            var problems: [String] = []
            for transaction in transactions {
                for (k, recorded) in transaction.steps.enumerated() {
                    var otherPage: Vaddr? = nil
                    if case .map(let leaf) = recorded.step { otherPage = pageOfFrame[leaf.paddr] }
                    let expected = apply(recorded.step)
                    // A frame a refused map handed back was dropped at once and may be mapped by
                    // another transaction before this one's commit: only a map that succeeds
                    // needs its frame unmapped.
                    if expected == .mapped, let otherPage {
                        problems.append("\(transaction), step \(k + 1) \(recorded.step): the frame is mapped at "
                                        + "\(otherPage) in the serial order")
                    }
                    if expected != recorded.observed {
                        problems.append("\(transaction), step \(k + 1) \(recorded.step): observed \(recorded.observed), "
                                        + "the serial order gives \(expected)")
                    }
                }
            }
            return problems
        }

        /// Does `step` on the model and returns what it should observe.
        mutating func apply(_ step: Step) -> Observation {
            switch step {
            case .query(let va):
                return .leaf(leaves[va])
            case .findNext(let va, let count):
                return .found(firstMapped(va, count).map(\.va))
            case .map(let leaf):
                guard leaves[leaf.va] == nil else { return .refused(.alreadyMapped(leaf.va)) }
                leaves[leaf.va] = leaf
                pageOfFrame[leaf.paddr] = leaf.va
                return .mapped
            case .take(let va, let count):
                guard let leaf = firstMapped(va, count) else { return .took(nil) }
                leaves[leaf.va] = nil
                pageOfFrame[leaf.paddr] = nil
                return .took(leaf)
            case .protect(let va, let count, let change):
                guard let leaf = firstMapped(va, count) else { return .protected(nil, was: nil) }
                var property = leaf.property
                change.apply(&property)
                leaves[leaf.va] = Leaf(va: leaf.va, size: leaf.size, paddr: leaf.paddr, property: property)
                return .protected(leaf.va..<(leaf.va + leaf.size), was: leaf.property)
            }
        }

        /// The first mapped leaf in the `count` pages from `va`.
        private func firstMapped(_ va: Vaddr, _ count: Int) -> Leaf? {
            (0..<count).lazy.compactMap { leaves[va + $0 * pageSize] }.first
        }
    }

    // MARK: The threads' side

    /// One thread's transactions: its random choices, its ranges, and how it runs a transaction.
    struct TransactionWorker {
        /// The windows transactions choose their ranges in: first page and page count.
        struct Window {
            let first: UInt64
            let pages: Int
        }

        /// Shared by every thread: across a 2 MiB, a 1 GiB and a 512 GiB boundary.
        static let sharedWindows = [
            Window(first: mib2 - 16 * kib4, pages: 32),
            Window(first: gib1 - 16 * kib4, pages: 32),
            Window(first: gib512 - 8 * kib4, pages: 16),
        ]

        /// The ranges of each thread's first transactions, whose mutable cursors lock a subtree of
        /// level 1 (inside a 2 MiB region), 2 (across 2 MiB), 3 (across 1 GiB) and 4 (across 512 GiB).
        static let levelRanges = [
            pages(mib2 - 8 * kib4, 4),
            pages(mib2 - kib4, 2),
            pages(gib1 - kib4, 2),
            pages(gib512 - kib4, 2),
        ]

        let thread: Int
        let table: PageTable<UserPtConfig>
        let tickets: SharedInt
        var rng: SplitMix64
        /// This thread's own windows: across a 2 MiB boundary in a 1 GiB region of its own, and across
        /// a 1 GiB boundary in a 512 GiB region of its own.
        let privateWindows: [Window]

        init(thread: Int, seed: UInt64, table: PageTable<UserPtConfig>, tickets: SharedInt) {
            self.thread = thread
            self.table = table
            self.tickets = tickets
            rng = SplitMix64(state: seed &+ UInt64(thread) &* 0x1_0000_0001)
            privateWindows = [
                Window(first: UInt64(thread + 2) * gib1 + mib2 - 8 * kib4, pages: 16),
                Window(first: UInt64(thread + 1) * gib512 + gib1 - 8 * kib4, pages: 16),
            ]
        }

        /// Runs transaction number `index`: creates its cursor, does its steps, takes its ticket while
        /// still holding the cursor, drops the cursor, and only then the frames it took.
        mutating func run(_ index: Int) throws -> Transaction {
            let forced = index < Self.levelRanges.count
            let range = forced ? Self.levelRanges[index] : randomRange()
            let mutable = forced || rng.chance(80)
            let stepCount = rng.int(1...4)
            // What `takeNext` removed, one per step at most: dropped after the commit.
            var taken = InlineArray<4, PageTableFrag<UserPtConfig>?> { _ in nil }
            var steps: [RecordedStep] = []
            let ticket: Int
            let lockedLevel: PagingLevel
            if mutable {
                var cursor = try table.cursorMut(range)
                lockedLevel = cursor.lockedLevel
                for k in 0..<stepCount { steps.append(try mutableStep(&cursor, in: range, keeping: &taken[k])) }
                ticket = tickets.add(1)
                _ = consume cursor
            } else {
                var cursor = try table.cursor(range)
                lockedLevel = cursor.lockedLevel
                for _ in 0..<stepCount {
                    let page = randomPage(in: range)
                    try cursor.jump(page)
                    steps.append(try readStep(at: page, in: range, query: { try cursor.query() },
                                              findNext: { cursor.findNext($0) }))
                }
                ticket = tickets.add(1)
                _ = consume cursor
            }
            _ = consume taken
            return Transaction(thread: thread, index: index, range: range, mutable: mutable, lockedLevel: lockedLevel,
                               steps: steps, ticket: ticket)
        }

        /// One step of a mutable cursor: map (35 %), take (25 %), protect (20 %) or a read (20 %).
        mutating func mutableStep(_ cursor: inout CursorMut<UserPtConfig>, in range: Range<Vaddr>,
                                  keeping taken: inout PageTableFrag<UserPtConfig>?) throws -> RecordedStep {
            let page = randomPage(in: range)
            let count = rng.int(1...((range.upperBound - page) / pageSize))
            try cursor.jump(page)
            switch rng.below(100) {
            case ..<35:
                let frame = try FrameAllocOptions().zeroed(false).allocFrame(in: table.machine)
                let leaf = Leaf(va: page, size: pageSize, paddr: frame.paddr, property: randomProperty())
                guard let failure = cursor.tryMap(MappedItem(frame: frame, property: leaf.property)) else {
                    return RecordedStep(.map(leaf), .mapped)
                }
                let error = failure.error
                _ = consume failure   // the frame goes back now
                return RecordedStep(.map(leaf), .refused(error))
            case ..<60:
                let step = Step.take(page, pages: count)
                guard let frag = cursor.takeNext(count * pageSize) else { return RecordedStep(step, .took(nil)) }
                return RecordedStep(step, Self.observe(frag, keepingIn: &taken))
            case ..<80:
                let change = randomChange()
                var was: PageProperty? = nil
                let protected = cursor.protectNext(count * pageSize) { property in
                    was = property
                    change.apply(&property)
                }
                // AVAIL1 is the page table's marker, which `protectNext` restores whatever the change
                // does and `query` never reports: leave it out of what the change saw.
                was?.flags.remove(.avail1)
                return RecordedStep(.protect(page, pages: count, change), .protected(protected, was: was))
            default:
                return try readStep(at: page, in: range, query: { try cursor.query() }, findNext: { cursor.findNext($0) })
            }
        }

        /// A query (half the time) or a `findNext` from `page`, through the cursor's `query` and
        /// `findNext`; the cursor is at `page`.
        mutating func readStep(at page: Vaddr, in range: Range<Vaddr>,
                               query: () throws -> (range: Range<Vaddr>, item: MappedItemRef?),
                               findNext: (Int) -> Vaddr?) throws -> RecordedStep {
            if rng.chance(50) {
                let (leafRange, item) = try query()
                return RecordedStep(.query(page), .leaf(item.map { Leaf(leafRange, $0) }))
            }
            let count = rng.int(1...((range.upperBound - page) / pageSize))
            return RecordedStep(.findNext(page, pages: count), .found(findNext(count * pageSize)))
        }

        /// What a `takeNext` removed, as an observation; the fragment goes to `kept`. (It is taken
        /// apart and rebuilt: Swift 6.3 rejects binding a noncopyable payload in a borrowing `switch`
        /// ("copy of noncopyable typed value", a compiler bug).)
        static func observe(_ frag: consuming PageTableFrag<UserPtConfig>,
                            keepingIn kept: inout PageTableFrag<UserPtConfig>?) -> Observation {
            switch consume frag {
            case .mapped(let va, let item):
                let leaf = Leaf(va: va, size: item.info.size, paddr: item.paddr, property: item.property)
                kept = .mapped(va: va, item: item)
                return .took(leaf)
            case .strayPageTable(let node, let va, let len, let leaves):
                kept = .strayPageTable(node: node, va: va, len: len, numFrames: leaves)
                return .tookSubtree(va, leaves: leaves)
            }
        }

        // MARK: Random choices

        /// Most of the time (70 %) a range in a shared window, else in a private one; a tenth of
        /// them the whole window, the rest one to eight pages of it.
        mutating func randomRange() -> Range<Vaddr> {
            let window = rng.chance(70) ? rng.pick(Self.sharedWindows) : rng.pick(privateWindows)
            if rng.chance(10) { return pages(window.first, window.pages) }
            let start = rng.below(window.pages)
            return pages(window.first + UInt64(start) * kib4, rng.int(1...min(8, window.pages - start)))
        }

        mutating func randomPage(in range: Range<Vaddr>) -> Vaddr {
            range.lowerBound + rng.below((range.upperBound - range.lowerBound) / pageSize) * pageSize
        }

        /// A user property: any of `r`, `rw`, `rx`, `rwx`, any cache policy, sometimes `avail2` or
        /// `global`.
        mutating func randomProperty() -> PageProperty {
            var flags = rng.pick([PageFlags.r, .rw, .rx, .rwx])
            if rng.chance(25) { flags.insert(.avail2) }
            var privileged = PrivilegedPageFlags.user
            if rng.chance(25) { privileged.insert(.global) }
            return PageProperty(flags: flags, cache: rng.pick(CachePolicy.allCases), privilegedFlags: privileged)
        }

        /// New rights (no access at all among them), a cache policy, or a toggled `avail2` or `global`.
        mutating func randomChange() -> ProtectionChange {
            switch rng.below(4) {
            case 0: return .rights(rng.pick([PageFlags(), .r, .rw, .rx, .rwx]))
            case 1: return .cache(rng.pick(CachePolicy.allCases))
            case 2: return .toggleAvail2
            default: return .toggleGlobal
            }
        }
    }

    /// Every leaf of `table`, read through one read-only cursor over the whole user half.
    static func leavesThroughCursor(_ table: PageTable<UserPtConfig>) throws -> [Vaddr: Leaf] {
        let all = Vaddr(0)..<Vaddr(userEnd)
        var cursor = try table.cursor(all)
        var leaves: [Vaddr: Leaf] = [:]
        while cursor.findNext(all.upperBound - cursor.virtAddr) != nil {
            let (range, item) = try cursor.query()
            guard let item else { break }   // `findNext` stopped at a mapped address
            leaves[range.lowerBound] = Leaf(range, item)
            guard range.upperBound < all.upperBound else { break }
            try cursor.jump(range.upperBound)
        }
        return leaves
    }
}

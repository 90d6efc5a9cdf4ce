// Reclamation safety: lock-free walkers never read a freed page-table node.
//
// One thread maps pages in many 2 MiB regions of a 1 GiB window and unmaps them again, whole
// subtrees at once or page by page, while walker threads translate addresses in the window
// without locks (`pageWalk`) and create read-only cursors there (the lock-free descent), one on
// a CPU of its own and one bound to none. The machine poisons every node it frees after a grace
// period, and the walks count every poison word they read (`PoisonReads`). With grace periods no
// walker reads poison; with the mutant that frees at once (`reclaimsWithoutGracePeriod`) one does.
// The suite is serialized: the poison count is global, and only these tests poison.

import Foundation
import Synchronization
import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

@Suite(.serialized) struct GracePeriodTests {
    /// The window the nodes come and go in: root entry 0, level-3 entry 1.
    static let window = Vaddr(gib1)..<Vaddr(2 * gib1)
    /// How many 2 MiB regions of the window get a page, so a level-1 node each.
    static let regions = 64

    /// Maps one page in each region, then unmaps them: the whole window in one `takeNext` (a
    /// detached subtree, freed when its fragment goes) on even rounds, page by page on odd ones
    /// (nodes detached below the cursor's root and above it, freed when the cursor goes).
    static func churn(_ table: PageTable<UserPtConfig>, round: Int) throws {
        var cursor = try table.cursorMut(window)
        for region in 0..<regions {
            let frame = try FrameAllocOptions().zeroed(false).allocFrame(in: table.machine)
            try cursor.jump(window.lowerBound + region * (2 << 20) + (round % 512) * pageSize)
            cursor.map(MappedItem(frame: frame, property: .user(.rw)))
        }
        try cursor.jump(window.lowerBound)
        if round % 2 == 0 {
            _ = cursor.takeNext(window.upperBound - window.lowerBound)
        } else {
            _ = takeAll(&cursor, upTo: window.upperBound)
        }
    }

    /// Translates random addresses of the window and opens cursors there until `stop`.
    static func walk(_ table: PageTable<UserPtConfig>, seed: UInt64, cursors: Bool, stop: SharedInt) {
        var rng = SplitMix64(state: seed)
        while stop.load() == 0 {
            let va = window.lowerBound + Int(rng.next() % UInt64(regions)) * (2 << 20) + Int(rng.next() % 512) * pageSize
            _ = table.pageWalk(va)
            if cursors, rng.next() % 8 == 0, var cursor = try? table.cursor(va..<(va + pageSize)) {
                _ = try? cursor.query()
            }
        }
    }

    /// Runs `rounds` of churn against two walkers (one on CPU 1, one on no CPU) until `enough`
    /// holds; returns the poison words read meanwhile.
    static func poisonReads(mutant: Bool, rounds: Int, cursors: Bool, enough: @escaping @Sendable (Int) -> Bool) throws -> Int {
        let machine = makeMachine(memory: 64 << 20, cpus: 2)
        machine.poisonsReclaimedNodes = true
        if mutant { machine.mutants = .reclaimsWithoutGracePeriod }
        let table = try PageTable<UserPtConfig>(empty: machine)
        let before = PoisonReads.count.load(ordering: .relaxed)
        let stop = SharedInt()
        let failures = Failures()
        let finished = runThreads(3, timeout: .seconds(60)) { thread in
            switch thread {
            case 0:
                machine.withCpu(0) {
                    for round in 0..<rounds where !enough(PoisonReads.count.load(ordering: .relaxed) - before) {
                        do { try churn(table, round: round) } catch { failures.record("round \(round): \(error)") }
                    }
                }
                stop.store(1)
            case 1: machine.withCpu(1) { walk(table, seed: 1, cursors: cursors, stop: stop) }
            default: walk(table, seed: 2, cursors: cursors, stop: stop)
            }
        }
        try requireThreadsDone(finished, failures, table, deadlock: "churn or walkers deadlocked")
        let read = PoisonReads.count.load(ordering: .relaxed) - before
        if !mutant {
            expectOnlyTheRoot(table, machine)
            #expect(machine.cleanInv())
        }
        return read
    }

    /// With grace periods, 300 rounds of churn (about 19,000 nodes freed and poisoned) under two
    /// walkers: no walker reads poison, and everything comes back.
    @Test func walkersNeverReadAFreedNode() throws {
        let read = try Self.poisonReads(mutant: false, rounds: 300, cursors: true) { _ in false }
        #expect(read == 0, "walkers read \(read) words of freed nodes")
    }

    /// The mutant that frees nodes without a grace period is caught: a walker reads poison.
    @Test func freeingWithoutAGracePeriodIsCaught() throws {
        let read = try Self.poisonReads(mutant: true, rounds: 20_000, cursors: false) { $0 > 0 }
        #expect(read > 0, "no walker read a freed node in 20,000 rounds with the mutant")
    }
}

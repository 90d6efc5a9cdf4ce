// The lock-free admission of readers and writers (`VmSpace+Registry.swift`): two CPUs racing to
// admit overlapping handles never both get in, and never both fail; disjoint ones always both
// get in; handles beyond the fast slots fall back to the locked registry, and conflicts between
// a handle in a slot and one in the registry are seen both ways; ids stay unique and the snapshot
// lists every active handle, in activation order; a snapshot taken while other CPUs admit and
// drop always satisfies `inv`. The racing tests run under ThreadSanitizer in CI (`.ci/run`).

import Foundation
import Synchronization
import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

/// A barrier for a fixed number of threads, used once per phase: phase `k` is passed when every
/// thread has arrived `k + 1` times. It spins and yields, so it works on a busy 2-core machine.
private final class PhaseBarrier: Sendable {
    private let arrived = Atomic<Int>(0)
    private let parties: Int
    init(parties: Int) { self.parties = parties }

    func wait(phase: Int) {
        arrived.add(1, ordering: .acquiringAndReleasing)
        var spins = 0
        while arrived.load(ordering: .acquiring) < parties * (phase + 1) {
            spins += 1
            if spins % 1024 == 0 { sched_yield() }
        }
    }
}

/// Spins `count` rounds of an atomic load: a delay of a few nanoseconds each, so that over many
/// rounds two threads leaving a barrier reach the racing code at every offset of one another.
private func jitter(_ count: Int, _ word: borrowing Atomic<Int>) {
    for _ in 0..<count { _ = word.load(ordering: .relaxed) }
}

/// A reader or a writer, held until the round's other attempt is over.
private enum Held: ~Copyable {
    case reader(VmReader<Fallible>)
    case writer(VmWriter<Fallible>)
}

/// A handle in a box, so that many can be kept in an array (they are not copyable).
private final class HandleBox {
    var held: Held?
    init(_ writer: consuming VmWriter<Fallible>) { held = .writer(writer) }
    init(_ reader: consuming VmReader<Fallible>) { held = .reader(reader) }
}

/// What one attempt of a round did: admitted, or refused naming the conflicting range.
private enum Attempt: Equatable, Sendable {
    case admitted
    case refused(conflicting: Range<Vaddr>)
    case failed(String)
}

/// The attempts of each thread, one per round, handed over when the thread ends. Guarded by an
/// `NSLock` (pthread-based, so ThreadSanitizer sees it; it does not see `Mutex`'s futex).
private final class Attempts: @unchecked Sendable {
    private let lock = NSLock()
    private var byThread: [Int: [Attempt]] = [:]
    func set(_ thread: Int, _ attempts: [Attempt]) { lock.withLock { byThread[thread] = attempts } }
    func of(_ thread: Int) -> [Attempt] { lock.withLock { byThread[thread] ?? [] } }
}

/// A space active on CPUs 0 and 1 of a 2-CPU machine, with nothing mapped (admission does not
/// look at the page table).
private func spaceOnTwoCpus(sharedReader: Bool = false) throws -> (Machine, VmSpace) {
    let machine = makeMachine(cpus: 2, audit: false)
    let space = try VmSpace(machine: machine, sharedReader: sharedReader)
    for cpu in 0..<2 { machine.withCpu(cpu) { space.activate(on: cpu) } }
    return (machine, space)
}

/// Runs `rounds` rounds on two threads (bound to CPUs 0 and 1 when `bound`, else on none): in
/// each, both threads wait at a barrier, then thread `t` tries to create `kinds(round)[t]` (a
/// writer when `true`) over `ranges(round)[t]`, holds what it got until both have tried, drops
/// it, and waits until both have dropped. Returns each thread's attempts.
private func race(_ machine: Machine, _ space: VmSpace, rounds: Int, bound: Bool,
                  kinds: @escaping @Sendable (Int) -> (Bool, Bool),
                  ranges: @escaping @Sendable (Int) -> (Range<Vaddr>, Range<Vaddr>)) -> (Bool, [[Attempt]]) {
    let barrier = PhaseBarrier(parties: 2)
    let attempts = Attempts()
    let spin = Atomic<Int>(0)
    let finished = runThreads(2, timeout: .seconds(120)) { thread in
        func body() {
            var mine: [Attempt] = []
            mine.reserveCapacity(rounds)
            for round in 0..<rounds {
                barrier.wait(phase: 3 * round)
                jitter(thread == 0 ? round % 16 * 4 : round / 16 % 16 * 4, spin)
                let isWriter = thread == 0 ? kinds(round).0 : kinds(round).1
                let range = thread == 0 ? ranges(round).0 : ranges(round).1
                var held: Held? = nil
                do throws(OSTDError) {
                    if isWriter {
                        held = .writer(try space.createWriter(range.lowerBound, range.upperBound - range.lowerBound))
                    } else {
                        held = .reader(try space.createReader(range.lowerBound, range.upperBound - range.lowerBound))
                    }
                    mine.append(.admitted)
                } catch {
                    if case .accessConflict(let requested, let conflicting) = error, requested == range {
                        mine.append(.refused(conflicting: conflicting))
                    } else {
                        mine.append(.failed("\(error)"))
                    }
                }
                barrier.wait(phase: 3 * round + 1)
                _ = consume held
                barrier.wait(phase: 3 * round + 2)
            }
            attempts.set(thread, mine)
        }
        if bound { machine.withCpu(thread) { body() } } else { body() }
    }
    return (finished, [attempts.of(0), attempts.of(1)])
}

@Suite struct FastAdmissionTests {
    // MARK: Two CPUs racing

    /// Overlapping handles (writer and writer, writer and reader, reader and reader without
    /// sharing): in every round exactly one is admitted, and the other is refused naming the
    /// winner's range, a handle that really is active. Bound threads use their CPUs' own slots;
    /// threads on no CPU the shared pool.
    @Test(arguments: [true, false])
    func overlappingHandlesOnTwoCpusNeverBothGetIn(bound: Bool) throws {
        let (machine, space) = try spaceOnTwoCpus()
        let rounds = 4000
        let a = bytes(0, 16)
        let b = bytes(8, 24)
        let (finished, attempts) = race(machine, space, rounds: rounds, bound: bound,
                                        kinds: { round in (round % 4 < 2, round % 4 == 0 || round % 4 == 2) },
                                        ranges: { round in round % 2 == 0 ? (a, b) : (b, a) })
        #expect(finished, "the racing threads did not finish")
        var problems: [String] = []
        var wins = [0, 0]
        for round in 0..<min(attempts[0].count, attempts[1].count) {
            let ranges = round % 2 == 0 ? (a, b) : (b, a)
            switch (attempts[0][round], attempts[1][round]) {
            case (.admitted, .refused(let conflicting)):
                wins[0] += 1
                if conflicting != ranges.0 { problems.append("round \(round): refused naming \(conflicting)") }
            case (.refused(let conflicting), .admitted):
                wins[1] += 1
                if conflicting != ranges.1 { problems.append("round \(round): refused naming \(conflicting)") }
            case let outcome:
                problems.append("round \(round): \(outcome)")
            }
        }
        #expect(attempts[0].count == rounds && attempts[1].count == rounds)
        #expect(problems.isEmpty, "\(problems.count) bad rounds, first: \(problems.prefix(5))")
        #expect(registered(space).readers.isEmpty && registered(space).writers.isEmpty)
        #expect(wins[0] + wins[1] == rounds)
    }

    /// Disjoint handles (adjacent ranges, every pairing of kinds) are both admitted in every
    /// round: the fast path never refuses spuriously, and neither does the locked one.
    @Test(arguments: [true, false])
    func disjointHandlesOnTwoCpusAlwaysBothGetIn(bound: Bool) throws {
        let (machine, space) = try spaceOnTwoCpus()
        let rounds = 4000
        let (finished, attempts) = race(machine, space, rounds: rounds, bound: bound,
                                        kinds: { round in (round % 4 < 2, round % 2 == 0) },
                                        ranges: { _ in (bytes(0, 16), bytes(16, 32)) })
        #expect(finished, "the racing threads did not finish")
        let bad = (0..<rounds).filter { attempts[0].count <= $0 || attempts[1].count <= $0
            || attempts[0][$0] != .admitted || attempts[1][$0] != .admitted }
        #expect(bad.isEmpty, "\(bad.count) rounds not both admitted, first: \(bad.prefix(5))")
        // Every admission was decided on the fast path: one ticket each (the counter starts at
        // 1), none for a locked section; nothing went to the locked registry.
        // SAFETY: the space is alive and no thread uses it any more.
        #expect(unsafe space.registry.pointee.admission.load(ordering: .relaxed) >> 8 == UInt64(1 + 2 * rounds))
        #expect(unsafe space.registry.pointee.locked.pointee.slabs.isEmpty)
    }

    /// Shared readers over the same bytes are both admitted in every round.
    @Test func sharedReadersOnTwoCpusAlwaysBothGetIn() throws {
        let (machine, space) = try spaceOnTwoCpus(sharedReader: true)
        let rounds = 2000
        let (finished, attempts) = race(machine, space, rounds: rounds, bound: true,
                                        kinds: { _ in (false, false) }, ranges: { _ in (bytes(0, 16), bytes(0, 16)) })
        #expect(finished)
        #expect(attempts[0] == Array(repeating: .admitted, count: rounds))
        #expect(attempts[1] == Array(repeating: .admitted, count: rounds))
    }

    /// CPUs 0 and 1 admit and drop handles of random kinds and ranges (up to five each at once,
    /// so they overflow their slots into the pool and the locked registry) while a third thread
    /// takes snapshots: every snapshot satisfies `inv` and lists no id twice, and at the end
    /// nothing is registered and fast admission is on again.
    @Test func snapshotsTakenWhileTwoCpusAdmitAlwaysSatisfyInv() throws {
        let (machine, space) = try spaceOnTwoCpus()
        let failures = Failures()
        let done = Atomic<Int>(0)
        let finished = runThreads(3, timeout: .seconds(120)) { thread in
            if thread == 2 {
                var snapshots = 0
                repeat {
                    let owner = space.ownerSnapshot
                    failures.check(owner.inv(), "a snapshot breaks inv: \(owner)")
                    let ids = (owner.readers + owner.writers).map(\.id)
                    failures.check(Set(ids).count == ids.count, "a snapshot lists an id twice: \(ids)")
                    snapshots += 1
                } while done.load(ordering: .acquiring) < 2
                failures.check(snapshots > 0, "no snapshot taken")
                return
            }
            machine.withCpu(thread) {
                var random = SplitMix64(state: UInt64(thread) &+ 7)
                var readers: [HandleBox] = []
                var writers: [HandleBox] = []
                for _ in 0..<6000 {
                    let lo = Int(random.next() % 64)
                    let len = 1 + Int(random.next() % 12)
                    if random.next() % 2 == 0, readers.count + writers.count < 5 {
                        do throws(OSTDError) {
                            if random.next() % 2 == 0 {
                                writers.append(HandleBox(try space.createWriter(base + lo, len)))
                            } else {
                                readers.append(HandleBox(try space.createReader(base + lo, len)))
                            }
                        } catch {
                            guard case .accessConflict = error else {
                                failures.record("cpu \(thread): \(error)")
                                continue
                            }
                        }
                    } else if !writers.isEmpty, random.next() % 2 == 0 {
                        _ = writers.removeLast()
                    } else if !readers.isEmpty {
                        _ = readers.removeLast()
                    }
                }
                readers.removeAll()
                writers.removeAll()
            }
            done.add(1, ordering: .releasing)
        }
        #expect(finished)
        failures.report()
        #expect(registered(space).readers.isEmpty && registered(space).writers.isEmpty)
        // SAFETY: the space is alive and no thread uses it any more.
        #expect(unsafe space.registry.pointee.admission.load(ordering: .relaxed) & IoRegistry.slowMask == 0)
    }

    // MARK: Overflow and mixed conflicts (one thread)

    /// More handles than slots: the CPU's own slots, then the pool, then the locked registry; all
    /// admitted, listed in activation order with unique ids; conflicts with a handle in each place
    /// are refused naming it, whether the newcomer is decided fast or locked; once the registry is
    /// empty again, admission is fast again.
    @Test(arguments: [true, false])
    func handlesBeyondTheSlotsGoToTheLockedRegistry(bound: Bool) throws {
        let (machine, space) = try spaceOnTwoCpus()
        func body() throws {
            let count = IoRegistry.slotsPerCpu + IoRegistry.poolSlots + 3
            var writers: [HandleBox] = []
            for i in 0..<count { writers.append(HandleBox(try space.createWriter(base + 16 * i, 16))) }
            let snapshot = space.ownerSnapshot
            #expect(snapshot.writers.map(\.range) == (0..<count).map { bytes(16 * $0, 16 * $0 + 16) })
            #expect(Set(snapshot.writers.map(\.id)).count == count)
            #expect(snapshot.writers.map(\.id) == snapshot.writers.map(\.id).sorted())
            #expect(snapshot.inv())
            // SAFETY: the live space's registry, read by its one user here.
            let locked = unsafe space.registry.pointee.locked
            #expect(unsafe locked.pointee.writers.count == (bound ? 3 : 3 + IoRegistry.slotsPerCpu))
            #expect(unsafe space.registry.pointee.admission.load(ordering: .relaxed) & IoRegistry.slowMask != 0)
            // Every handle keeps its bytes: the first (a slot), the last (the registry).
            for i in [0, count / 2, count - 1] {
                #expect(throws: OSTDError.accessConflict(requested: bytes(16 * i + 4, 16 * i + 5),
                                                         conflicting: bytes(16 * i, 16 * i + 16))) {
                    _ = try space.createReader(base + 16 * i + 4, 1)
                }
            }
            // Dropping the registry's handles turns fast admission back on; a conflict with a
            // slot's handle is then refused from the fast path's retreat, as before.
            writers.removeLast(3 + (bound ? 0 : IoRegistry.slotsPerCpu))
            #expect(unsafe space.registry.pointee.admission.load(ordering: .relaxed) & IoRegistry.slowMask == 0)
            #expect(throws: OSTDError.accessConflict(requested: bytes(0, 32), conflicting: bytes(0, 16))) {
                _ = try space.createWriter(base, 32)
            }
            let reader = try space.createReader(base + 16 * count, 16)
            #expect(space.ownerSnapshot.readers.map(\.range) == [bytes(16 * count, 16 * count + 16)])
            _ = consume reader
            writers.removeAll()
            #expect(registered(space).writers.isEmpty)
        }
        if bound { try machine.withCpu(0) { try body() } } else { try body() }
    }

    /// A handle admitted on one CPU and dropped on another frees its slot there: the bytes are
    /// free again for both.
    @Test func aHandleDroppedOnAnotherCpuFreesItsSlot() throws {
        let (machine, space) = try spaceOnTwoCpus()
        final class Box: @unchecked Sendable { var writer: VmWriter<Fallible>? = nil }
        let box = Box()
        box.writer = try machine.withCpu(0) { try space.createWriter(base, 16) }
        let refused = machine.withCpu(1) { isNone(try? space.createWriter(base, 16)) }
        #expect(refused)
        let finished = runThreads(1) { _ in machine.withCpu(1) { box.writer = nil } }
        #expect(finished)
        #expect(machine.withCpu(0) { !isNone(try? space.createWriter(base, 16)) })
        #expect(machine.withCpu(1) { !isNone(try? space.createWriter(base, 16)) })
        #expect(registered(space).writers.isEmpty)
    }

    /// Disposing, re-activating, splitting and turning a writer into a reader work on a handle in
    /// a slot as on one in the registry, and keep the activation order.
    @Test func theLifecycleWorksOnSlotsAndRegistryAlike() throws {
        let (machine, space) = try spaceOnTwoCpus()
        try machine.withCpu(0) {
            // Fill the CPU's slots and the pool, so the last writer is in the registry.
            var fillers: [HandleBox] = []
            for i in 0..<(IoRegistry.slotsPerCpu + IoRegistry.poolSlots) {
                fillers.append(HandleBox(try space.createWriter(base + 0x1000 + 16 * i, 16)))
            }
            let inRegistry = try space.createWriter(base, 16)
            // SAFETY: the live space's registry, read by its one user here.
            #expect(unsafe space.registry.pointee.locked.pointee.writers.count == 1)
            guard case .writer(let inSlot)? = fillers.removeFirst().held.take() else { return }
            func exercise(_ writer: consuming VmWriter<Fallible>) throws {
                let range = writer.owner!.range
                space.disposeWriter(&writer)
                #expect(!space.ownerSnapshot.writers.map(\.range).contains(range))
                let other = try space.createReader(range.lowerBound, 4)
                let otherRange = other.owner!.range
                #expect(throws: OSTDError.accessConflict(requested: range, conflicting: otherRange)) {
                    try space.activateWriter(&writer)
                }
                _ = consume other
                try space.activateWriter(&writer)
                // Re-activated last: last in the list.
                #expect(space.ownerSnapshot.writers.last?.range == range)
                let front = writer.split(4)
                let head = range.lowerBound..<(range.lowerBound + 4)
                #expect(space.ownerSnapshot.writers.suffix(2).map(\.range) == [(range.lowerBound + 4)..<range.upperBound, head])
                let reader = front.writeToRead()
                #expect(space.ownerSnapshot.readers.map(\.range) == [head])
                #expect(!readerAdmitted(space, range.lowerBound..<(range.lowerBound + 1)))
                #expect(!writerAdmitted(space, range.lowerBound..<(range.lowerBound + 1)))
                #expect(space.ownerSnapshot.inv())
                _ = consume reader
                _ = consume writer
            }
            try exercise(inRegistry)
            try exercise(inSlot)
            fillers.removeAll()
            #expect(registered(space).writers.isEmpty && registered(space).readers.isEmpty)
        }
    }

    /// Turning `sharedReader` off is refused while overlapping readers are active, wherever they
    /// are held (a slot and the registry).
    @Test func sharedReaderSeesReadersInSlotsAndRegistry() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let (machine, space) = try spaceOnTwoCpus(sharedReader: true)
            try machine.withCpu(0) {
                var readers: [HandleBox] = []
                for i in 0..<(IoRegistry.slotsPerCpu + IoRegistry.poolSlots) {
                    readers.append(HandleBox(try space.createReader(base + 0x1000 + 16 * i, 16)))
                }
                readers.append(HandleBox(try space.createReader(base, 16)))       // in the registry
                readers.removeFirst()                                       // frees a slot of CPU 0
                readers.append(HandleBox(try space.createReader(base + 8, 16)))   // in that slot
                space.sharedReader = false
            }
        }
        #expect(stderrContains(result, "overlapping readers are active"))
    }
}

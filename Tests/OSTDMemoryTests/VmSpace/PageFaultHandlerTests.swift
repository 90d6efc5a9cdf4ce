// The page-fault handler's slot: faults call it without a lock or a retain, inside a read-side
// section; replacing it waits for a grace period, so a handler that has been replaced is never
// called once the setter has returned, and its slot is not cleared under a fault still using it.

import Synchronization
import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

@Suite struct PageFaultHandlerTests {
    /// A CPU faults again and again while another thread replaces the handler 40 times, each
    /// time while a call of the current handler is in flight (it has started and not ended). Every
    /// handler spins a little, then counts its call; once a setter has returned, the handler it
    /// replaced never runs again, so the in-flight call ended before the setter returned.
    @Test func aReplacedHandlerIsNotCalledAfterTheSetterReturns() throws {
        let machine = makeMachine(cpus: 2, audit: false)
        let space = try VmSpace(machine: machine)
        let generations = 40
        let calls = CallCounts(generations + 1)
        let started = CallCounts(generations + 1)
        @Sendable func handler(_ generation: Int) -> PageFaultHandler {
            { _, _ in
                started.add(generation)
                var spin = 0
                for i in 0..<2_000 { spin &+= i }
                // Counted as the call ends: a call still running when its replacement is set
                // counts after the setter has returned, unless the setter waited for it.
                calls.add(generation)
                return spin == 0
            }
        }
        space.pageFaultHandler = handler(0)
        let failures = Failures()
        let done = Atomic<Bool>(false)
        let frozen = CallCounts(generations)
        let finished = runThreads(2) { thread in
            if thread == 0 {
                machine.withCpu(1) {
                    space.activate(on: 1)
                    repeat {
                        // Nothing is mapped: every read faults, and the handler refuses.
                        let result = Result { try space.withReader(at: base, count: 8) { reader in try reader.readVal(UInt64.self) } }
                        if case .success = result { failures.record("a read of an unmapped page succeeded") }
                    } while !done.load(ordering: .acquiring)
                }
            } else {
                while calls[0] == 0 || started[0] == calls[0] {}
                for generation in 1...generations {
                    space.pageFaultHandler = handler(generation)
                    frozen.set(generation - 1, to: calls[generation - 1])
                    // Three calls of the new handler, then one in flight.
                    while calls[generation] < 3 || started[generation] == calls[generation] {}
                }
                done.store(true, ordering: .releasing)
            }
        }
        #expect(finished, "threads deadlocked")
        failures.report()
        for generation in 0..<generations {
            #expect(calls[generation] == frozen[generation],
                    "handler \(generation) was called after it was replaced")
        }
    }

    /// Setting a handler from inside a handler would wait for its own read-side section: it
    /// panics instead.
    @Test func settingTheHandlerInsideAHandlerPanics() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let machine = makeMachine()
            let space = try! VmSpace(machine: machine)
            space.activate(on: 0)
            space.pageFaultHandler = { space, _ in
                space.pageFaultHandler = nil
                return false
            }
            machine.withCpu(0) {
                _ = try? space.withReader(at: base, count: 8) { reader in try reader.readVal(UInt64.self) }
            }
        }
        #expect(stderrContains(result, "pageFaultHandler set inside a read-side section"))
    }
}

/// Call counters, atomics shared with `@Sendable` handlers (no lock, which would
/// order the threads and hide a race on the handler's slot from ThreadSanitizer).
private final class CallCounts: @unchecked Sendable {
    let counters: UnsafeMutablePointer<Atomic<Int>>
    let count: Int

    init(_ count: Int) {
        self.count = count
        // SAFETY: a fresh allocation, initialised whole; freed by `deinit`.
        counters = .allocate(capacity: count)
        for i in 0..<count { (counters + i).initialize(to: Atomic(0)) }
    }

    deinit { counters.deallocate() }

    func add(_ generation: Int) { counters[generation].add(1, ordering: .relaxed) }
    func set(_ generation: Int, to value: Int) { counters[generation].store(value, ordering: .relaxed) }
    subscript(generation: Int) -> Int { counters[generation].load(ordering: .relaxed) }
}

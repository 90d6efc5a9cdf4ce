// Property tests in the seeds' own shape: random `SpecOp` programs run on an audited space, every
// op checked against the specification (`OpExecutor`). Correct code must never violate it; each
// of the core's mutants (`CoreMutants`, debug builds) must be caught within the property-test
// budget, and the library then shrinks the program that caught it to a minimal one.
//
// The budget is a number of executed (not skipped) audited ops: `OSTD_AUDITED_OPS` in the
// environment, 3,000 by default so that `swift test` stays quick; `.ci/run` asks for 100,000.

import Testing
import PropertyBased
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

@Suite struct OpSequencePropertyTests {
    /// The audited ops a run of the clean property must execute at least.
    static var budget: Int {
        getenv("OSTD_AUDITED_OPS").flatMap { Int(String(cString: $0)) } ?? 3000
    }

    @Test(.shrinking) func randomProgramsNeverViolateTheSpecification() async {
        let executed = Atomic<Int>(0)
        let memViewChecks = Atomic<Int>(0)
        while executed.load(ordering: .relaxed) < Self.budget {
            await propertyCheck(count: 25, input: Gen.int(in: 0...SpecOp.codeLimit).array(of: 1...120)) { codes in
                let executor = try! OpExecutor()
                let found = executor.run(codes)
                executed.add(executor.executed, ordering: .relaxed)
                if executor.checkedMemViews { memViewChecks.add(1, ordering: .relaxed) }
                #expect(found.isEmpty, "\(found.prefix(3)) after \(executor.trace.map(\.description))")
            }
        }
        print("OpSequencePropertyTests: \(executed.load(ordering: .relaxed)) audited ops, "
              + "\(memViewChecks.load(ordering: .relaxed)) MemView checks with live handles, no violation")
    }

    /// Each mutant is caught within 400 programs (without shrinking, to keep the suite quick).
    @Test(.shrinking(false), arguments: CoreMutants.all.map(\.name))
    func eachMutantIsCaught(_ name: String) async {
        let mutant = CoreMutants.all.first { $0.name == name }!.mutant
        await withKnownIssue("the mutant \(name) must be caught") {
            await Self.runPrograms(count: 400, mutants: mutant)
        }
    }

    /// A caught mutant's program is shrunk to a minimal one: the wrong-address map needs a single
    /// `map` op, and the shortest failing program the library tried while shrinking is that op.
    @Test(.shrinking) func aCaughtMutantShrinksToOneOp() async {
        let failing = Mutex<[[Int]]>([])
        await withKnownIssue("the mutant mapWritesWrongPaddr must be caught") {
            await Self.runPrograms(count: 400, maxLength: 16, mutants: .mapWritesWrongPaddr) { codes in
                failing.withLock { $0.append(codes) }
            }
        }
        let shortest = failing.withLock { $0.min { $0.count < $1.count } } ?? []
        #expect(shortest.count == 1 && shortest.first.map { SpecOp(code: $0).description.hasPrefix("map(") } == true,
                "shrunk to \(shortest.map { SpecOp(code: $0).description })")
    }

    /// Runs `count` random programs of up to `maxLength` ops on machines with `mutants`, expecting
    /// no violation; `failed` is told each program that broke the specification.
    static func runPrograms(count: Int, maxLength: Int = 120, mutants: CoreMutants,
                            failed: @Sendable ([Int]) -> Void = { _ in }) async {
        await propertyCheck(count: count, input: Gen.int(in: 0...SpecOp.codeLimit).array(of: 1...maxLength)) { codes in
            let executor = try! OpExecutor(mutants: mutants)
            let found = executor.run(codes)
            if !found.isEmpty { failed(codes) }
            #expect(found.isEmpty, "\(found.prefix(3)) after \(executor.trace.map(\.description))")
        }
    }
}

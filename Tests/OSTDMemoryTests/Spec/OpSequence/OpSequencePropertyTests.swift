// Property tests in the seeds' own shape: random `SpecOp` programs run on an audited space, every op
// checked against the specification (`OpExecutor`). Correct code must never violate it; each of
// the core's mutants (`CoreMutants`) must be caught within the same budget, and the library then
// shrinks the program to a minimal one.

import Testing
import PropertyBased
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

@Suite struct OpSequencePropertyTests {
    @Test func randomProgramsNeverViolateTheSpecification() async {
        await propertyCheck(count: 20, input: Gen.int(in: 0...Int.max).array(of: 1...120)) { codes in
            let executor = try! OpExecutor()
            let found = executor.run(codes)
            #expect(found.isEmpty, "\(found.prefix(3)) after \(executor.trace.map(\.description))")
        }
    }
}

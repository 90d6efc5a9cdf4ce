// Huge blocks stay available under small-frame churn: the allocator groups its 2 MiB pageblocks
// by the size of what they serve (docs/frames.md, "Grouping by size"). The reproducer of the bug
// that motivated it runs through the script runner; the policy's rules are checked on a machine.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost
import OSTDScript

@Suite struct FragmentationTests {
    /// The reproducer: a 4 KiB hole punched into a 1 GiB leaf, a 4 KiB map elsewhere, the rest of
    /// the leaf unmapped, and the 1 GiB map again. It failed with `out-of-memory` while 262 frames
    /// were in use: the pieces of the split leaf stayed in the CPU cache (or were handed out again
    /// for small frames), so the only 1 GiB block of a 2 GiB machine never coalesced.
    @Test("a 1 GiB leaf can be mapped again after its pieces are unmapped around a 4 KiB map")
    func gigabyteLeafMapsAgainAfterSmallChurn() throws {
        let script = """
            map 0x40000000 1G rwu page=1G
            unmap 0x40000000 4K
            map 0x1000 4K rwu
            unmap 0x40001000 0x3ffff000
            map 0x40000000 1G rwu page=1G
            """
        var output: [String] = []
        var errors: [String] = []
        let code = runScriptCommand(RunOptions(script: "churn.ostd", json: true, memory: "2G"), text: script,
                                    output: { output.append($0) }, errors: { errors.append($0) })
        #expect(code == 0 && errors.isEmpty, "\(errors)")
        try #require(output.count == 6, "\(output)")
        for line in output[0..<5] { #expect(line.contains("\"ok\":true"), "\(line)") }
        #expect(output[4].contains("\"pages\":262144"), "\(output[4])")
    }
}

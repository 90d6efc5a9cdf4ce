// `ostd-mm run --audit` catches a corrupted state: faults injected after an op (through the
// runner's test-only `afterOp` hook) — an uncounted page-table entry, a reference count bumped
// behind the ledger's back, a stale TLB entry left by a "forgotten" flush, an overlapping
// registration — each make the audit print the predicate and the line, and exit 3.

@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost
@testable import OSTDScript
import Testing

struct AuditTests {
    static let script = "map 0x10000000 8K rwu\nread 0x10000000 4\nquery 0x10000000\n"

    /// Runs `script` audited, injecting `fault` after the op of line `line`.
    func audited(injectingAfter line: Int, _ fault: @escaping (ScriptRunner) -> Void)
        -> (code: Int32, output: [String], errors: [String]) {
        var output: [String] = []
        var errors: [String] = []
        var ops = 0
        let code = runScriptCommand(RunOptions(script: "audit.ostd", json: true, memory: "16M", audit: true),
                                    text: AuditTests.script, output: { output.append($0) }, errors: { errors.append($0) },
                                    progress: { _, _ in }, afterOp: { runner in
                                        ops += 1
                                        if ops == line { fault(runner) }
                                    })
        return (code, output, errors)
    }

    @Test func cleanRunIsOk() {
        let result = audited(injectingAfter: 0) { _ in }
        #expect(result.code == 0)
        #expect(result.output.last?.hasSuffix("\"audit\":\"ok\"}") == true)
    }

    @Test func uncountedEntryViolatesTheStructure() throws {
        // The entry is an untracked leaf: tearing the table down later drops no reference for it.
        let result = audited(injectingAfter: 1) { runner in
            var leafNode: Paddr? = nil
            runner.space.pageTable.forEachNode { node in if node.level == 1 { leafNode = node.paddr } }
            guard let node = leafNode else { return }
            // SAFETY: `node` is a level-1 node of this table; its page holds 512 eight-byte entries.
            let entry = runner.machine.pointer(to: node).advanced(by: 100 * 8).assumingMemoryBound(to: UInt64.self)
            entry.pointee = PageTableEntry.page(Paddr(0x7000), level: 1, prop: .user(.r)).raw | PageTableEntry.avail1
        }
        #expect(result.code == 3)
        #expect(result.output.count == 1)   // the op's line; no summary
        #expect(result.errors.first == "ostd-mm: audit: the specification is violated after line 1 (map):")
        #expect(result.errors.contains { $0.hasPrefix("  pageTableStructure: node ") && $0.hasSuffix("nrChildren 2 but 3 present entries") })
    }

    @Test func referenceTakenBehindTheLedgersBackViolatesAccounting() throws {
        var paddr: Paddr? = nil
        var machine: Machine? = nil
        let result = audited(injectingAfter: 2) { runner in
            guard let (leaf, _) = runner.space.pageTable.translate(Vaddr(0x1000_0000)) else { return }
            paddr = leaf.paddr
            machine = runner.machine
            runner.machine.metaSlot(of: leaf.paddr).incRefCount(paddr: leaf.paddr)
        }
        // Give the extra reference back, so the machine's memory goes with its last frame.
        // SAFETY: gives back exactly the one reference the fault took behind the ledger's back.
        _ = unsafe Frame<UntypedMeta>.fromRaw(try #require(paddr), in: try #require(machine))
        #expect(result.code == 3)
        #expect(result.errors.first == "ostd-mm: audit: the specification is violated after line 2 (read):")
        #expect(result.errors.contains { $0.hasPrefix("  referenceAccounting: frame \(paddr!): reference count 2") })
    }

    @Test func staleTlbEntryViolatesTlbSubsetOfPageTable() throws {
        var kept: Range<Paddr>? = nil
        var machine: Machine? = nil
        let result = audited(injectingAfter: 2) { runner in
            machine = runner.machine
            // The read filled CPU 0's TLB; remove the mapping without a flush (what a flusher that
            // forgot to flush would leave), keeping the frame so nothing is freed under the TLB.
            var cursor = try! runner.space.cursorMut(Vaddr(0x1000_0000)..<Vaddr(0x1000_1000))
            let fragment = cursor.takeNext(0x1000)
            _ = consume cursor
            if case .mapped(_, let item)? = consume fragment { kept = item.intoSegment().intoRaw() }
        }
        // SAFETY: `kept` comes from `intoRaw` in the fault, restored once.
        _ = unsafe Segment<DynFrameMeta>.fromRaw(try #require(kept), in: try #require(machine))
        #expect(result.code == 3)
        #expect(result.errors.contains { $0.hasPrefix("  tlbSubsetOfPageTable: cpu 0 caches 0x10000000 -> ") && $0.hasSuffix("which is not mapped") })
    }

    /// Keeps readers alive past the hook that made them.
    final class Held {
        var first: VmReader<Fallible>? = nil
        var second: VmReader<Fallible>? = nil
    }

    @Test func overlappingRegistrationsViolateVmSpaceOwnerInv() {
        let held = Held()
        let result = audited(injectingAfter: 1) { runner in
            // Two overlapping readers, admitted with sharing on; then sharing is turned off
            // behind the admission rule's back (its setter would refuse).
            runner.space.sharedReader = true
            held.first = try! runner.space.createReader(Vaddr(0x1000_0000), 16)
            held.second = try! runner.space.createReader(Vaddr(0x1000_0008), 16)
            runner.space.registry.pointee.sharedReader = false
        }
        #expect(result.code == 3)
        #expect(result.errors.contains { $0.hasPrefix("  vmSpaceOwnerInv: readers [") })
        held.first = nil
        held.second = nil
    }
}

/// `ostd-mm dump --audit` audits every op as `run --audit` does; on a clean run the dump is the
/// same as without it.
@Test func dumpAuditedIsTheSameDump() {
    let script = "map 0x10000000 8K rwu\nmap 0x40000000 2M rwu page=2M\nprotect 0x40001000 4K ru\nunmap 0x10000000 4K\n"
    var plain: [String] = []
    var audited: [String] = []
    var errors: [String] = []
    let plainCode = dumpScriptCommand(DumpOptions(script: "d.ostd", memory: "16M"), text: script,
                                      output: { plain.append($0) }, errors: { errors.append($0) })
    let auditedCode = dumpScriptCommand(DumpOptions(script: "d.ostd", memory: "16M", audit: true), text: script,
                                        output: { audited.append($0) }, errors: { errors.append($0) })
    #expect(plainCode == 0 && auditedCode == 0)
    #expect(errors.isEmpty)
    #expect(!audited.isEmpty && audited == plain)
}

// Random map / unmap / protect / query programs on a user page table, checked against a model.
//
// The model is what the table should translate: for every 4 KiB page of a 4 GiB window of virtual
// addresses, the physical page and the property it maps to, or nothing. It is a flat table
// indexed by page (a dictionary keyed by base-page VA, stored densely so that 1 GiB pages stay
// cheap), with per-2 MiB and per-1 GiB counts of mapped pages so that "is anything mapped in this
// range" and "first mapped page after here" cost little. Leaf levels are not modelled: the table
// may split huge pages as it likes, as long as every page translates as the model says.
//
// A program is a list of steps: map a 4 KiB frame, a 2 MiB or (rarely) a 1 GiB huge page at
// aligned addresses with `tryMap` (over a mapped slot too, where it must fail with the item
// handed back); unmap a range with `takeNext` and protect one with `protectNext` (huge pages
// covered in part are split); query and `findNext` scans; and runs of these with one cursor.
// Addresses and ranges are biased towards huge-page boundaries, and cursors are made on exactly
// the range worked on, on its enclosure, or on the whole window, so that cursors lock subtrees of
// every level. Every fragment, protected leaf, query and `findNext` result is checked on the spot.
//
// Every frame is mapped at most once and the test keeps no handle after mapping, so a mapped frame
// has exactly one reference (its leaf's) and an unmapped one is back in the allocator (or reused
// as a node or a later mapping's frame). After every step, with no cursor alive, the checks are:
// `pageWalk` on probed addresses agrees with the model; the view is well formed and holds exactly
// the model's pages; `structuralViolations()` is empty (every 8th step only while more than
// 256 MiB is mapped: it visits every frame of every leaf); reference counts agree with the model
// and `trackedMappingCounts()` (all frames while few are mapped, samples beyond); and, every 3rd
// step, the allocator's outstanding frames are the nodes plus the mapped frames (plus retired
// nodes). At the end everything is unmapped and only the root may remain.
//
// A failing program records the issue, stops, and records its trace (every step as performed,
// with addresses) beside the input and seed that `propertyCheck` prints (shrunk: the shrinker
// drops and simplifies steps while the program still fails).
//
// This file holds the two tests; the model, the program and its steps and checks are in
// `PageTablePropertyTests+<Concern>.swift`.

import Testing
import PropertyBased
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite struct PageTablePropertyTests {
    /// Random programs on a user table of its own, in one of three 4 GiB windows: at 0, across
    /// the first two root entries (510 GiB), and at the top of user space.
    @Test func randomProgramsMatchTheModel() async {
        await propertyCheck(count: 40, input: Gen.int(in: 0...Int.max).array(of: 1...50), Gen.int(in: 0...Int.max)) {
            codes, config in
            var r = SplitMix64(config, salt: SplitMix64.pageTableSalt)
            let windowBase = r.pick(PTProgram.windowBases)
            let allowGiant = r.chance(15)
            let deferred = r.chance(25)
            let machine = makeMachine(memory: 3 << 30, audit: false)
            let table = try! PageTable<UserPtConfig>(empty: machine)
            let program = PTProgram(machine: machine, table: table, windowBase: windowBase, allowGiant: allowGiant,
                                    header: "window \(Vaddr(windowBase)), 1G pages \(allowGiant ? "on" : "off"), "
                                        + "read-side section open \(deferred ? "on" : "off")")
            // With a section open, every detached node waits for its grace period.
            if deferred { table.withReadSection { _ in program.run(codes) } } else { program.run(codes) }
            program.unmapEverything()
            program.finish(expectedNodes: 1, expectedFrames: 1)
        }
    }

    /// Random programs on a user table made by a kernel table, sharing its top-level entries, in
    /// the window just below the kernel half: unmapping everything leaves only the user root, and
    /// the kernel table is untouched.
    @Test func kernelSharedUserTable() async {
        await propertyCheck(count: 12, input: Gen.int(in: 0...Int.max).array(of: 1...40), Gen.int(in: 0...Int.max)) {
            codes, config in
            var r = SplitMix64(config, salt: SplitMix64.pageTableSalt)
            let windowBase = r.pick([PTProgram.windowBases[2], PTProgram.windowBases[2], PTProgram.windowBases[0]])
            let machine = makeMachine(memory: 3 << 30, audit: false)
            let kernel = try! PageTable.newKernelPageTable(machine: machine)
            let kernelFrames = machine.outstandingFrames   // the kernel root and its 256 level-3 nodes
            let kernelRoot = rootEntries(kernel.rootPaddr, machine)
            let user = try! kernel.createUserPageTable()
            #expect(Array(rootEntries(user.rootPaddr, machine)[256...]) == Array(kernelRoot[256...]))
            let program = PTProgram(machine: machine, table: user, windowBase: windowBase, allowGiant: false,
                                    header: "kernel-shared user table, window \(Vaddr(windowBase))",
                                    baselineFrames: kernelFrames)
            program.run(codes)
            program.unmapEverything()
            program.finish(expectedNodes: 1, expectedFrames: kernelFrames + 1)
            guard program.failures == 0 else { return }
            #expect(user.nodes().count == 1)
            // The kernel table is untouched: the same root entries, every shared level-3 node
            // still empty with its one reference, no violation. (`kernel.nodes()` and `view()`
            // walk 257 nodes: too slow in debug builds to run for every program.)
            #expect(rootEntries(kernel.rootPaddr, machine) == kernelRoot, "the kernel root changed")
            let zeroPage = [UInt8](repeating: 0, count: pageSize)
            for entry in kernelRoot[256...] {
                let node = Paddr(entry & PageTableEntry.childMask)
                #expect(memcmp(machine.pointer(to: node), zeroPage, pageSize) == 0, "kernel node \(node) has entries")
                #expect(machine.metaSlot(of: node).referenceCount == 1 && machine.metaSlot(of: node).usage == .pageTable,
                        "kernel node \(node): \(machine.metaSlot(of: node).status)")
            }
            #expect(kernel.structuralViolations() == [])
            #expect(Array(rootEntries(user.rootPaddr, machine)[256...]) == Array(kernelRoot[256...]),
                    "the user root's shared kernel entries changed")
            #expect(Array(rootEntries(user.rootPaddr, machine)[..<256]) == Array(repeating: 0, count: 256),
                    "the user root is not empty")
        }
    }

    /// The 512 raw entries of the root node at `paddr`.
    func rootEntries(_ paddr: Paddr, _ machine: Machine) -> [UInt64] {
        let entries = machine.pointer(to: paddr).assumingMemoryBound(to: UInt64.self)
        return (0..<512).map { entries[$0] }
    }
}

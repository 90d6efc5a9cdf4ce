// The helpers of the cursor concurrency tests: address constants, a fresh machine with an empty
// user table, the checks every test makes once its threads are done (failures, deadlock, nodes
// left locked, only the root left), mapping and unmapping shortcuts, and the cursor pairs the
// mutual-exclusion and parallelism tests take as arguments.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

let kib4: UInt64 = 0x1000
let mib2: UInt64 = 1 << 21
let gib1: UInt64 = 1 << 30
let gib512: UInt64 = 1 << 39
/// The end of the user half, exclusive.
let userEnd: UInt64 = 1 << 47

/// `count` 4 KiB pages from `start`.
func pages(_ start: UInt64, _ count: Int) -> Range<Vaddr> {
    Vaddr(start)..<Vaddr(start + UInt64(count) * kib4)
}

/// A fresh machine (16 MiB and one CPU unless asked) and an empty user table on it: the setup of
/// every test here.
func machineWithEmptyTable(memory: Int = 16 << 20, cpus: Int = 1) throws
    -> (machine: Machine, table: PageTable<UserPtConfig>) {
    let machine = makeMachine(memory: memory, cpus: cpus)
    return (machine, try PageTable<UserPtConfig>(empty: machine))
}

/// What every test checks once its threads are done: the workers' failures are reported, every
/// thread finished (else `deadlock`), and no node was left locked (`note` ends that message).
func requireThreadsDone(_ finished: Bool, _ failures: Failures, _ table: PageTable<UserPtConfig>,
                                deadlock: Comment, note: String = "",
                                sourceLocation: SourceLocation = #_sourceLocation) throws {
    failures.report(sourceLocation: sourceLocation)
    try #require(finished, deadlock, sourceLocation: sourceLocation)
    table.machine.reclaimRetired()   // nodes still in their grace period
    try #require(lockedNodes(table) == [], "nodes left locked with no cursor alive\(note)",
                 sourceLocation: sourceLocation)
}

/// The table is sound and back to its root, and the root is the machine's only outstanding frame.
func expectOnlyTheRoot(_ table: PageTable<UserPtConfig>, _ machine: Machine,
                               sourceLocation: SourceLocation = #_sourceLocation) {
    machine.reclaimRetired()   // nodes still in their grace period
    #expect(table.structuralViolations() == [], sourceLocation: sourceLocation)
    #expect(table.nodes().count == 1, sourceLocation: sourceLocation)
    #expect(machine.outstandingFrames == 1, sourceLocation: sourceLocation)
}

/// The nodes of `table` whose lock is taken, walking without locks: at a quiescent point, a
/// lock some cursor failed to release (the next cursor there would spin forever).
func lockedNodes<C>(_ table: PageTable<C>) -> [Paddr] {
    table.nodes().map(\.paddr).filter { NodeRef($0, table.context).isLocked }
}

/// Drops a fragment, returning the number of leaves it held.
func leafCount<C>(_ frag: consuming PageTableFrag<C>) -> Int {
    switch consume frag {
    case .mapped: return 1
    case .strayPageTable(_, _, _, let numFrames): return numFrames
    }
}

/// Takes everything from the cursor's position up to `end`; returns the number of leaves taken.
func takeAll(_ cursor: inout CursorMut<UserPtConfig>, upTo end: Vaddr) -> Int {
    var taken = 0
    while cursor.virtAddr < end {
        guard let frag = cursor.takeNext(end - cursor.virtAddr) else { break }
        taken += leafCount(frag)
    }
    return taken
}

/// Maps a fresh tracked frame at `va`; returns its physical address.
@discardableResult
func mapFresh(_ table: PageTable<UserPtConfig>, _ va: Vaddr) throws -> Paddr {
    let frame = try FrameAllocOptions().zeroed(false).allocFrame(in: table.machine)
    let paddr = frame.paddr
    var cursor = try table.cursorMut(va..<(va + pageSize))
    cursor.map(MappedItem(frame: frame, property: .user(.rw)))
    _ = consume cursor
    return paddr
}

/// Unmaps the whole user half; returns the number of leaves taken.
func unmapEverything(_ table: PageTable<UserPtConfig>) throws -> Int {
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

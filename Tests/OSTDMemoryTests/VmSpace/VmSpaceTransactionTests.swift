// `VmSpace.CursorMut.tryUnmap` and `tryProtect`: transactions over a range whose ends fall inside
// huge pages. Without the page-table nodes their splits need they throw and change nothing (no
// mapping, no frame, no node); with them they do what `unmap` / a `protectNext` loop does.

@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost
import Testing

struct VmSpaceTransactionTests {
    /// A space with one tracked 2 MiB page at `base`, and every other frame of the machine held
    /// in `hoard` (so that no node can be allocated).
    func hugePageWithNoFreeFrames() throws -> (Machine, VmSpace, [Paddr]) {
        let machine = makeMachine(memory: 8 << 20)
        let space = try VmSpace(machine: machine)
        var cursor = try space.cursorMut(base..<(base + 2 << 20))
        cursor.map(MappedItem(hugePage: try FrameAllocOptions().allocSegment(512, in: machine), property: .user(.rw)))
        _ = consume cursor
        var hoard: [Paddr] = []
        while let paddr = try? FrameAllocOptions().zeroed(false).allocFrame(in: machine).intoRaw() { hoard.append(paddr) }
        #expect(machine.freeFrames == 0)
        return (machine, space, hoard)
    }

    func release(_ hoard: [Paddr], _ machine: Machine) {
        // SAFETY: each address of `hoard` comes from one `intoRaw`, restored once here.
        for paddr in hoard { _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine) }
    }

    @Test func tryUnmapInsideAHugePageWithoutMemoryChangesNothing() throws {
        let (machine, space, hoard) = try hugePageWithNoFreeFrames()
        let before = space.pageTable.view()
        var cursor = try space.cursorMut((base + 4096)..<(base + 8192))
        #expect(throws: OSTDError.outOfMemory(frames: 1)) { try cursor.tryUnmap(4096) }
        _ = consume cursor
        #expect(space.pageTable.view().mappings == before.mappings)
        #expect(machine.freeFrames == 0)
        release(hoard, machine)
        #expect(space.pageTable.structuralViolations().isEmpty)
    }

    @Test func tryProtectAcrossTwoSplitLevelsCountsBothNodes() throws {
        let (machine, space, hoard) = try hugePageWithNoFreeFrames()
        // Both ends inside the 2 MiB page: one split of it serves both ends.
        var cursor = try space.cursorMut((base + 4096)..<(base + 3 * 4096))
        #expect(throws: OSTDError.outOfMemory(frames: 1)) {
            try cursor.tryProtect(2 * 4096) { $0.flags.remove(.w) }
        }
        _ = consume cursor
        #expect(space.pageTable.view().mappings.map(\.property.flags) == [.rw])
        release(hoard, machine)
    }

    @Test func tryUnmapWithMemorySplitsAndUnmaps() throws {
        let (machine, space, hoard) = try hugePageWithNoFreeFrames()
        release(hoard, machine)
        let free = machine.freeFrames
        var cursor = try space.cursorMut((base + 4096)..<(base + 8192))
        #expect(try cursor.tryUnmap(4096) == 1)
        _ = consume cursor
        let view = space.pageTable.view()
        #expect(view.mappings.count == 511)
        #expect(view.mapping(covering: base + 4096) == nil)
        // One node for the split; the unmapped frame came back.
        #expect(machine.freeFrames == free - 1 + 1)
        #expect(space.pageTable.structuralViolations().isEmpty)
    }

    @Test func tryProtectWithMemoryProtectsAndFlushes() throws {
        let machine = makeMachine()
        let space = try VmSpace(machine: machine)
        var cursor = try space.cursorMut(base..<(base + 2 << 20))
        cursor.map(MappedItem(hugePage: try FrameAllocOptions().allocSegment(512, in: machine), property: .user(.rw)))
        _ = consume cursor
        space.activate(on: 0)
        var protect = try space.cursorMut(base..<(base + 4096))
        #expect(try protect.tryProtect(4096) { $0.flags.remove(.w) } == 1)
        _ = consume protect
        #expect(space.pageTable.view().mapping(covering: base)?.property.flags == .r)
        #expect(space.pageTable.view().mapping(covering: base + 4096)?.property.flags == .rw)
        #expect(throws: OSTDError.pageFault(address: base, copied: 0)) {
            try space.withWriter(at: base, count: 1) { writer in try writer.writeVal(UInt8(1)) }
        }
    }
}

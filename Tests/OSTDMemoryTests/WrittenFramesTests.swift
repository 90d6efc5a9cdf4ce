// What frames cost the host: a frame is zero-filled on allocation only when its bytes may be
// non-zero (`MetaSlot.markWritten`), so a rolled-back map leaves nothing to zero while a written
// frame is zeroed when reused; boot writes a bounded number of slots whatever the memory size;
// an image reads and writes in proportion to what the machine used. Host work is counted
// structurally (slots with the bit, pages the host backed, bytes handed to a sink), never timed.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDHost
import OSTDScript

/// A runner of `memory` bytes that has run `text`.
private func run(_ text: String, memory: Int) throws -> ScriptRunner {
    let runner = try ScriptRunner(memory: memory)
    runner.run(try ScriptParser.parse(text, file: "test.ostd"))
    return runner
}

/// The pages of `machine`'s memory the host has backed.
private func residentPages(_ machine: Machine) -> Int {
    var pages = 0
    machine.forEachResidentRun { run in pages += (run.upperBound - run.lowerBound) / pageSize }
    return pages
}

/// An image sink that keeps what it is given.
private struct RecordingSink: ImageSink {
    var pages: [Int: [UInt8]] = [:]
    mutating func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> String? {
        pages[offset] = Array(bytes)
        return nil
    }
}

@Suite struct WrittenFramesTests {
    @Test func rolledBackMapLeavesNoFrameToZero() throws {
        let runner = try run("", memory: 32 << 20)
        let before = runner.machine.writtenFrameCount
        let freeBefore = runner.machine.freeFrames
        let failed = runner.run(try #require(try ScriptParser.parse("map 0 0x4000000 rwu", file: "oom.ostd").ops.first))
        #expect(failed.error == .outOfMemory)
        #expect(runner.machine.freeFrames == freeBefore)
        // The map took every free frame before it failed; only the page-table nodes it made
        // (one per 2 MiB, and their parents) were written.
        #expect(runner.machine.writtenFrameCount - before <= (32 << 20) / (2 << 20) + 4)
        #expect(freeBefore > 7000)
        // Mapping most of memory now writes none of the frames it hands out.
        let again = runner.run(try #require(try ScriptParser.parse("map 0 0x1800000 rwu", file: "again.ostd").ops.first))
        #expect(again.ok)
        #expect(runner.machine.writtenFrameCount - before <= (32 << 20) / (2 << 20) + 4)
    }

    @Test func userWrittenFrameIsZeroedWhenReused() throws {
        let runner = try run("map 0x400000 4K rwu\nwrite 0x400ffe 0a0b", memory: 16 << 20)
        #expect(runner.opsFailed == 0)
        let paddr = try #require(runner.space.pageTable.pageWalk(Vaddr(0x400000))).paddr
        #expect(runner.machine.metaSlot(of: paddr).mayBeNonZero)
        runner.run(try ScriptParser.parse("unmap 0x400000 4K", file: "unmap.ostd"))
        runner.machine.flushCpuCaches()
        #expect(runner.machine.physicalBytes((paddr + 0xffe)..<(paddr + 0x1000)) == [0x0a, 0x0b])
        var held: [Paddr] = []
        while let frame = try? FrameAllocOptions().allocFrame(in: runner.machine) {
            if frame.paddr == paddr {
                #expect(runner.machine.physicalBytes(paddr..<(paddr + pageSize)).allSatisfy { $0 == 0 })
            }
            held.append(frame.intoRaw())
        }
        #expect(held.contains(paddr))
        // SAFETY: each address comes from `intoRaw` above, on this machine, and is restored once.
        for frame in held { _ = unsafe Frame<UntypedMeta>.fromRaw(frame, in: runner.machine) }
    }

    /// A page-table node detached because unmapping emptied it comes back to the allocator
    /// unwritten (every entry absent is every word zero), so its next allocation fills nothing;
    /// and, after every step, every allocatable frame without the written flag does hold zeros,
    /// which is what skipping the fill relies on. Pages are mapped, written and unmapped in pieces
    /// across 2 MiB and 1 GiB boundaries, so levels 1 to 3 are emptied, some at once, some at
    /// the cursor's drop, while their parents still map the other pieces.
    @Test func emptiedNodesComeBackUnwrittenAndEveryUnwrittenFrameHoldsZeros() throws {
        let runner = try run("", memory: 8 << 20)
        let written = runner.machine.writtenFrameCount
        func checkUnwrittenFramesHoldZeros(after step: String) {
            runner.machine.reclaimRetired()
            for index in 0..<runner.machine.frameCount where !runner.machine.mayHoldNonZeroBytes(frame: index) {
                let paddr = Paddr(UInt64(index) << 12)
                // SAFETY: a frame of the machine's memory, read as words while no one writes it
                // (this thread runs every operation).
                let words = unsafe runner.machine.context.pointer(to: paddr).assumingMemoryBound(to: UInt64.self)
                if (0..<(pageSize / 8)).contains(where: { unsafe words[$0] != 0 }) {
                    Issue.record("after \(step): frame \(paddr) is not marked written but holds non-zero bytes")
                    return
                }
            }
        }
        for step in [
            "map 0x3fe000 16K rwu", "write 0x3ffff0 0102030405060708090a0b0c0d0e0f10111213",
            "map 0x3fffe000 16K rwu", "write 0x3ffffff0 0102030405060708090a0b0c0d0e0f10111213",
            "unmap 0x3fe000 8K", "unmap 0x400000 8K", "unmap 0x3fffe000 8K", "unmap 0x40000000 8K",
        ] {
            #expect(runner.run(try #require(try ScriptParser.parse(step, file: "step.ostd").ops.first)).ok)
            checkUnwrittenFramesHoldZeros(after: step)
        }
        runner.machine.flushCpuCaches()
        // Written: the four user frames; every node made above came back unwritten (only the
        // root, never freed, stays marked).
        #expect(runner.machine.writtenFrameCount == written + 4)
    }

    /// A write through a run the TLB remembers from an earlier write does not mark its frames
    /// again (`UserTranslation.repeatsWrite`). With such writes of a few buffers, reads of them
    /// (runs remembered for reads), and pages unmapped and mapped to fresh frames (the freed ones,
    /// reused), every frame the test has mapped holds zeros whenever its written flag is clear.
    @Test func writesThroughRememberedRunsLeaveNoWrittenFrameUnmarked() throws {
        let machine = makeMachine(memory: 8 << 20, audit: false)
        let space = try VmSpace(machine: machine)
        space.activate(on: 0)
        let base = Vaddr(0x40_0000)
        var frames: Set<Paddr> = []
        func mapFresh(_ va: Vaddr) throws {
            let frame = try FrameAllocOptions().allocFrame(in: machine)
            frames.insert(frame.paddr)
            try space.mapPage(frame, at: va, .user([.rw, .accessed, .dirty]))
        }
        for page in 0..<64 { try mapFresh(base + page * pageSize) }
        var random = SplitMix64(7)
        let buffers = (0..<4).map { _ in (base + random.below(40 * pageSize), 1 + random.below(20 * pageSize)) }
        var remembered = 0
        for step in 0..<300 {
            let (start, count) = random.pick(buffers)
            switch random.below(10) {
            case 0..<6:
                let bytes = (0..<count).map { _ in UInt8(1 + random.below(255)) }
                let before = machine.tlbStatistics(cpu: 0).misses
                let written = try bytes.withUnsafeBytes { raw in
                    try space.withWriter(at: start, count: count) { writer in
                        // SAFETY: `bytes` outlives the reader, which ends with the closure.
                        var reader = unsafe VmReader<Infallible>(raw)
                        return try writer.writeFallible(&reader)
                    }
                }
                #expect(written == count)
                if machine.tlbStatistics(cpu: 0).misses == before { remembered += 1 }
            case 6..<8:
                var bytes = [UInt8](repeating: 0, count: count)
                let read = try bytes.withUnsafeMutableBytes { raw in
                    try space.withReader(at: start, count: count) { reader in
                        // SAFETY: `bytes` outlives the writer, which ends with the closure.
                        var writer = unsafe VmWriter<Infallible>(raw)
                        return try reader.readFallible(&writer)
                    }
                }
                #expect(read == count)
            default:
                let page = base + random.below(64) * pageSize
                var cursor = try space.cursorMut(page..<(page + pageSize))
                cursor.unmap(pageSize)
                _ = consume cursor
                try mapFresh(page)
            }
            for paddr in frames where !machine.mayHoldNonZeroBytes(frame: Int(paddr.rawValue >> 12)) {
                // SAFETY: a frame of the machine's memory, read while no one writes it.
                let words = unsafe machine.context.pointer(to: paddr).assumingMemoryBound(to: UInt64.self)
                if (0..<(pageSize / 8)).contains(where: { unsafe words[$0] != 0 }) {
                    Issue.record("step \(step): frame \(paddr) is not marked written but holds non-zero bytes")
                    return
                }
            }
        }
        // Many writes took no TLB miss, so they went through remembered runs.
        #expect(remembered > 50, "\(remembered)")
    }

    @Test func kernelWrittenFrameIsZeroedWhenReused() throws {
        let machine = makeMachine()
        let frame = try FrameAllocOptions().allocFrame(in: machine)
        let paddr = frame.paddr
        let before = machine.writtenFrameCount
        try frame.writeOnce(at: 8, UInt64(0x1122_3344))
        #expect(machine.writtenFrameCount == before + 1)
        _ = consume frame
        let dirty = try FrameAllocOptions().zeroed(false).allocFrame(in: machine)
        #expect(dirty.paddr == paddr)
        #expect(try dirty.readOnce(at: 8, as: UInt64.self) == 0x1122_3344)
        _ = consume dirty
        let clean = try FrameAllocOptions().allocFrame(in: machine)
        #expect(clean.paddr == paddr)
        #expect(try clean.readOnce(at: 8, as: UInt64.self) == 0)
        #expect(machine.writtenFrameCount == before)
    }

    @Test func reservedFramesReadAsReservedWithoutBootWritingThem() throws {
        let machine = makeMachine()
        let meta = machine.metadataRange.lowerBound + 3 * pageSize
        #expect(machine.metaSlot(of: meta).usage == .meta)
        #expect(machine.metaSlot(of: Paddr(0)).usage == .reserved)
        #expect(throws: GetFrameError.self) { _ = try Frame.fromUnused(meta + pageSize, meta: UntypedMeta(), in: machine) }
        #expect(machine.metaSlot(of: meta + pageSize).referenceCount == 1)
        let taken = try Frame.fromInUse(meta + 2 * pageSize, in: machine)
        #expect(taken.referenceCount == 2)
    }

    @Test(arguments: [1 << 30, 1 << 40])
    func bootBacksABoundedNumberOfPages(memory: Int) throws {
        let machine = try Machine.host(memory: memory)
        // Before the slots of the metadata frames were written lazily, a 1 TiB machine wrote
        // 4 Mi of them (65 536 pages) at boot.
        #expect(residentPages(machine) < 256)
    }

    @Test func imageOfALargeMachineCostsWhatItUsed() throws {
        let runner = try run("""
            map 0x400000 16K rwu
            write 0x400ffe 0a0b0c
            map 0x40000000 2M rwu page=2M
            """, memory: 64 << 30)
        #expect(runner.opsFailed == 0)
        var sink = RecordingSink()
        let statistics = try runner.writeImage(into: &sink).get()
        // Page-table nodes, the metadata pages with written slots, the two written frames.
        #expect(statistics.pagesExamined < 1024)
        #expect(statistics.bytesWritten == sink.pages.count * pageSize)
        #expect(sink.pages.count < 64)
        let first = try #require(runner.space.pageTable.pageWalk(Vaddr(0x400000))).paddr
        let second = try #require(runner.space.pageTable.pageWalk(Vaddr(0x401000))).paddr
        #expect(sink.pages[Int(first.rawValue)]?.suffix(2) == [0x0a, 0x0b])
        #expect(sink.pages[Int(second.rawValue)]?.prefix(1) == [0x0c])
    }
}

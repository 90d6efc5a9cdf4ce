// The 26 `io` ktests of OSTD (`ostd/src/mm/test.rs`, module `io`), ported one for one, plus a
// few checks of the same API beyond OSTD's.
//
// Infallible readers and writers cover Swift byte buffers (OSTD's `VmReader::from(&buffer[..])`),
// fallible ones are the same made fallible with `toFallible()`, and the `*_segment` tests go
// through `VmIo` on a one-frame segment. OSTD's should-panic tests `read_beyond_buffer_infallible`
// and `write_beyond_buffer_infallible` panic only because they `unwrap` an `Err(InvalidArgs)`:
// here they check the thrown `invalidArgs`. Real panics (`skip` past the end, unaligned
// once-accesses and atomics) are exit tests that check the message.
//
// `atomic_load_fallible` and `atomic_compare_exchange_fallible` are ported twice: as in OSTD
// (kernel memory made fallible), and over user memory of an active `VmSpace`.

import Testing
@testable import OSTDMemory
import OSTDHost

// MARK: - Helpers

/// Runs `body` with a kernel writer over `buffer` (OSTD `VmWriter::from(&mut buffer[..])`).
private func kernelWriter<R>(over buffer: inout [UInt8], _ body: (inout VmWriter<Infallible>) throws -> R) throws -> R {
    try buffer.withUnsafeMutableBytes { bytes in
        var writer = unsafe VmWriter<Infallible>(bytes)
        return try body(&writer)
    }
}

/// Runs `body` with a kernel reader over `buffer` (OSTD `VmReader::from(&buffer[..])`).
private func kernelReader<R>(over buffer: [UInt8], _ body: (inout VmReader<Infallible>) throws -> R) throws -> R {
    try buffer.withUnsafeBytes { bytes in
        var reader = unsafe VmReader<Infallible>(bytes)
        return try body(&reader)
    }
}

/// `kernelWriter(over:_:)` made fallible (OSTD `VmWriter::from(&mut buffer[..]).to_fallible()`).
private func fallibleKernelWriter<R>(over buffer: inout [UInt8], _ body: (inout VmWriter<Fallible>) throws -> R) throws -> R {
    try buffer.withUnsafeMutableBytes { bytes in
        var writer = unsafe VmWriter<Infallible>(bytes).toFallible()
        return try body(&writer)
    }
}

/// `kernelReader(over:_:)` made fallible (OSTD `VmReader::from(&buffer[..]).to_fallible()`).
private func fallibleKernelReader<R>(over buffer: [UInt8], _ body: (inout VmReader<Fallible>) throws -> R) throws -> R {
    try buffer.withUnsafeBytes { bytes in
        var reader = unsafe VmReader<Infallible>(bytes).toFallible()
        return try body(&reader)
    }
}

/// Runs `body` over `count` bytes of host memory aligned to 8, initialised from `initial`, and
/// returns the bytes afterwards (Swift arrays promise no alignment; once-accesses and atomics
/// need it).
private func withAlignedBytes(
    _ initial: [UInt8], _ body: (UnsafeMutableRawBufferPointer) throws -> Void
) throws -> [UInt8] {
    let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(initial.count, 1), alignment: 8)
    defer { bytes.deallocate() }
    let region = UnsafeMutableRawBufferPointer(rebasing: bytes[0..<initial.count])
    region.copyBytes(from: initial)
    try body(region)
    return Array(region)
}

/// Whether `body` threw `invalidArgs` (whatever the text).
private func throwsInvalidArgs(_ body: () throws -> Void) -> Bool {
    do {
        try body()
        return false
    } catch {
        if case .invalidArgs? = error as? OSTDError { return true }
        return false
    }
}

/// OSTD's `TestPodStruct`: a `u32` and a `u64` (with padding between them).
private struct TestPodStruct: Equatable, BitwiseCopyable {
    var a: UInt32
    var b: UInt64
}

private let userBase = Vaddr(0x40_0000)

/// A space with one zeroed frame mapped at `userBase` with `property`, active on CPU 0.
private func userSpace(_ machine: Machine, _ property: PageProperty = .user(.rw)) throws -> VmSpace {
    let space = try VmSpace(machine: machine)
    var cursor = try space.cursorMut(userBase..<(userBase + pageSize))
    cursor.map(try FrameAllocOptions().allocFrame(in: machine), property)
    _ = consume cursor
    space.activate(on: 0)
    return space
}

@Suite struct OSTDIoTests {
    // MARK: Infallible readers and writers

    // OSTD: read_write_u32_infallible
    @Test func readWriteU32Infallible() throws {
        var buffer = [UInt8](repeating: 0, count: 8)
        let val1: UInt32 = 0xDEAD_BEEF
        let val2: UInt32 = 0xFEED_C0DE
        try kernelWriter(over: &buffer) { writer in
            try writer.writeVal(val1)
            try writer.writeVal(val2)
        }
        #expect(Array(buffer[..<4]) == [0xEF, 0xBE, 0xAD, 0xDE])
        #expect(Array(buffer[4...]) == [0xDE, 0xC0, 0xED, 0xFE])

        let (read1, read2) = try kernelReader(over: buffer) { reader in
            (try reader.readVal(UInt32.self), try reader.readVal(UInt32.self))
        }
        #expect(read1 == val1)
        #expect(read2 == val2)
    }

    // OSTD: read_write_slice_infallible
    @Test func readWriteSliceInfallible() throws {
        let data: [UInt8] = [1, 2, 3, 4, 5]
        var buffer = [UInt8](repeating: 0, count: data.count)
        let written = try kernelWriter(over: &buffer) { writer in
            try kernelReader(over: data) { reader in writer.write(&reader) }
        }
        #expect(written == 5)
        #expect(buffer == data)

        var readBuffer = [UInt8](repeating: 0, count: 5)
        let read = try kernelReader(over: buffer) { reader in
            try kernelWriter(over: &readBuffer) { writer in reader.read(&writer) }
        }
        #expect(read == 5)
        #expect(readBuffer == data)
    }

    // OSTD: read_write_struct_infallible
    @Test func readWriteStructInfallible() throws {
        var buffer = [UInt8](repeating: 0, count: MemoryLayout<TestPodStruct>.size)
        let testStruct = TestPodStruct(a: 0x1234_5678, b: 0xABCD_EF01_2345_6789)
        try kernelWriter(over: &buffer) { writer in try writer.writeVal(testStruct) }
        let readStruct = try kernelReader(over: buffer) { reader in try reader.readVal(TestPodStruct.self) }
        #expect(readStruct == testStruct)
    }

    // OSTD: read_beyond_buffer_infallible (should_panic in OSTD: it unwraps `Err(InvalidArgs)`)
    @Test func readBeyondBufferInfallible() throws {
        let buffer: [UInt8] = [1, 2, 3]
        let (refused, remain) = try kernelReader(over: buffer) { reader in
            (throwsInvalidArgs { _ = try reader.readVal(UInt32.self) }, reader.remain)
        }
        #expect(refused)
        #expect(remain == 3)
    }

    // OSTD: write_beyond_buffer_infallible (should_panic in OSTD: it unwraps `Err(InvalidArgs)`)
    @Test func writeBeyondBufferInfallible() throws {
        var buffer = [UInt8](repeating: 0, count: 3)
        let (refused, avail) = try kernelWriter(over: &buffer) { writer in
            (throwsInvalidArgs { try writer.writeVal(UInt32(0xDEAD_BEEF)) }, writer.avail)
        }
        #expect(refused)
        #expect(avail == 3)
        #expect(buffer == [0, 0, 0])
    }

    // OSTD: fill_infallible
    @Test func fillInfallible() throws {
        var buffer = [UInt8](repeating: 0x7F, count: 8)
        let (filled, avail) = try kernelWriter(over: &buffer) { writer in
            let filled = writer.fillZeros(10)
            return (filled, writer.avail)
        }
        #expect(filled == 8)
        #expect(avail == 0)
        #expect(buffer == [UInt8](repeating: 0, count: 8))
    }

    // OSTD: skip_read_infallible
    @Test func skipReadInfallible() throws {
        let data: [UInt8] = [10, 20, 30, 40, 50]
        var readBuffer = [UInt8](repeating: 0, count: 3)
        try kernelReader(over: data) { reader in
            reader.skip(2)
            _ = try kernelWriter(over: &readBuffer) { writer in reader.read(&writer) }
        }
        #expect(readBuffer == [30, 40, 50])
    }

    // OSTD: skip_write_infallible
    @Test func skipWriteInfallible() throws {
        var buffer = [UInt8](repeating: 0, count: 5)
        let data: [UInt8] = [100, 101, 102]
        try kernelWriter(over: &buffer) { writer in
            writer.skip(2)
            _ = try kernelReader(over: data) { reader in writer.write(&reader) }
        }
        #expect(buffer == [0, 0, 100, 101, 102])
    }

    // OSTD: limit_read_infallible
    @Test func limitReadInfallible() throws {
        let data: [UInt8] = [1, 2, 3, 4, 5]
        var readBuffer = [UInt8](repeating: 0, count: 3)
        var extraBuffer: [UInt8] = [0]
        let (remain, extraRead) = try kernelReader(over: data) { reader in
            reader.limit(3)
            let remain = reader.remain
            _ = try kernelWriter(over: &readBuffer) { writer in reader.read(&writer) }
            // No more data can be read.
            let extra = try kernelWriter(over: &extraBuffer) { writer in reader.read(&writer) }
            return (remain, extra)
        }
        #expect(remain == 3)
        #expect(readBuffer == [1, 2, 3])
        #expect(extraRead == 0)
        #expect(extraBuffer == [0])
    }

    // OSTD: limit_write_infallible
    @Test func limitWriteInfallible() throws {
        var buffer = [UInt8](repeating: 0, count: 5)
        let (avail, refusals) = try kernelWriter(over: &buffer) { writer in
            writer.limit(3)
            let avail = writer.avail
            // Writes 10, 20, 30, 40; only the first three fit.
            var refusals = 0
            for value: UInt8 in [10, 20, 30, 40] where throwsInvalidArgs({ try writer.writeVal(value) }) {
                refusals += 1
            }
            return (avail, refusals)
        }
        #expect(avail == 3)
        #expect(refusals == 1)
        #expect(buffer == [10, 20, 30, 0, 0])
    }

    // OSTD: read_write_slice_vmio_infallible
    @Test func readWriteSliceVmioInfallible() throws {
        let data: [UInt8] = [100, 101, 102, 103, 104]
        var buffer = [UInt8](repeating: 0, count: 5)
        _ = try kernelWriter(over: &buffer) { writer in
            try kernelReader(over: data) { reader in writer.write(&reader) }
        }
        #expect(buffer == data)

        var readData = [UInt8](repeating: 0, count: 5)
        _ = try kernelReader(over: buffer) { reader in
            try kernelWriter(over: &readData) { writer in reader.read(&writer) }
        }
        #expect(readData == data)
    }

    // OSTD: read_write_once_infallible
    @Test func readWriteOnceInfallible() throws {
        let val: UInt64 = 0x1122_3344_5566_7788
        var readVal: UInt64 = 0
        let bytes = try withAlignedBytes([UInt8](repeating: 0, count: 8)) { bytes in
            var writer = unsafe VmWriter<Infallible>(bytes)
            try writer.writeOnce(val)
            let avail = writer.avail
            #expect(avail == 0)
            var reader = unsafe VmReader<Infallible>(UnsafeRawBufferPointer(bytes))
            readVal = try reader.readOnce(UInt64.self)
            let remain = reader.remain
            #expect(remain == 0)
        }
        #expect(readVal == val)
        #expect(bytes == [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11])
    }

    // OSTD: write_val_infallible
    @Test func writeValInfallible() throws {
        var buffer = [UInt8](repeating: 0, count: 12)
        try kernelWriter(over: &buffer) { writer in
            for value: UInt32 in [1, 2, 3] { try writer.writeVal(value) }
        }
        #expect(buffer == [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0])
    }

    // MARK: Fallible readers and writers over kernel memory

    // OSTD: fallible_read_write
    @Test func fallibleReadWrite() throws {
        var buffer = [UInt8](repeating: 0, count: 8)
        let val: UInt64 = 0xAABB_CCDD_EEFF_0011
        let hadAvail = try fallibleKernelWriter(over: &buffer) { fallible in
            let hadAvail = fallible.hasAvail
            try fallible.writeVal(val)
            let hasAvailAfter = fallible.hasAvail
            #expect(!hasAvailAfter)
            return hadAvail
        }
        #expect(hadAvail)

        let (hadRemain, readVal) = try fallibleKernelReader(over: buffer) { fallible in
            let hadRemain = fallible.hasRemain
            return (hadRemain, try fallible.readVal(UInt64.self))
        }
        #expect(hadRemain)
        #expect(readVal == val)
    }

    // OSTD: partial_read_fallible
    @Test func partialReadFallible() throws {
        let data: [UInt8] = [10, 20, 30, 40, 50]
        var writerBuffer = [UInt8](repeating: 0, count: 5)
        let result = try fallibleKernelReader(over: data) { fallibleReader in
            fallibleReader.limit(3)
            return try fallibleKernelWriter(over: &writerBuffer) { fallibleWriter in
                // Reads 5 bytes' worth into a reader limited to 3.
                return outcome { () throws(OSTDError) in try fallibleReader.readFallible(&fallibleWriter) }
            }
        }
        #expect(result == .success(3))
        #expect(Array(writerBuffer[..<3]) == [10, 20, 30])
    }

    // OSTD: partial_write_fallible
    @Test func partialWriteFallible() throws {
        var buffer = [UInt8](repeating: 0, count: 5)
        let data: [UInt8] = [10, 20, 30, 40, 50]
        let result = try fallibleKernelWriter(over: &buffer) { fallibleWriter in
            fallibleWriter.limit(3)
            return try kernelReader(over: data) { reader in
                outcome { () throws(OSTDError) in try fallibleWriter.writeFallible(&reader) }
            }
        }
        #expect(result == .success(3))
        #expect(buffer == [10, 20, 30, 0, 0])
    }

    // OSTD: read_write_val_fallible
    @Test func readWriteValFallible() throws {
        var buffer = [UInt8](repeating: 0, count: 8)
        let val: UInt64 = 0xAABB_CCDD_EEFF_0011
        try fallibleKernelWriter(over: &buffer) { fallible in
            try fallible.writeVal(val)
        }
        let readVal = try fallibleKernelReader(over: buffer) { fallible in
            return try fallible.readVal(UInt64.self)
        }
        #expect(readVal == val)
    }

    // OSTD: atomic_load_fallible
    @Test func atomicLoadFallible() throws {
        var loads: [UInt32] = []
        _ = try withAlignedBytes([1, 1, 1, 1, 2, 2, 2, 2]) { bytes in
            var reader = unsafe VmReader<Infallible>(UnsafeRawBufferPointer(bytes)).toFallible()
            loads.append(try reader.atomicLoad())
            let remain = reader.remain
            #expect(remain == 8, "atomicLoad does not move the cursor")
            reader.skip(4)
            loads.append(try reader.atomicLoad())
        }
        #expect(loads == [0x0101_0101, 0x0202_0202])
    }

    // OSTD: atomic_load_fallible, over user memory
    @Test func atomicLoadFallibleUserSpace() throws {
        let machine = makeMachine()
        let space = try userSpace(machine)
        try space.withWriter(at: userBase, count: 8) { writer in
            try writer.writeVal(UInt32(0x0101_0101))
            try writer.writeVal(UInt32(0x0202_0202))
        }
        var reader = try space.createReader(userBase, 8)
        let first = try reader.atomicLoad()
        let cursor = reader.cursor
        reader.skip(4)
        let second = try reader.atomicLoad()
        #expect(first == 0x0101_0101)
        #expect(cursor == userBase.rawValue)
        #expect(second == 0x0202_0202)

        // An unmapped page faults, with nothing transferred.
        let unmapped = try space.createReader(userBase + pageSize, 4)
        let fault = outcome { () throws(OSTDError) in try unmapped.atomicLoad() }
        #expect(fault == .failure(.pageFault(address: userBase + pageSize, copied: 0)))
    }

    // OSTD: atomic_compare_exchange_fallible
    @Test func atomicCompareExchangeFallible() throws {
        let machine = makeMachine()
        let segment = try FrameAllocOptions().zeroed(true).allocSegment(1, in: machine)

        func cmpxchg(_ expected: UInt32, _ new: UInt32) throws -> (UInt32, Bool) {
            let reader = segment.reader().toFallible()
            let writer = segment.writer().toFallible()
            let (previous, exchanged) = try writer.atomicCompareExchange(reader, old: expected, new: new)
            return (previous, exchanged)
        }

        // Initially 0, expect 0: succeeds and sets 100.
        var (val, ok) = try cmpxchg(0, 100)
        #expect(val == 0 && ok)
        // Now 100, expect 100: succeeds and sets 200.
        (val, ok) = try cmpxchg(100, 200)
        #expect(val == 100 && ok)
        // Now 200, but expect 300: fails, memory stays 200.
        (val, ok) = try cmpxchg(300, 400)
        #expect(val == 200 && !ok)
        // Still 200, expect 200: succeeds and sets 300.
        (val, ok) = try cmpxchg(200, 300)
        #expect(val == 200 && ok)
        // Now 300, expect 200: fails, memory stays 300.
        (val, ok) = try cmpxchg(200, 400)
        #expect(val == 300 && !ok)

        // Final check with a raw reader.
        var reader = segment.reader().toFallible()
        let loaded = try reader.atomicLoad()
        let read = try reader.readVal(UInt32.self)
        #expect(loaded == 300)
        #expect(read == 300)
    }

    // OSTD: atomic_compare_exchange_fallible, over user memory
    @Test func atomicCompareExchangeFallibleUserSpace() throws {
        let machine = makeMachine()
        let space = try userSpace(machine)

        // A writer excludes every other handle over its bytes, so the reader the exchange names
        // (at the same address) gives its view back first: it is only an address here.
        func cmpxchg(_ expected: UInt32, _ new: UInt32) throws -> (UInt32, Bool) {
            var reader = try space.createReader(userBase, 4)
            space.disposeReader(&reader)
            let writer = try space.createWriter(userBase, 4)
            let (previous, exchanged) = try writer.atomicCompareExchange(reader, old: expected, new: new)
            return (previous, exchanged)
        }

        var (val, ok) = try cmpxchg(0, 100)
        #expect(val == 0 && ok)
        (val, ok) = try cmpxchg(100, 200)
        #expect(val == 100 && ok)
        (val, ok) = try cmpxchg(300, 400)
        #expect(val == 200 && !ok)
        (val, ok) = try cmpxchg(200, 300)
        #expect(val == 200 && ok)
        (val, ok) = try cmpxchg(200, 400)
        #expect(val == 300 && !ok)

        let (loaded, read) = try space.withReader(at: userBase, count: 4) { reader in
            (try reader.atomicLoad(), try reader.readVal(UInt32.self))
        }
        #expect(loaded == 300)
        #expect(read == 300)
    }

    // Beyond OSTD: a compare-exchange needs write access; a read-only user page faults and keeps
    // its value.
    @Test func atomicCompareExchangeOnReadOnlyUserPageFaults() throws {
        let machine = makeMachine()
        let space = try userSpace(machine, .user(.r))
        var reader = try space.createReader(userBase, 4)
        let loaded = try reader.atomicLoad()
        space.disposeReader(&reader)
        let writer = try space.createWriter(userBase, 4)
        let result = outcome { () throws(OSTDError) in try writer.atomicCompareExchange(reader, old: 0, new: 7) }
        #expect(loaded == 0)
        #expect(result.map { $0.previous } == .failure(.pageFault(address: userBase, copied: 0)))
        _ = consume writer
        let after = try space.withReader(at: userBase, count: 4) { reader in try reader.readVal(UInt32.self) }
        #expect(after == 0)
    }

    // OSTD: fill_zeros_fallible
    @Test func fillZerosFallible() throws {
        var buffer = [UInt8](repeating: 1, count: 8)
        let filled = try fallibleKernelWriter(over: &buffer) { fallible in
            return try fallible.fillZeros(8)
        }
        #expect(filled == 8)
        #expect(buffer == [UInt8](repeating: 0, count: 8))
    }

    // OSTD: invalid_args_read_write_fallible
    @Test func invalidArgsReadWriteFallible() throws {
        var buffer = [UInt8](repeating: 0, count: 3)
        let writeRefused = try fallibleKernelWriter(over: &buffer) { fallible in
            return throwsInvalidArgs { try fallible.writeVal(UInt32(0xDEAD_BEEF)) }
        }
        #expect(writeRefused)
        #expect(buffer == [0, 0, 0])

        let readRefused = try fallibleKernelReader(over: buffer) { fallible in
            return throwsInvalidArgs { _ = try fallible.readVal(UInt32.self) }
        }
        #expect(readRefused)
    }

    // OSTD: invalid_read_write_infallible
    @Test func invalidReadWriteInfallible() throws {
        var buffer = [UInt8](repeating: 0, count: 3)
        let writeRefused = try kernelWriter(over: &buffer) { writer in
            throwsInvalidArgs { try writer.writeVal(UInt32(0xDEAD_BEEF)) }
        }
        #expect(writeRefused)
        let readRefused = try kernelReader(over: buffer) { reader in
            throwsInvalidArgs { _ = try reader.readVal(UInt32.self) }
        }
        #expect(readRefused)
    }

    // MARK: VmIo on segments

    // OSTD: fill_zeros_segment
    @Test func fillZerosSegment() throws {
        let machine = makeMachine()
        var buffer = [UInt8](repeating: 0, count: 5)
        let segment = try FrameAllocOptions().allocSegment(1, in: machine)
        try segment.writeSlice(at: 0, [UInt8]([1, 2, 3, 4, 5]))
        try segment.fillZeros(at: 1, count: 3)
        try buffer.withUnsafeMutableBytes { bytes in try segment.readBytes(at: 0, into: bytes) }
        #expect(buffer == [1, 0, 0, 0, 5])
        // A fill at an offset past the end (OSTD: `Err((InvalidArgs, 0))`).
        #expect(throwsInvalidArgs { try segment.fillZeros(at: 8192, count: 3) })
    }

    // Deliberate difference from OSTD: a fill that starts inside the segment but does not fit is
    // refused whole (OSTD fills up to the end, then reports `(InvalidArgs, filled)`).
    @Test func fillZerosSegmentRefusesAFillThatDoesNotFit() throws {
        let machine = makeMachine()
        let segment = try FrameAllocOptions().allocSegment(1, in: machine)
        let pattern = [UInt8](repeating: 0xA5, count: 16)
        try segment.writeSlice(at: pageSize - 16, pattern)
        #expect(throwsInvalidArgs { try segment.fillZeros(at: pageSize - 8, count: 10) })
        var tail = [UInt8](repeating: 0, count: 16)
        try segment.readSlice(at: pageSize - 16, into: &tail)
        #expect(tail == pattern, "a refused fill wrote nothing")
        // Exactly to the end is fine.
        try segment.fillZeros(at: pageSize - 8, count: 8)
        try segment.readSlice(at: pageSize - 16, into: &tail)
        #expect(tail == [UInt8](repeating: 0xA5, count: 8) + [UInt8](repeating: 0, count: 8))
        // An overflowing end.
        #expect(throws: OSTDError.overflow) { try segment.fillZeros(at: 8, count: Int.max) }
    }

    // OSTD: write_slice_segment
    @Test func writeSliceSegment() throws {
        let machine = makeMachine()
        var buffer = [UInt8](repeating: 0, count: 12)
        let segment = try FrameAllocOptions().allocSegment(1, in: machine)
        let data: [UInt8] = [1, 2, 3, 4, 5]
        try segment.writeSlice(at: 0, data)
        try buffer.withUnsafeMutableBytes { bytes in try segment.readBytes(at: 0, into: bytes) }
        #expect(Array(buffer[..<5]) == data)
    }

    // OSTD: read_val_segment
    @Test func readValSegment() throws {
        let machine = makeMachine()
        let segment = try FrameAllocOptions().allocSegment(1, in: machine)
        try segment.writeSlice(at: 0, [UInt32]([1, 2, 3]))
        let val = try segment.readVal(at: 0, as: UInt32.self)
        #expect(val == 1)
    }

    // OSTD: read_slice_segment
    @Test func readSliceSegment() throws {
        let machine = makeMachine()
        let segment = try FrameAllocOptions().allocSegment(1, in: machine)
        try segment.writeSlice(at: 0, [UInt32]([1, 2, 3]))
        var readBuffer = [UInt8](repeating: 0, count: 12)
        try segment.readSlice(at: 0, into: &readBuffer)
        #expect(readBuffer == [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0])
    }

    // Beyond OSTD: the rest of `VmIo` on a segment of several frames: values and once-accesses
    // across frames, and the size checks of each method.
    @Test func vmIoOnASegmentChecksEveryAccess() throws {
        let machine = makeMachine()
        let segment = try FrameAllocOptions().allocSegment(2, in: machine)
        #expect(segment.size == 2 * pageSize)

        // A value across the frame boundary.
        try segment.writeVal(at: pageSize - 4, UInt64(0x0102_0304_0506_0708))
        #expect(try segment.readVal(at: pageSize - 4, as: UInt64.self) == 0x0102_0304_0506_0708)
        #expect(try segment.readVal(at: pageSize, as: UInt32.self) == 0x0102_0304)

        try segment.writeOnce(at: 8, UInt64(0x1122_3344_5566_7788))
        #expect(try segment.readOnce(at: 8, as: UInt64.self) == 0x1122_3344_5566_7788)
        #expect(try segment.readOnce(at: 12, as: UInt32.self) == 0x1122_3344)

        // The last bytes, then one too many.
        try segment.writeVal(at: 2 * pageSize - 4, UInt32(7))
        #expect(throwsInvalidArgs { try segment.writeVal(at: 2 * pageSize - 3, UInt32(7)) })
        #expect(throwsInvalidArgs { _ = try segment.readVal(at: 2 * pageSize - 3, as: UInt32.self) })
        #expect(throwsInvalidArgs { _ = try segment.readVal(at: 2 * pageSize + 1, as: UInt8.self) })
        #expect(throwsInvalidArgs { try segment.writeOnce(at: 2 * pageSize - 4, UInt64(1)) })

        var big = [UInt8](repeating: 0xEE, count: 9)
        #expect(throwsInvalidArgs { try segment.readSlice(at: 2 * pageSize - 8, into: &big) })
        #expect(big == [UInt8](repeating: 0xEE, count: 9), "a refused read copies nothing")
        #expect(throwsInvalidArgs { try segment.writeSlice(at: 2 * pageSize - 8, big) })
        #expect(try segment.readVal(at: 2 * pageSize - 8, as: UInt64.self) == 0x0000_0007_0000_0000)
        #expect(throws: OSTDError.overflow) { try segment.writeSlice(at: Int.max - 2, big) }

        // A reader and a writer keep the frames alive after the segment goes.
        let writer = segment.writer()
        _ = consume segment
        var fallible = writer.toFallible()
        fallible.skip(pageSize - 4)
        let value = try fallible.writeFallibleValue(UInt32(0xCAFE_F00D))
        #expect(value == 4)
    }

    // MARK: Panics

    // Beyond the ported tests: OSTD's `skip` asserts that the bytes are there.
    @Test func skipPastTheEndPanics() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let buffer: [UInt8] = [1, 2, 3]
            buffer.withUnsafeBytes { bytes in
                var reader = unsafe VmReader<Infallible>(bytes)
                reader.skip(4)
            }
        }
        #expect(stderrContains(result, "skip(4) exceeds the 3 bytes left"))
    }

    @Test func writerSkipPastTheEndPanics() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var buffer = [UInt8](repeating: 0, count: 3)
            buffer.withUnsafeMutableBytes { bytes in
                var writer = unsafe VmWriter<Infallible>(bytes).toFallible()
                writer.skip(5)
            }
        }
        #expect(stderrContains(result, "skip(5) exceeds the 3 bytes left"))
    }

    // Beyond the ported tests: OSTD's `read_once` / `write_once` panic on an unaligned cursor.
    @Test func unalignedReadOncePanics() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 8)
            bytes.initializeMemory(as: UInt8.self, repeating: 0)
            var reader = unsafe VmReader<Infallible>(UnsafeRawBufferPointer(rebasing: bytes[1...]))
            _ = try? reader.readOnce(UInt32.self)
        }
        #expect(stderrContains(result, "unaligned once-access of 4 bytes"))
    }

    @Test func unalignedWriteOncePanics() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 8)
            var writer = unsafe VmWriter<Infallible>(UnsafeMutableRawBufferPointer(rebasing: bytes[2...]))
            try? writer.writeOnce(UInt64(1))
        }
        #expect(stderrContains(result, "unaligned once-access of 8 bytes"))
    }

    // OSTD `VmIoOnce`: `skip(offset)` panics for an offset past the end.
    @Test func segmentReadOncePastTheEndPanics() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let machine = makeMachine()
            let segment = try! FrameAllocOptions().allocSegment(1, in: machine)
            _ = try? segment.readOnce(at: 8192, as: UInt32.self)
        }
        #expect(stderrContains(result, "skip(8192) exceeds the 4096 bytes left"))
    }

    // Beyond the ported tests: OSTD's `atomic_load` panics on an unaligned cursor.
    @Test func unalignedAtomicLoadPanics() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 8)
            bytes.initializeMemory(as: UInt8.self, repeating: 0)
            let reader = unsafe VmReader<Infallible>(UnsafeRawBufferPointer(rebasing: bytes[2...])).toFallible()
            _ = try? reader.atomicLoad()
        }
        #expect(stderrContains(result, "unaligned atomic load"))
    }

    // Beyond the ported tests: OSTD's `atomic_compare_exchange` asserts that the reader is at the writer's address.
    @Test func compareExchangeWithAReaderElsewherePanics() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let machine = makeMachine()
            let segment = try! FrameAllocOptions().allocSegment(1, in: machine)
            var reader = segment.reader().toFallible()
            reader.skip(4)
            let writer = segment.writer().toFallible()
            _ = try? writer.atomicCompareExchange(reader, old: 0, new: 1)
        }
        #expect(stderrContains(result, "the reader and the writer of a compare-exchange are at different addresses"))
    }
}

extension VmWriter where F == Fallible {
    /// Writes `value` and returns the bytes it took (a helper for the test above).
    fileprivate mutating func writeFallibleValue<T: BitwiseCopyable>(_ value: T) throws(OSTDError) -> Int {
        let before = avail
        try writeVal(value)
        return before - avail
    }
}

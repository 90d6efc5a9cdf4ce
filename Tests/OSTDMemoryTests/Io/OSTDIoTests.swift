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
//
// This file holds the helpers the OSTD io files share and the infallible tests; the fallible,
// segment and panic tests are in `OSTDIoTests+<Concern>.swift`.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost

// MARK: - Helpers

/// Runs `body` with a kernel writer over `buffer` (OSTD `VmWriter::from(&mut buffer[..])`).
func kernelWriter<R>(over buffer: inout [UInt8], _ body: (inout VmWriter<Infallible>) throws -> R) throws -> R {
    try buffer.withUnsafeMutableBytes { bytes in
        var writer = unsafe VmWriter<Infallible>(bytes)
        return try body(&writer)
    }
}

/// Runs `body` with a kernel reader over `buffer` (OSTD `VmReader::from(&buffer[..])`).
func kernelReader<R>(over buffer: [UInt8], _ body: (inout VmReader<Infallible>) throws -> R) throws -> R {
    try buffer.withUnsafeBytes { bytes in
        var reader = unsafe VmReader<Infallible>(bytes)
        return try body(&reader)
    }
}

/// `kernelWriter(over:_:)` made fallible (OSTD `VmWriter::from(&mut buffer[..]).to_fallible()`).
func fallibleKernelWriter<R>(over buffer: inout [UInt8], _ body: (inout VmWriter<Fallible>) throws -> R) throws -> R {
    try buffer.withUnsafeMutableBytes { bytes in
        var writer = unsafe VmWriter<Infallible>(bytes).toFallible()
        return try body(&writer)
    }
}

/// `kernelReader(over:_:)` made fallible (OSTD `VmReader::from(&buffer[..]).to_fallible()`).
func fallibleKernelReader<R>(over buffer: [UInt8], _ body: (inout VmReader<Fallible>) throws -> R) throws -> R {
    try buffer.withUnsafeBytes { bytes in
        var reader = unsafe VmReader<Infallible>(bytes).toFallible()
        return try body(&reader)
    }
}

/// Runs `body` over `count` bytes of host memory aligned to 8, initialised from `initial`, and
/// returns the bytes afterwards (Swift arrays promise no alignment; once-accesses and atomics
/// need it).
func withAlignedBytes(
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
func throwsInvalidArgs(_ body: () throws -> Void) -> Bool {
    do {
        try body()
        return false
    } catch {
        if case .invalidArgs? = error as? OSTDError { return true }
        return false
    }
}

/// OSTD's `TestPodStruct`: a `u32` and a `u64` (with padding between them).
struct TestPodStruct: Equatable, BitwiseCopyable {
    var a: UInt32
    var b: UInt64
}

let userBase = Vaddr(0x40_0000)

/// A space with one zeroed frame mapped at `userBase` with `property`, active on CPU 0.
func userSpace(_ machine: Machine, _ property: PageProperty = .user(.rw)) throws -> VmSpace {
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
}

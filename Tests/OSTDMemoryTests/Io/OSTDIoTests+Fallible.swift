// OSTD's fallible io ktests: readers and writers over kernel memory made fallible (partial reads
// and writes, values, atomic loads and compare-exchanges, fills, invalid arguments), and the
// atomic tests again over user memory of an active `VmSpace`.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

extension OSTDIoTests {
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
            // SAFETY: `bytes` outlives the reader, which is dropped in this scope.
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

        try expectCompareExchangeSequence(cmpxchg)

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

        try expectCompareExchangeSequence(cmpxchg)

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
}

/// OSTD's `atomic_compare_exchange_fallible` sequence on a `u32` that starts at 0, run through
/// `cmpxchg(expected, new)` (the previous value, and whether it exchanged); it leaves 300. The
/// kernel-memory and user-memory ports differ only in how they make the reader and the writer.
private func expectCompareExchangeSequence(_ cmpxchg: (UInt32, UInt32) throws -> (UInt32, Bool)) throws {
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
}

// The real panics of the io API, as exit tests that check the message: `skip` past the end,
// unaligned once-accesses and atomic loads, a segment once-access past the end, and a
// compare-exchange whose reader is not at the writer's address.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

extension OSTDIoTests {
    // MARK: Panics

    // Beyond the ported tests: OSTD's `skip` asserts that the bytes are there.
    @Test func skipPastTheEndPanics() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let buffer: [UInt8] = [1, 2, 3]
            buffer.withUnsafeBytes { bytes in
                // SAFETY: the buffer lives for the whole (crashing) child process.
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
                // SAFETY: the buffer lives for the whole (crashing) child process.
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
            // SAFETY: the buffer lives for the whole (crashing) child process.
            var reader = unsafe VmReader<Infallible>(UnsafeRawBufferPointer(rebasing: bytes[1...]))
            _ = try? reader.readOnce(UInt32.self)
        }
        #expect(stderrContains(result, "unaligned once-access of 4 bytes"))
    }

    @Test func unalignedWriteOncePanics() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 8)
            // SAFETY: the buffer lives for the whole (crashing) child process.
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
            // SAFETY: the buffer lives for the whole (crashing) child process.
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

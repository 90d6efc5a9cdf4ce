// OSTD's `*_segment` io ktests: `VmIo` on a segment (fills, slices, values), and beyond OSTD the
// bounds every segment access checks and the frames a reader or writer keeps alive.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

extension OSTDIoTests {
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
}

extension VmWriter where F == Fallible {
    /// Writes `value` and returns the bytes it took (a helper for the test above).
    fileprivate mutating func writeFallibleValue<T: BitwiseCopyable>(_ value: T) throws(OSTDError) -> Int {
        let before = avail
        try writeVal(value)
        return before - avail
    }
}

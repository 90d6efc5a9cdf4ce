// `VmIo`: reading and writing a memory object at an offset (OSTD `io/mod.rs`, `io/util.rs`).
//
// An object that can give a kernel reader and writer over its bytes gets the whole family:
// byte buffers, values, slices, zero fills and once-accesses, each checked against the object's
// size first. There are no short reads or writes: an access either fits and happens in full, or
// is refused with `overflow` (the end overflows) or `invalidArgs` (it does not fit) and nothing
// happens. OSTD's `fill_zeros` fills what fits and then reports the rest; here a fill that does
// not fit is refused whole, like every other access (a deliberate difference).
//
// Only untyped frames and segments conform: typed frames hold metadata-owned structures and have
// no byte access at all, which the `AnyUFrameMeta` constraint enforces at compile time. Races on
// untyped memory are allowed, as in OSTD: they may produce garbage, never undefined behaviour.

/// An object whose bytes can be read and written at an offset (OSTD `VmIo`, `VmIoFill`,
/// `VmIoOnce`).
public protocol VmIo: ~Copyable {
    /// The number of bytes.
    var size: Int { get }
    /// A reader of all the bytes; it keeps the object's memory alive.
    func reader() -> VmReader<Infallible>
    /// A writer of all the bytes; it keeps the object's memory alive.
    func writer() -> VmWriter<Infallible>
}

extension VmIo where Self: ~Copyable {
    /// Checks that `count` bytes at `offset` fit: `overflow`, then `invalidArgs`.
    func checkFits(_ offset: Int, _ count: Int) throws(OSTDError) {
        let (end, overflow) = offset.addingReportingOverflow(count)
        guard !overflow else { throw .overflow }
        guard offset >= 0, count >= 0, end <= size else {
            throw .invalidArgs("bytes \(offset) ..< \(end) are outside the object's \(size) bytes")
        }
    }

    /// Fills `writer` with the bytes starting at `offset` (OSTD `VmIo::read`).
    ///
    /// - Throws: `overflow`, `invalidArgs` (nothing copied); `pageFault` when `writer` faults.
    public func read<W: Fallibility>(at offset: Int, into writer: inout VmWriter<W>) throws(OSTDError) {
        try checkFits(offset, writer.avail)
        var source = reader()
        source.skip(offset)
        _ = try source.readFallible(&writer)
    }

    /// Writes all of `reader` at `offset` (OSTD `VmIo::write`).
    ///
    /// - Throws: `overflow`, `invalidArgs` (nothing copied); `pageFault` when `reader` faults.
    public func write<R: Fallibility>(at offset: Int, from reader: inout VmReader<R>) throws(OSTDError) {
        try checkFits(offset, reader.remain)
        var destination = writer()
        destination.skip(offset)
        _ = try reader.readFallible(&destination)
    }

    /// Copies the bytes at `offset` into `buffer` (OSTD `read_bytes`).
    public func readBytes(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(OSTDError) {
        // SAFETY: the caller's buffer is valid for this call (a raw buffer parameter is the
        // caller's promise), and the writer over it, never split or cloned, ends with the call.
        var destination = unsafe VmWriter<Infallible>(buffer)
        try read(at: offset, into: &destination)
    }

    /// Copies `bytes` to `offset` (OSTD `write_bytes`).
    public func writeBytes(at offset: Int, from bytes: UnsafeRawBufferPointer) throws(OSTDError) {
        // SAFETY: the caller's bytes are valid for this call (a raw buffer parameter is the
        // caller's promise), and the reader over them, never split or cloned, ends with the call.
        var source = unsafe VmReader<Infallible>(bytes)
        try write(at: offset, from: &source)
    }

    /// Reads a `T` at `offset` (OSTD `read_val`).
    ///
    /// - Throws: `invalidArgs` when `offset` is past the end or the value does not fit.
    public func readVal<T: BitwiseCopyable>(at offset: Int, as _: T.Type = T.self) throws(OSTDError) -> T {
        try checkFits(offset, 0)
        var source = reader()
        source.skip(offset)
        return try source.readVal(T.self)
    }

    /// Writes `value` at `offset` (OSTD `write_val`).
    public func writeVal<T: BitwiseCopyable>(at offset: Int, _ value: T) throws(OSTDError) {
        try checkFits(offset, 0)
        var destination = writer()
        destination.skip(offset)
        try destination.writeVal(value)
    }

    /// Fills `slice` with the `T`s stored at `offset` (OSTD `read_slice`).
    public func readSlice<T: BitwiseCopyable>(at offset: Int, into slice: inout [T]) throws(OSTDError) {
        // SAFETY: `bytes` is the slice's storage, valid for the closure, which `readBytes` (and
        // the writer it makes) does not outlive.
        try unsafe slice.withUnsafeMutableBytes { bytes in Result { () throws(OSTDError) in try unsafe readBytes(at: offset, into: bytes) } }.get()
    }

    /// Stores the `T`s of `slice` at `offset` (OSTD `write_slice`).
    public func writeSlice<T: BitwiseCopyable>(at offset: Int, _ slice: [T]) throws(OSTDError) {
        // SAFETY: `bytes` is the slice's storage, valid for the closure, which `writeBytes` (and
        // the reader it makes) does not outlive.
        try unsafe slice.withUnsafeBytes { bytes in Result { () throws(OSTDError) in try unsafe writeBytes(at: offset, from: bytes) } }.get()
    }

    /// Zeroes `count` bytes at `offset` (OSTD `VmIoFill::fill_zeros`).
    ///
    /// - Throws: `overflow` or `invalidArgs` when they do not fit; nothing is written then.
    public func fillZeros(at offset: Int, count: Int) throws(OSTDError) {
        try checkFits(offset, count)
        var destination = writer()
        destination.skip(offset)
        destination.fillZeros(count)
    }

    /// Reads a 1-, 2-, 4- or 8-byte integer at `offset` in one access (OSTD `VmIoOnce`).
    ///
    /// - Precondition: `offset` is inside the object ("skip … exceeds") and aligned for `T`.
    public func readOnce<T: FixedWidthInteger & BitwiseCopyable>(at offset: Int, as _: T.Type = T.self) throws(OSTDError) -> T {
        var source = reader()
        source.skip(offset)
        return try source.readOnce(T.self)
    }

    /// Writes a 1-, 2-, 4- or 8-byte integer at `offset` in one access (OSTD `VmIoOnce`).
    public func writeOnce<T: FixedWidthInteger & BitwiseCopyable>(at offset: Int, _ value: T) throws(OSTDError) {
        var destination = writer()
        destination.skip(offset)
        try destination.writeOnce(value)
    }
}

extension Frame: VmIo where M: AnyUFrameMeta {
    /// A reader of the frame's bytes (OSTD `Frame::reader`); it holds a reference to the frame.
    public func reader() -> VmReader<Infallible> { VmReader(window: kernelWindow(of: Segment(clone()))) }

    /// A writer of the frame's bytes (OSTD `Frame::writer`); it holds a reference to the frame.
    public func writer() -> VmWriter<Infallible> {
        slot.markWritten()
        return VmWriter(window: kernelWindow(of: Segment(clone())))
    }
}

extension Segment: VmIo where M: AnyUFrameMeta {
    /// A reader of the segment's bytes (OSTD `Segment::reader`); it holds references to them.
    public func reader() -> VmReader<Infallible> { VmReader(window: kernelWindow(of: clone())) }

    /// A writer of the segment's bytes (OSTD `Segment::writer`); it holds references to them.
    public func writer() -> VmWriter<Infallible> {
        context.markWritten(frames: start..<end)
        return VmWriter(window: kernelWindow(of: clone()))
    }
}

/// A kernel window over `segment`'s bytes (in the linear mapping) that owns its references.
func kernelWindow<M: AnyFrameMeta>(of segment: consuming Segment<M>) -> IoWindow {
    // SAFETY: the segment's frames are inside physical memory, contiguous in the linear mapping;
    // the window takes over the segment's references (`kept`), so they stay allocated while it
    // lives.
    let start = unsafe segment.context.pointer(to: segment.paddr)
    let count = segment.size
    return unsafe IoWindow(host: start, count: count, kept: segment.intoParts())
}

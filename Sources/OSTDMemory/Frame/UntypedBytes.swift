// Byte access to untyped frames and segments.
//
// Only untyped frames hold plain data that may be read and written (OSTD gives them `reader()` and
// `writer()`); typed frames hold metadata-owned structures and have no byte access at all, which
// the `AnyUFrameMeta` constraint enforces at compile time. These checked copies are the base the
// `VmReader` / `VmWriter` layer builds on. Data races on untyped memory are allowed, as in OSTD:
// they may produce garbage, never undefined behaviour at this API.

extension Frame where M: AnyUFrameMeta {
    /// Copies `buffer.count` bytes starting at byte `offset` of the frame into `buffer`.
    ///
    /// - Throws: `invalidArgs` when the range is not inside the frame; nothing is copied then.
    public func readBytes(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(OSTDError) {
        try copyOut(of: context.pointee.pointer(to: paddr), limit: pageSize, at: offset, into: buffer)
    }

    /// Copies `bytes` into the frame starting at byte `offset`.
    ///
    /// - Throws: `invalidArgs` when the range is not inside the frame; nothing is copied then.
    public func writeBytes(at offset: Int, from bytes: UnsafeRawBufferPointer) throws(OSTDError) {
        try copyIn(to: context.pointee.pointer(to: paddr), limit: pageSize, at: offset, from: bytes)
    }
}

extension Segment where M: AnyUFrameMeta {
    /// Copies `buffer.count` bytes starting at byte `offset` of the segment into `buffer`.
    ///
    /// - Throws: `invalidArgs` when the range is not inside the segment; nothing is copied then.
    public func readBytes(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(OSTDError) {
        try copyOut(of: context.pointee.pointer(to: paddr), limit: size, at: offset, into: buffer)
    }

    /// Copies `bytes` into the segment starting at byte `offset`.
    ///
    /// - Throws: `invalidArgs` when the range is not inside the segment; nothing is copied then.
    public func writeBytes(at offset: Int, from bytes: UnsafeRawBufferPointer) throws(OSTDError) {
        try copyIn(to: context.pointee.pointer(to: paddr), limit: size, at: offset, from: bytes)
    }
}

/// Copies `buffer.count` bytes from `base + offset`, after checking they lie in `0 ..< limit`.
private func copyOut(of base: UnsafeMutableRawPointer, limit: Int, at offset: Int,
                     into buffer: UnsafeMutableRawBufferPointer) throws(OSTDError) {
    try checkRange(offset, buffer.count, in: limit)
    guard let destination = buffer.baseAddress else { return }
    destination.copyMemory(from: base + offset, byteCount: buffer.count)
}

/// Copies `bytes` to `base + offset`, after checking they fit in `0 ..< limit`.
private func copyIn(to base: UnsafeMutableRawPointer, limit: Int, at offset: Int,
                    from bytes: UnsafeRawBufferPointer) throws(OSTDError) {
    try checkRange(offset, bytes.count, in: limit)
    guard let source = bytes.baseAddress else { return }
    (base + offset).copyMemory(from: source, byteCount: bytes.count)
}

/// Checks that `offset ..< offset + count` lies inside `0 ..< limit`, without overflowing.
func checkRange(_ offset: Int, _ count: Int, in limit: Int) throws(OSTDError) {
    guard offset >= 0, count >= 0, offset <= limit, count <= limit - offset else {
        throw .invalidArgs("byte range \(offset) ..< \(offset) + \(count) is outside 0 ..< \(limit)")
    }
}

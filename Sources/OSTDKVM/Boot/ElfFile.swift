// The part of an ELF64 file a loader needs: the header's entry point and the loadable segments
// (PT_LOAD), each checked to lie inside the file. Used by the VMM for the kernel image; the
// kernel has its own loader for programs (Kernel/Sources/ElfLoader.swift).

#if os(Linux)
/// A loadable segment.
public struct ElfSegment: Equatable, Sendable {
    public var virtualAddress: UInt64
    public var fileOffset: Int
    public var fileSize: Int
    public var memorySize: Int
    /// PF_X 1, PF_W 2, PF_R 4.
    public var flags: UInt32
}

/// An x86-64 ELF executable's entry point and loadable segments.
public struct ElfFile: Sendable {
    public var entry: UInt64
    public var segments: [ElfSegment]

    /// Parses `bytes`.
    ///
    /// - Throws: `guest` naming what is wrong (not ELF64, not x86-64, a segment outside the file).
    public init(_ bytes: [UInt8]) throws(KvmError) {
        func field<T: FixedWidthInteger>(_ offset: Int, _: T.Type) throws(KvmError) -> T {
            guard offset >= 0, offset + MemoryLayout<T>.size <= bytes.count else { throw .guest("ELF file truncated at \(offset)") }
            var value: T = 0
            for i in 0..<MemoryLayout<T>.size { value |= T(bytes[offset + i]) << (8 * i) }
            return value
        }
        guard bytes.count >= 64, bytes[0] == 0x7f, bytes[1] == 0x45, bytes[2] == 0x4c, bytes[3] == 0x46 else {
            throw .guest("not an ELF file")
        }
        guard bytes[4] == 2, bytes[5] == 1, try field(18, UInt16.self) == 62 else {
            throw .guest("not a 64-bit little-endian x86-64 ELF file")
        }
        entry = try field(24, UInt64.self)
        let phoff = Int(try field(32, UInt64.self))
        let phentsize = Int(try field(54, UInt16.self))
        let phnum = Int(try field(56, UInt16.self))
        var segments: [ElfSegment] = []
        for i in 0..<phnum {
            let at = phoff + i * phentsize
            guard try field(at, UInt32.self) == 1 else { continue }   // PT_LOAD
            let segment = ElfSegment(
                virtualAddress: try field(at + 16, UInt64.self), fileOffset: Int(try field(at + 8, UInt64.self)),
                fileSize: Int(try field(at + 32, UInt64.self)), memorySize: Int(try field(at + 40, UInt64.self)),
                flags: try field(at + 4, UInt32.self))
            guard segment.fileOffset + segment.fileSize <= bytes.count, segment.fileSize <= segment.memorySize else {
                throw .guest("ELF segment \(i) lies outside the file")
            }
            segments.append(segment)
        }
        guard !segments.isEmpty else { throw .guest("ELF file has no loadable segment") }
        self.segments = segments
    }
}
#endif

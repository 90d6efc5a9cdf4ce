// Loading a static, non-PIE x86-64 ELF executable into a fresh address space: each PT_LOAD segment
// becomes a region with its permissions, its file bytes copied into frames mapped at once (the
// rest of the segment, like .bss, is demand-paged zero); then the initial stack with argc, argv,
// an empty envp and the auxiliary vector (AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_ENTRY,
// AT_RANDOM), as Linux lays it out.

/// What loading found: the entry point, the initial stack pointer, the end of the image (the
/// program break starts there).
struct LoadedProgram {
    var entry: UInt64
    var stackPointer: UInt64
    var imageEnd: UInt64
}

/// Reads little-endian fields of the ELF file, bounds-checked.
///
/// `@safe`: made (with the raw base, so marked there) over the `count` bytes the VMM placed in
/// RAM, which nothing frees; every read is checked against `count`.
@safe
struct ElfBytes {
    let base: UnsafeRawPointer
    let count: Int

    func field<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T? {
        guard offset >= 0, offset + MemoryLayout<T>.size <= count else { return nil }
        // SAFETY: inside the file's `count` bytes (checked), which the VMM placed in RAM.
        return unsafe base.loadUnaligned(fromByteOffset: offset, as: T.self)
    }
}

enum LoadError: Error {
    case notElf
    case badSegment
    case noMemory
}

extension Process {
    static let stackTop: UInt64 = 0x7fff_ffff_f000 & ~0xffff
    static let stackSize: UInt64 = 8 << 20

    /// Loads the program at `file` with `arguments` (argv[0] first).
    func load(_ file: ElfBytes, arguments: [UnsafeBufferPointer<UInt8>]) throws(LoadError) -> LoadedProgram {
        guard file.count >= 64, file.field(0, UInt32.self) == 0x464c_457f, file.field(4, UInt8.self) == 2,
              file.field(18, UInt16.self) == 62, let entry = file.field(24, UInt64.self),
              let phoff = file.field(32, UInt64.self), let phnum = file.field(56, UInt16.self) else { throw .notElf }
        var imageEnd: UInt64 = 0
        var phdrAddress: UInt64 = 0
        for i in 0..<Int(phnum) {
            let at = Int(phoff) + i * 56
            guard let type = file.field(at, UInt32.self), type == 1 else { continue }
            guard let flags = file.field(at + 4, UInt32.self), let offset = file.field(at + 8, UInt64.self),
                  let vaddr = file.field(at + 16, UInt64.self), let filesz = file.field(at + 32, UInt64.self),
                  let memsz = file.field(at + 40, UInt64.self), filesz <= memsz,
                  Int(offset + filesz) <= file.count, vaddr + memsz < Process.stackTop - Process.stackSize else { throw .badSegment }
            var protection: Protection = []
            if flags & 4 != 0 { protection.insert(.read) }
            if flags & 2 != 0 { protection.insert(.write) }
            if flags & 1 != 0 { protection.insert(.exec) }
            let start = vaddr & ~0xfff, end = (vaddr + memsz + 0xfff) & ~0xfff
            regions.remove(start, end)
            regions.insert(Region(start: start, end: end, protection: protection))
            try copySegment(file, offset: offset, vaddr: vaddr, filesz: filesz, protection: protection)
            if phoff >= offset && phoff < offset + filesz { phdrAddress = vaddr + (phoff - offset) }
            imageEnd = max(imageEnd, end)
        }
        guard imageEnd != 0 else { throw .notElf }
        let stackBottom = Process.stackTop - Process.stackSize
        regions.insert(Region(start: stackBottom, end: Process.stackTop, protection: [.read, .write]))
        // SAFETY: the argument strings are in RAM the VMM filled and nothing frees (the caller's).
        let sp = try unsafe buildStack(arguments: arguments, entry: entry, phdr: phdrAddress, phnum: UInt64(phnum))
        return LoadedProgram(entry: entry, stackPointer: sp, imageEnd: imageEnd)
    }

    /// Maps the pages of a segment that hold file bytes, filled from the file.
    private func copySegment(_ file: ElfBytes, offset: UInt64, vaddr: UInt64, filesz: UInt64,
                             protection: Protection) throws(LoadError) {
        var page = vaddr & ~0xfff
        let fileEnd = vaddr + filesz
        while page < fileEnd {
            guard let frame = newZeroedFrame() else { throw .noMemory }
            // SAFETY: `host` is the new frame's 4 KiB through the linear map and `from ..< to` lies
            // in its page; the source lies in the file (`offset + filesz <= count`, checked).
            let host = unsafe machine.pointer(to: frame.paddr, count: pageSize)
            let from = max(page, vaddr), to = min(page + 4096, fileEnd)
            unsafe (host + Int(from - page)).copyMemory(from: file.base + Int(offset + (from - vaddr)), byteCount: Int(to - from))
            mapFrame(frame, at: page, protection)
            page += 4096
        }
    }

    /// Writes `bytes` at user address `address`, whose page is mapped or demand-paged now.
    func poke(_ address: UInt64, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var done = 0
        while done < bytes.count {
            let va = address + UInt64(done)
            // SAFETY: `host` is `va`'s byte in a mapped frame, and `chunk` stays inside its page; the
            // source is inside the caller's `bytes` (`done + chunk <= count`).
            guard let host = unsafe hostAddress(of: va, writable: true) else { return false }
            let chunk = min(bytes.count - done, 4096 - Int(va & 0xfff))
            unsafe host.copyMemory(from: bytes.baseAddress! + done, byteCount: chunk)
            done += chunk
        }
        return true
    }

    /// The initial stack: strings at the top, then AT_RANDOM's 16 bytes, then (16-byte aligned)
    /// argc, argv[], NULL, envp NULL, auxv pairs, AT_NULL.
    private func buildStack(arguments: [UnsafeBufferPointer<UInt8>], entry: UInt64, phdr: UInt64,
                            phnum: UInt64) throws(LoadError) -> UInt64 {
        var cursor = Process.stackTop
        var pointers: [UInt64] = []
        // SAFETY: each argument is a string in RAM the VMM filled and nothing frees (the caller's);
        // each buffer `poke` reads is a local array's or value's storage, valid in its closure.
        for unsafe argument in unsafe arguments {
            var bytes = unsafe Array(argument)
            bytes.append(0)
            cursor -= UInt64(bytes.count)
            guard unsafe bytes.withUnsafeBytes({ unsafe poke(cursor, $0) }) else { throw .noMemory }
            pointers.append(cursor)
        }
        cursor -= 16
        let random = cursor
        var seed: (UInt64, UInt64) = (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210)
        // SAFETY: as above: `seed`'s bytes, valid in the closure.
        guard unsafe withUnsafeBytes(of: &seed, { unsafe poke(random, $0) }) else { throw .noMemory }
        let auxv: [UInt64] = [3, phdr, 4, 56, 5, phnum, 6, 4096, 9, entry, 25, random, 0, 0]
        var words: [UInt64] = unsafe [UInt64(arguments.count)] + pointers + [0, 0] + auxv
        cursor = (cursor - UInt64(words.count * 8)) & ~0xf
        // SAFETY: as above: `words`' storage, valid in the closure.
        guard unsafe words.withUnsafeMutableBytes({ unsafe poke(cursor, UnsafeRawBufferPointer($0)) }) else { throw .noMemory }
        return cursor
    }
}

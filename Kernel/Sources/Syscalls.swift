// The system calls, with Linux's numbers and semantics for what a memory test needs: write,
// writev, exit, exit_group, brk, mmap (anonymous; MAP_FIXED, MAP_FIXED_NOREPLACE, hints), munmap,
// mprotect, madvise(MADV_DONTNEED), arch_prctl(ARCH_SET_FS), set_tid_address, getpid, uname.
// Anything else returns -ENOSYS and is logged. Arguments: rdi, rsi, rdx, r10, r8, r9; the result
// in rax.

enum Errno {
    static let EPERM = 1, ENOENT = 2, EBADF = 9, ENOMEM = 12, EFAULT = 14, EEXIST = 17, ENODEV = 19,
               EINVAL = 22, ENOSYS = 38
}

enum Syscall {
    static let write: UInt64 = 1, mmap: UInt64 = 9, mprotect: UInt64 = 10, munmap: UInt64 = 11, brk: UInt64 = 12,
               writev: UInt64 = 20, madvise: UInt64 = 28, getpid: UInt64 = 39, exit: UInt64 = 60, uname: UInt64 = 63,
               archPrctl: UInt64 = 158, setTidAddress: UInt64 = 218, exitGroup: UInt64 = 231
}

/// The top of the range `mmap` chooses addresses in (1 GiB below the kernel heap's window, so that a
/// program's mappings near the top do not run into it), and its bottom.
let mmapTop: UInt64 = Process.heapWindow.lowerBound - (1 << 30)
let mmapBottom: UInt64 = 0x1000_0000

extension Process {
    /// Runs the system call in `frame`; returns its result, or `nil` when the program exited
    /// (`status` set).
    func syscall(_ frame: UnsafeMutablePointer<TrapFrame>, status: inout Int?) -> Int64 {
        // SAFETY: the trap frame entry.S pushed, live until `iretq` (the caller's).
        let f = unsafe frame.pointee
        let (a0, a1, a2, a3) = (f.rdi, f.rsi, f.rdx, f.r10)
        let result: Int64
        switch f.rax {
        case Syscall.write: result = write(fd: a0, a1, a2)
        case Syscall.writev: result = writev(fd: a0, a1, a2)
        case Syscall.exit, Syscall.exitGroup:
            status = Int(a0 & 0xff)
            result = 0
        case Syscall.brk: result = Int64(bitPattern: brk(a0))
        case Syscall.mmap: result = mmap(a0, a1, a2, a3)
        case Syscall.munmap: result = munmap(a0, a1)
        case Syscall.mprotect: result = mprotect(a0, a1, a2)
        case Syscall.madvise: result = madvise(a0, a1, a2)
        case Syscall.archPrctl:
            if a0 == 0x1002 {   // ARCH_SET_FS
                wrmsr(0xc000_0100, a1)
                result = 0
            } else {
                result = -Int64(Errno.EINVAL)
            }
        case Syscall.setTidAddress, Syscall.getpid: result = 1
        case Syscall.uname: result = uname(a0)
        default:
            klog(.text("ostd-kernel: system call "), .decimal(Int(f.rax)), .text(" is not implemented: -ENOSYS"))
            result = -Int64(Errno.ENOSYS)
        }
        if kernel.trace {
            klog(.text("ostd-kernel: syscall "), .decimal(Int(f.rax)), .text("("), .hex(a0), .text(", "), .hex(a1),
                 .text(", "), .hex(a2), .text(", "), .hex(a3), .text(") = "), .hex(UInt64(bitPattern: result)))
        }
        return result
    }

    // MARK: Output

    /// Copies `count` bytes from user memory at `buffer` with a scoped `VmReader` (the core's
    /// checked copy, through the software walk; it borrows the space, as OSTD's does) and hands
    /// them to the VMM. A fault after some bytes writes those, as Linux's `write` does.
    func write(fd: UInt64, _ buffer: UInt64, _ count: UInt64) -> Int64 {
        guard fd == 1 || fd == 2 else { return -Int64(Errno.EBADF) }
        guard count > 0 else { return 0 }
        guard count < 1 << 30 else { return -Int64(Errno.EINVAL) }
        // SAFETY: a kernel buffer for this call alone, freed on return; the VmWriter writes only inside it.
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(count), alignment: 16)
        defer { unsafe bytes.deallocate() }
        let copied: Int
        do throws(OSTDError) {
            copied = try space.withReader(at: Vaddr(buffer), count: Int(count)) { (reader) throws(OSTDError) -> Int in
                // SAFETY: the buffer above, allocated until this call returns; the writer ends in this closure.
                var writer = unsafe VmWriter<Infallible>(bytes).toFallible()
                do throws(OSTDError) {
                    return try reader.readFallible(&writer)
                } catch {
                    if case .pageFault(_, let done) = error, done > 0 { return done }
                    throw error
                }
            }
        } catch {
            return -Int64(Errno.EFAULT)
        }
        // SAFETY: the buffer above, still allocated; `copied <= count` bytes of it were written.
        unsafe kernel.output(fd: fd, bytes.baseAddress!, copied)
        return Int64(copied)
    }

    func writev(fd: UInt64, _ vectors: UInt64, _ count: UInt64) -> Int64 {
        guard count <= 1024 else { return -Int64(Errno.EINVAL) }
        var total: Int64 = 0
        for i in 0..<count {
            guard let base = readWord(vectors + i * 16), let length = readWord(vectors + i * 16 + 8) else {
                return total > 0 ? total : -Int64(Errno.EFAULT)
            }
            let written = write(fd: fd, base, length)
            if written < 0 { return total > 0 ? total : written }
            total += written
        }
        return total
    }

    /// The 8 bytes at user address `address`.
    func readWord(_ address: UInt64) -> UInt64? {
        var word: UInt64 = 0
        for i in 0..<UInt64(8) {
            // SAFETY: `host` is the byte of a mapped user frame through the linear map (`hostAddress`).
            guard let host = unsafe hostAddress(of: address + i, writable: false) else { return nil }
            word |= UInt64(unsafe host.load(as: UInt8.self)) << (8 * i)
        }
        return word
    }

    func uname(_ buffer: UInt64) -> Int64 {
        let fields: [StaticString] = ["Linux", "ostd", "6.0.0-ostd", "#1", "x86_64", "(none)"]
        for (i, field) in fields.enumerated() {
            var bytes = [UInt8](repeating: 0, count: 65)
            // SAFETY: `j < utf8CodeUnitCount` (at most 10 here, below 65), inside the static string's
            // bytes; `poke` reads the local array's storage, valid in its closure.
            for j in 0..<field.utf8CodeUnitCount { bytes[j] = unsafe field.utf8Start[j] }
            guard unsafe bytes.withUnsafeBytes({ unsafe poke(buffer + UInt64(i * 65), $0) }) else { return -Int64(Errno.EFAULT) }
        }
        return 0
    }

    // MARK: Memory

    /// brk: a request below the start or into another region leaves the break where it is.
    func brk(_ requested: UInt64) -> UInt64 {
        guard requested >= breakStart else { return breakCurrent }
        let oldEnd = (breakCurrent + 0xfff) & ~0xfff, newEnd = (requested + 0xfff) & ~0xfff
        if newEnd > oldEnd {
            guard !regions.overlaps(oldEnd, newEnd) else { return breakCurrent }
        } else if newEnd < oldEnd {
            unmapPages(newEnd, oldEnd)
        }
        regions.remove(breakStart, max(oldEnd, newEnd))
        if newEnd > breakStart { regions.insert(Region(start: breakStart, end: newEnd, protection: [.read, .write])) }
        breakCurrent = requested
        return requested
    }

    func mmap(_ address: UInt64, _ length: UInt64, _ prot: UInt64, _ flags: UInt64) -> Int64 {
        let mapFixed: UInt64 = 0x10, mapAnonymous: UInt64 = 0x20, mapFixedNoReplace: UInt64 = 0x10_0000
        guard length > 0, length < 1 << 46 else { return -Int64(Errno.EINVAL) }
        guard flags & mapAnonymous != 0 else {
            klog(.text("ostd-kernel: mmap of a file is not supported: -ENODEV"))
            return -Int64(Errno.ENODEV)
        }
        guard flags & 0x3 != 0 else { return -Int64(Errno.EINVAL) }   // MAP_SHARED or MAP_PRIVATE
        let size = (length + 0xfff) & ~0xfff
        let protection = Protection(rawValue: prot & 7)
        var start: UInt64
        if flags & (mapFixed | mapFixedNoReplace) != 0 {
            guard address & 0xfff == 0 else { return -Int64(Errno.EINVAL) }
            guard address + size <= Process.stackTop, address + size > address else { return -Int64(Errno.ENOMEM) }
            if flags & mapFixedNoReplace != 0 && flags & mapFixed == 0 && regions.overlaps(address, address + size) {
                return -Int64(Errno.EEXIST)
            }
            guard !Process.touchesHeap(address, address + size) else { return -Int64(Errno.ENOMEM) }
            start = address
            unmapPages(start, start + size)
            regions.remove(start, start + size)
        } else {
            let hint = (address + 0xfff) & ~0xfff
            if hint != 0, hint >= mmapBottom, hint + size <= mmapTop, !regions.overlaps(hint, hint + size) {
                start = hint
            } else {
                guard let free = regions.freeRange(length: size, below: mmapTop, above: mmapBottom) else {
                    return -Int64(Errno.ENOMEM)
                }
                start = free
            }
        }
        regions.insert(Region(start: start, end: start + size, protection: protection))
        return Int64(start)
    }

    func munmap(_ address: UInt64, _ length: UInt64) -> Int64 {
        guard address & 0xfff == 0, length > 0, address + length > address, address + length <= Process.stackTop else {
            return -Int64(Errno.EINVAL)
        }
        let end = (address + length + 0xfff) & ~0xfff
        unmapPages(address, end)
        regions.remove(address, end)
        return 0
    }

    func mprotect(_ address: UInt64, _ length: UInt64, _ prot: UInt64) -> Int64 {
        guard address & 0xfff == 0 else { return -Int64(Errno.EINVAL) }
        let end = (address + length + 0xfff) & ~0xfff
        guard end >= address else { return -Int64(Errno.ENOMEM) }
        if end == address { return 0 }
        let protection = Protection(rawValue: prot & 7)
        guard !Process.touchesHeap(address, end), regions.protect(address, end, protection) else { return -Int64(Errno.ENOMEM) }
        if var cursor = try? space.cursorMut(Vaddr(address)..<Vaddr(end)) {
            let property = protection.property
            _ = try? cursor.tryProtect(Int(end - address)) { $0 = property }
        }
        return 0
    }

    func madvise(_ address: UInt64, _ length: UInt64, _ advice: UInt64) -> Int64 {
        guard address & 0xfff == 0 else { return -Int64(Errno.EINVAL) }
        let end = (address + length + 0xfff) & ~0xfff
        guard end >= address else { return -Int64(Errno.EINVAL) }
        guard advice == 4 else { return 0 }   // MADV_DONTNEED; other advice is only advice
        guard regions.overlaps(address, end) else { return -Int64(Errno.ENOMEM) }
        unmapPages(address, end)
        return 0
    }
}

// User-space memory access as a CPU performs it: through the MMU, with faults.
//
// A user-space reader or writer never dereferences a virtual address itself. Each access is a
// platform user-mode access on the caller's CPU (`Platform.withUserAccess`): every page is
// translated by the CPU's MMU (the TLB, then a page walk), with the access rights of a user-mode
// access (USER to read, USER and W to write). Runs of pages that are also physically contiguous
// are copied in one go.
//
// A fault releases the lock and asks the space's page-fault handler; if it resolves the fault
// (say, by mapping a frame) the access resumes where it stopped, as `rep movsb` resumes after
// OSTD's handler returns. Otherwise the access ends and reports the faulting address and the
// bytes transferred before it (OSTD's exception-table recovery in `__memcpy_fallible`). A fault
// that comes back at the same address right after being "resolved" is final.

import Synchronization

/// How a user-space access ended early.
@usableFromInline
struct AccessFault: Error {
    @usableFromInline var address: Vaddr
    @usableFromInline var isWrite: Bool

    @inlinable init(_ address: Vaddr, isWrite: Bool) {
        self.address = address
        self.isWrite = isWrite
    }
}

extension VmSpace {
    /// The host address of `va` and how many of the next `limit` bytes are accessible there in
    /// one physically contiguous run, or `nil` when `va` itself faults.
    @inlinable @inline(__always)
    func accessibleRun<T: UserAddressTranslator>(_ va: Vaddr, write: Bool, limit: Int,
                                                 mmu: inout T) -> (UnsafeMutableRawPointer, Int)? {
        guard let first = mmu.translate(va, write: write) else { return nil }
        var length = first.bytesLeftInPage
        while length < limit {
            guard let next = mmu.translate(va + length, write: write),
                  next.paddr == first.paddr + length else { break }
            length += next.bytesLeftInPage
        }
        return (context.pointer(to: first.paddr), min(length, limit))
    }

    /// Runs `step` as a user-mode access on the caller's CPU until it finishes or faults; asks
    /// the page-fault handler about each fault. `step` returns the fault that stopped it, if any,
    /// and is called again after a resolved fault.
    ///
    /// - Returns: the fault that ended the access, or `nil` when it completed.
    /// - Throws: `notActive` when the space is not active on the caller's CPU.
    @inlinable @inline(__always)
    func access<P: Platform>(on platform: P, _ step: (inout P.UserMmu) -> AccessFault?) throws(OSTDError) -> AccessFault? {
        let cpu = platform.executingCpu()
        var resolved: Vaddr? = nil
        while true {
            guard let outcome = platform.withUserAccess(on: cpu, root: rootPaddr, step) else {
                throw .notActive(cpu: cpu)
            }
            guard let fault = outcome else { return nil }
            guard fault.address != resolved, let handler = pageFaultHandler,
                  handler(self, PageFaultInfo(address: fault.address, isWrite: fault.isWrite, cpu: cpu))
            else { return fault }
            resolved = fault.address
        }
    }
}

/// One end of a transfer: user memory of `space` at a virtual address, or kernel memory at a host
/// address when `space` is `nil`.
@usableFromInline
struct IoEnd {
    /// Unretained: the reader or writer the end comes from holds the space.
    @usableFromInline let spaceRef: Unmanaged<VmSpace>?
    @usableFromInline let address: UInt64

    @inlinable init(_ spaceRef: Unmanaged<VmSpace>?, _ address: UInt64) {
        self.spaceRef = spaceRef
        self.address = address
    }

    /// Kernel memory at host address `address`.
    @inlinable static func kernel(_ address: UInt64) -> IoEnd { IoEnd(nil, address) }

    @inlinable var space: VmSpace? { spaceRef?.takeUnretainedValue() }

    /// The host address `offset` bytes in, for kernel memory.
    @inlinable var host: UnsafeMutableRawPointer {
        // SAFETY: kernel-memory handles are built over live host memory (their constructors'
        // contract), so a non-zero address inside them is a valid pointer.
        unsafe UnsafeMutableRawPointer(bitPattern: UInt(address))!
    }
}

/// Copies `count` bytes from `source` to `destination`, user memory through the TLB.
///
/// - Returns: the bytes copied and, when it stopped early, the fault.
/// - Throws: `notActive` when user memory is involved and its space is not active here.
@inlinable
func transfer(from source: IoEnd, to destination: IoEnd, count: Int) throws(OSTDError) -> (Int, AccessFault?) {
    guard count > 0 else { return (0, nil) }
    guard let space = source.space ?? destination.space else {
        destination.host.copyMemory(from: source.host, byteCount: count)
        return (count, nil)
    }
    if let other = destination.spaceRef, let first = source.spaceRef, other.toOpaque() != first.toOpaque() {
        // Two spaces cannot both be active on one CPU: report the one that is not.
        _ = try first.takeUnretainedValue().executingCpu()
        _ = try other.takeUnretainedValue().executingCpu()
    }
    var copied = 0
    let fault = try space.access(on: space.context.platform) { mmu in
        while copied < count {
            var chunk = count - copied
            let from: UnsafeMutableRawPointer
            if source.space != nil {
                let va = Vaddr(source.address) + copied
                guard let (pointer, run) = space.accessibleRun(va, write: false, limit: chunk, mmu: &mmu) else {
                    return AccessFault(va, isWrite: false)
                }
                from = pointer
                chunk = run
            } else {
                from = source.host + copied
            }
            let to: UnsafeMutableRawPointer
            if destination.space != nil {
                let va = Vaddr(destination.address) + copied
                guard let (pointer, run) = space.accessibleRun(va, write: true, limit: chunk, mmu: &mmu) else {
                    return AccessFault(va, isWrite: true)
                }
                to = pointer
                chunk = run
            } else {
                to = destination.host + copied
            }
            to.copyMemory(from: from, byteCount: chunk)
            copied += chunk
        }
        return nil
    }
    return (copied, fault)
}

/// Writes `count` zero bytes at `destination`, user memory through the TLB.
///
/// - Returns: the bytes written and, when it stopped early, the fault.
@inlinable
func zeroFill(_ destination: IoEnd, count: Int) throws(OSTDError) -> (Int, AccessFault?) {
    guard count > 0 else { return (0, nil) }
    guard let space = destination.space else {
        destination.host.initializeMemory(as: UInt8.self, repeating: 0, count: count)
        return (count, nil)
    }
    var filled = 0
    let fault = try space.access(on: space.context.platform) { mmu in
        while filled < count {
            let va = Vaddr(destination.address) + filled
            guard let (pointer, run) = space.accessibleRun(va, write: true, limit: count - filled, mmu: &mmu) else {
                return AccessFault(va, isWrite: true)
            }
            pointer.initializeMemory(as: UInt8.self, repeating: 0, count: run)
            filled += run
        }
        return nil
    }
    return (filled, fault)
}

/// Runs `body` on the `UInt32` at `end` as an atomic, with the access rights of a read
/// (`write == false`) or a write.
///
/// - Returns: `body`'s result, or the fault.
@inlinable
func atomicAccess<R>(_ end: IoEnd, write: Bool,
                     _ body: (UnsafeMutablePointer<Atomic<UInt32>>) -> R) throws(OSTDError) -> Result<R, AccessFault> {
    guard let space = end.space else {
        return .success(body(end.host.assumingMemoryBound(to: Atomic<UInt32>.self)))
    }
    var result: R? = nil
    let fault = try space.access(on: space.context.platform) { mmu in
        let va = Vaddr(end.address)
        guard let translation = mmu.translate(va, write: write) else {
            return AccessFault(va, isWrite: write)
        }
        let pointer = space.context.pointer(to: translation.paddr)
        result = body(pointer.assumingMemoryBound(to: Atomic<UInt32>.self))
        return nil
    }
    if let fault { return .failure(fault) }
    return .success(result!)
}

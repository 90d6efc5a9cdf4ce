// User-space memory access as a CPU performs it: through the MMU, with faults.
//
// A user-space reader or writer never dereferences a virtual address itself. Each access is a
// platform user-mode access on the caller's CPU (`Platform.withUserAccess`): every page is
// translated by the CPU's MMU (the TLB, then a page walk), which decides a user-mode read or
// write by the one x86 rule (`X86Mmu`) and gives the page-fault error code of a fault. Runs of
// pages that are also physically contiguous are copied in one go.
//
// A fault releases the lock and asks the space's page-fault handler; if it resolves the fault
// (say, by mapping a frame) the access resumes where it stopped, as `rep movsb` resumes after
// OSTD's handler returns. Otherwise the access ends and reports the faulting address and the
// bytes transferred before it (OSTD's exception-table recovery in `__memcpy_fallible`). A fault
// that comes back at the same address right after being "resolved" is final.
//
// A value of one to eight bytes inside one page (`readVal`, `writeVal`) is not a copy: it is one
// translation and one load or store (`loadUserValue`, `storeUserValue`), as Linux's `get_user` and
// `put_user` are beside `copy_from_user`, with the same faults and outcome.

import Synchronization

/// How a user-space access ended early: where, and the page-fault error code the MMU gave.
@usableFromInline
struct AccessFault: Error {
    @usableFromInline var address: Vaddr
    @usableFromInline var isWrite: Bool
    @usableFromInline var errorCode: PageFaultErrorCode

    @inlinable init(_ address: Vaddr, isWrite: Bool, errorCode: PageFaultErrorCode) {
        self.address = address
        self.isWrite = isWrite
        self.errorCode = errorCode
    }
}

extension VmSpace {
    /// The host address of `va` and how many of the next `limit` bytes are accessible there in
    /// one physically contiguous run, or `nil` when `va` itself faults (its error code is then in
    /// `fault`). A write's frames are marked written (`MetaSlot.markWritten`), as the MMU sets
    /// a dirty bit, unless the run repeats an earlier write of them (`repeatsWrite`).
    @inlinable @inline(__always)
    func accessibleRun<T: UserAddressTranslator>(_ va: Vaddr, write: Bool, limit: Int, mmu: inout T,
                                                 fault: inout PageFaultErrorCode) -> (UnsafeMutableRawPointer, Int)? {
        guard let first = mmu.translateRun(va, write: write, limit: limit, fault: &fault) else { return nil }
        let run = min(first.bytesLeftInPage, limit)
        if write && !first.repeatsWrite { context.markWritten(first.paddr, count: run) }
        // SAFETY: the MMU translated these bytes through a leaf of this space's table, and every
        // leaf maps physical memory of this machine (tracked frames, or an untracked range whose
        // `@unsafe` maker vouched for it), so the host address is inside the linear mapping.
        return (unsafe context.pointer(to: first.paddr), run)
    }

    /// Runs `step` as a user-mode access on the caller's CPU until it finishes or faults; asks
    /// the page-fault handler about each fault. `step` returns the fault that stopped it, if any,
    /// and is called again after a resolved fault.
    ///
    /// - Returns: the fault that ended the access, or `nil` when it completed.
    /// - Throws: `notActive` when the space is not active on the caller's CPU.
    @inlinable @inline(__always)
    func access<P: Platform>(on platform: P, _ step: (inout P.UserMmu) -> AccessFault?) throws(OSTDError) -> AccessFault? {
        // The CPU this thread is bound to, if any (a thread on none accesses as CPU 0, as
        // `executingCpu()` has it; its read-side section then takes an unbound slot).
        let current = platform.withPreemptionDisabled { cpu in cpu }
        let cpu = current ?? 0
        var resolved: Vaddr? = nil
        let rcu = context.rcu
        while true {
            guard let outcome = platform.withUserAccess(on: cpu, root: rootPaddr, { mmu -> AccessFault? in
                let fault = step(&mmu)
                // The handler runs in a read-side section of this CPU, opened here, under the MMU
                // lock, which spares its fence (`Rcu.enterUnderLock`).
                // SAFETY: `current` is the caller's CPU, whose MMU lock the access holds.
                if fault != nil, let current { unsafe rcu.enterUnderLock(cpu: current) }
                return fault
            }) else {
                throw .notActive(cpu: cpu)
            }
            guard let fault = outcome else { return nil }
            // SAFETY: adopts the section opened above on the caller's CPU; a thread on no CPU
            // opens one of its own.
            let section = if let current { unsafe RcuReadGuard(adopting: current, of: rcu) } else { rcu.read(cpu: nil) }
            guard fault.address != resolved,
                  callPageFaultHandler(PageFaultInfo(address: fault.address, isWrite: fault.isWrite, cpu: cpu,
                                                     errorCode: fault.errorCode), in: section)
            else { return fault }
            resolved = fault.address
        }
    }
}

extension VmSpace {
    /// Where user byte `va` is in host memory, with `chunk` shortened to the bytes accessible
    /// there in one run through `mmu`; a fault at `va` itself is the failure. (A copy decides a
    /// kernel end itself, with a test and an addition: kept out of this function, the test is
    /// inlined at each end even where the optimiser declines to inline this one a second time.)
    @inlinable @inline(__always)
    func locateUser<T: UserAddressTranslator>(_ va: Vaddr, write: Bool, chunk: inout Int,
                                              mmu: inout T) -> Result<UnsafeMutableRawPointer, AccessFault> {
        var code = PageFaultErrorCode()
        // SAFETY: `accessibleRun`'s pointer covers `run` translated bytes of physical memory.
        guard let (pointer, run) = unsafe accessibleRun(va, write: write, limit: chunk, mmu: &mmu, fault: &code) else {
            return unsafe .failure(AccessFault(va, isWrite: write, errorCode: code))
        }
        chunk = run
        return unsafe .success(pointer)
    }
}

/// Copies `count` bytes from `source` to `destination`, user memory through the TLB.
///
/// - Returns: the bytes copied and, when it stopped early, the fault.
/// - Throws: `notActive` when user memory is involved and its space is not active here.
/// - Safety: each end comes from a live window with at least `count` bytes left (so a host end
///   is valid for `count` bytes and a user end's space is retained).
@unsafe @inlinable
func transfer(from source: IoEnd, to destination: IoEnd, count: Int) throws(OSTDError) -> (Int, AccessFault?) {
    guard count > 0 else { return (0, nil) }
    // SAFETY: two host ends, each valid for `count` bytes (the caller's contract); `copyMemory`
    // is a `memmove`, so they may overlap.
    guard let spaceRef = unsafe source.spaceRef ?? destination.spaceRef else {
        unsafe destination.host.copyMemory(from: source.host, byteCount: count)
        return (count, nil)
    }
    // SAFETY: the windows the ends come from hold their spaces for the whole transfer.
    return try unsafe withSpace(spaceRef) { space throws(OSTDError) in
        if case .user(let first, _) = source, case .user(let other, _) = destination,
           unsafe first.toOpaque() != other.toOpaque() {
            // Two spaces cannot both be active on one CPU: report the one that is not.
            // SAFETY: as above, both windows hold their spaces.
            _ = try unsafe first.takeUnretainedValue().executingCpu()
            _ = try unsafe other.takeUnretainedValue().executingCpu()
        }
        var copied = 0
        let fault = try space.access(on: space.context.platform) { mmu in
            while copied < count {
                var chunk = count - copied
                // `copied + chunk <= count`, so a host end stays inside its `count` bytes (the caller's
                // contract); a user end is translated by the MMU. `chunk` shrinks to what both ends
                // can take in one run.
                let from: UnsafeMutableRawPointer
                if case .user(_, let start) = source {
                    // SAFETY: user memory through the MMU (`locateUser`'s pointer covers `chunk` bytes).
                    switch unsafe space.locateUser(start + copied, write: false, chunk: &chunk, mmu: &mmu) {
                    case .success(let pointer): unsafe from = pointer
                    case .failure(let fault): return fault
                    }
                } else {
                    // SAFETY: inside the host end's `count` bytes (above).
                    unsafe from = source.host + copied
                }
                let to: UnsafeMutableRawPointer
                if case .user(_, let start) = destination {
                    // SAFETY: as for `from`.
                    switch unsafe space.locateUser(start + copied, write: true, chunk: &chunk, mmu: &mmu) {
                    case .success(let pointer): unsafe to = pointer
                    case .failure(let fault): return fault
                    }
                } else {
                    // SAFETY: as for `from`.
                    unsafe to = destination.host + copied
                }
                #if DEBUG
                let short = copied + chunk == count && space.context.hasMutant(.writeFallibleCopiesOneByteShort) ? 1 : 0
                #else
                let short = 0
                #endif
                // SAFETY: both runs hold at least `chunk` bytes (located just above); `moveBytes`
                // is a `memmove`, so the two may even be the same physical bytes.
                unsafe moveBytes(to, from, chunk - short)
                copied += chunk
            }
            return nil
        }
        return (copied, fault)
    }
}

/// Whether a `count`-byte value at `va` is one `loadUserValue` / `storeUserValue` takes: one to
/// eight bytes inside one page.
@inlinable @inline(__always)
func isSmallValue(at va: Vaddr, count: Int) -> Bool {
    count >= 1 && count <= 8 && Int(va.rawValue & UInt64(pageSize - 1)) &+ count <= pageSize
}

/// Runs `body` on the host address of user byte `va` of the space `ref` refers to, translated by
/// the caller's MMU for a read or, with `write`, a write (which marks `marking` bytes from it
/// written, as a copy marks what it writes), with the space. Faults go to the page-fault handler
/// and the access is retried, as in `transfer`.
///
/// - Returns: `body`'s result, or the fault that ended the access.
/// - Throws: `notActive` when the space is not active on the caller's CPU.
/// - Safety: `ref`'s space is alive for the call (a live window holds it); `body` accesses at
///   most the bytes of `va`'s page from `va` on, and `marking` does not reach past them.
@unsafe @inlinable @inline(__always)
func withUserByte<R>(_ ref: Unmanaged<VmSpace>, at va: Vaddr, write: Bool, marking: Int,
                     _ body: (UnsafeMutableRawPointer, VmSpace) -> R) throws(OSTDError) -> Result<R, AccessFault> {
    // SAFETY: the caller's contract keeps the space alive for the whole access.
    return try unsafe withSpace(ref) { space throws(OSTDError) in
        var result: R? = nil
        let fault = try space.access(on: space.context.platform) { mmu in
            var code = PageFaultErrorCode()
            guard let found = mmu.translate(va, write: write, fault: &code) else {
                return AccessFault(va, isWrite: write, errorCode: code)
            }
            if write { space.context.markWritten(found.paddr, count: marking) }
            // SAFETY: the MMU translated `va` through a leaf of this space's table, so the address
            // is in physical memory (as in `accessibleRun`); `body` stays in its page (the
            // caller's contract).
            result = unsafe body(space.context.pointer(to: found.paddr), space)
            return nil
        }
        if let fault { return .failure(fault) }
        return .success(result!)
    }
}

/// Loads the `T` at user address `va` of the space `ref` refers to: one translation and one
/// load (Linux's `get_user` beside `copy_from_user`). Faults, the page-fault handler and the
/// outcome are `transfer`'s for the same bytes: a value inside one page is read whole or not at
/// all.
///
/// - Returns: the value, or the fault that ended the access.
/// - Throws: `notActive` when the space is not active on the caller's CPU.
/// - Safety: `ref`'s space is alive for the call (a live window holds it) and
///   `isSmallValue(at: va, count: MemoryLayout<T>.size)`.
@unsafe @inlinable
func loadUserValue<T: BitwiseCopyable>(_ ref: Unmanaged<VmSpace>, at va: Vaddr, as _: T.Type) throws(OSTDError) -> Result<T, AccessFault> {
    // SAFETY: the caller's contract; the value's bytes lie in `va`'s page. The load may be
    // unaligned; any bits are taken to be a `T` (OSTD's `Pod` bound, as `zeroedBits` says).
    try unsafe withUserByte(ref, at: va, write: false, marking: 0) { pointer, _ in unsafe pointer.loadUnaligned(as: T.self) }
}

/// Stores `value` at user address `va` of the space `ref` refers to: one translation and one
/// store (Linux's `put_user`), with `loadUserValue`'s faults and outcome; the frame is marked
/// written, as a copy marks it.
///
/// - Returns: the fault that ended the access, or `nil` when the value was stored.
/// - Throws: `notActive` when the space is not active on the caller's CPU.
/// - Safety: as `loadUserValue`.
@unsafe @inlinable
func storeUserValue<T: BitwiseCopyable>(_ value: T, _ ref: Unmanaged<VmSpace>, at va: Vaddr) throws(OSTDError) -> AccessFault? {
    let size = MemoryLayout<T>.size
    // SAFETY: the caller's contract; the value's `size` bytes lie in `va`'s page.
    let outcome = try unsafe withUserByte(ref, at: va, write: true, marking: size) { pointer, space in
        #if DEBUG
        if space.context.hasMutant(.writeFallibleCopiesOneByteShort) {
            // SAFETY: `value`'s bytes, valid in the closure; `size - 1` of them fit at `pointer`.
            unsafe withUnsafeBytes(of: value) { unsafe moveBytes(pointer, UnsafeMutableRawPointer(mutating: $0.baseAddress!), size - 1) }
            return
        }
        #endif
        // SAFETY: `pointer` is `va`'s byte in its translated page, and the value's `size` bytes
        // lie in that page (the caller's contract); the store may be unaligned, of `T`'s bits.
        unsafe pointer.storeBytes(of: value, as: T.self)
    }
    if case .failure(let fault) = outcome { return fault }
    return nil
}

/// `memmove` of `count` bytes, with the sizes of a value read or written whole (1, 2, 4, 8) done
/// inline as one load and one store, which is overlap-safe too: a call to `memmove` costs more
/// than such a copy (a fault's retried one-byte read spent 22 instructions in it).
///
/// - Safety: both are valid for `count` bytes.
@unsafe @inlinable @inline(__always)
func moveBytes(_ to: UnsafeMutableRawPointer, _ from: UnsafeMutableRawPointer, _ count: Int) {
    // SAFETY (every case): the caller's contract, both valid for `count` bytes; unaligned loads
    // and stores of trivial integers, or a `memmove`, overlap-safe.
    switch count {
    case 1: unsafe to.storeBytes(of: from.load(as: UInt8.self), as: UInt8.self)
    case 2: unsafe to.storeBytes(of: from.loadUnaligned(as: UInt16.self), as: UInt16.self)
    case 4: unsafe to.storeBytes(of: from.loadUnaligned(as: UInt32.self), as: UInt32.self)
    case 8: unsafe to.storeBytes(of: from.loadUnaligned(as: UInt64.self), as: UInt64.self)
    default: unsafe to.copyMemory(from: from, byteCount: count)
    }
}

/// Runs `body` on the space `ref` refers to, without retaining it (a retain and a release are
/// two contended atomics per access when two CPUs use one space).
///
/// - Safety: the space stays alive for the whole call (a live window holds it).
@unsafe @inlinable @inline(__always)
func withSpace<R>(_ ref: Unmanaged<VmSpace>, _ body: (VmSpace) throws(OSTDError) -> R) throws(OSTDError) -> R {
    // SAFETY: the caller's contract keeps the space alive, as `_withUnsafeGuaranteedRef` needs.
    let result: Result<R, OSTDError> = unsafe ref._withUnsafeGuaranteedRef { space in
        do throws(OSTDError) { return .success(try body(space)) } catch { return .failure(error) }
    }
    return try result.get()
}

/// Writes `count` zero bytes at `destination`, user memory through the TLB.
///
/// - Returns: the bytes written and, when it stopped early, the fault.
/// - Safety: `destination` comes from a live window with at least `count` bytes left.
@unsafe @inlinable
func zeroFill(_ destination: IoEnd, count: Int) throws(OSTDError) -> (Int, AccessFault?) {
    guard count > 0 else { return (0, nil) }
    guard case .user(let spaceRef, let start) = destination else {
        // SAFETY: a host end valid for `count` bytes (the caller's contract); bytes are trivial.
        unsafe destination.host.initializeMemory(as: UInt8.self, repeating: 0, count: count)
        return (count, nil)
    }
    // SAFETY: the window the end comes from holds the space for the whole fill.
    return try unsafe withSpace(spaceRef) { space throws(OSTDError) in
        var filled = 0
        let fault = try space.access(on: space.context.platform) { mmu in
            while filled < count {
                let va = start + filled
                var code = PageFaultErrorCode()
                // SAFETY: `accessibleRun`'s pointer covers `run` translated, writable bytes of physical
                // memory; bytes are trivial.
                guard let (pointer, run) = unsafe space.accessibleRun(va, write: true, limit: count - filled, mmu: &mmu,
                                                                      fault: &code) else {
                    return AccessFault(va, isWrite: true, errorCode: code)
                }
                unsafe pointer.initializeMemory(as: UInt8.self, repeating: 0, count: run)
                filled += run
            }
            return nil
        }
        return (filled, fault)
    }
}

/// Runs `body` on the `UInt32` at `end` as an atomic, with the access rights of a read
/// (`write == false`) or a write.
///
/// - Returns: `body`'s result, or the fault.
/// - Safety: `end` comes from a live window with at least 4 bytes left, 4-byte aligned.
@unsafe @inlinable
func atomicAccess<R>(_ end: IoEnd, write: Bool,
                     _ body: (UnsafeMutablePointer<Atomic<UInt32>>) -> R) throws(OSTDError) -> Result<R, AccessFault> {
    guard case .user(let spaceRef, let va) = end else {
        // SAFETY: a host end valid for 4 aligned bytes (the caller's contract), used atomically.
        return .success(unsafe body(end.host.assumingMemoryBound(to: Atomic<UInt32>.self)))
    }
    // SAFETY: the window the end comes from holds the space for the whole access; the caller
    // checked `va` is 4-byte aligned, so the word lies in one page and is a valid
    // `Atomic<UInt32>`.
    return try unsafe withUserByte(spaceRef, at: va, write: write, marking: 4) { pointer, _ in
        unsafe body(pointer.assumingMemoryBound(to: Atomic<UInt32>.self))
    }
}

// The program the kernel runs: its address space (a `VmSpace` sharing the kernel half), its
// regions, its program break, and demand paging. A fault the regions allow maps a zeroed frame
// and the access is retried; a fault they do not allow kills the program with SIGSEGV, as Linux
// would. Unmaps go through the space's cursors, which flush the TLB (`invlpg`) before the frames
// are freed.

final class Process {
    let kernel: Kernel
    let space: VmSpace
    var regions = RegionList()
    /// The program break: where it started and where it is now.
    var breakStart: UInt64 = 0
    var breakCurrent: UInt64 = 0
    /// Page faults served by mapping a frame.
    var faultsServed = 0

    init(kernel: Kernel) throws(OSTDError) {
        self.kernel = kernel
        space = try VmSpace(kernelPageTable: kernel.kernelPageTable)
        // A strong reference (Embedded Swift has no weak or unowned ones): `close()` breaks the
        // cycle when the program ends.
        space.pageFaultHandler = { _, fault in
            self.resolveFault(fault.address.rawValue, write: fault.isWrite, fetch: false)
        }
        // The kernel heap's root entry, shared as the kernel half is (not the space's own: taken
        // out again before the space goes, and no system call reaches `heapWindow`).
        // SAFETY: both roots are page-table nodes in RAM under the linear map (`rootEntries`);
        // `heapRootEntry < 512` is outside the user configuration's entries, so only this kernel
        // writes it, on the one CPU.
        let root = unsafe kernel.rootEntries(space.rootPaddr.rawValue)
        unsafe root[heapRootEntry] = kernel.rootEntries(kernelRoot)[heapRootEntry]
    }

    /// The addresses of the kernel heap's root entry: never the program's.
    static let heapWindow: Range<UInt64> = UInt64(heapRootEntry) << 39 ..< UInt64(heapRootEntry + 1) << 39

    /// Whether `start ..< end` touches the kernel heap's window.
    static func touchesHeap(_ start: UInt64, _ end: UInt64) -> Bool {
        start < heapWindow.upperBound && heapWindow.lowerBound < end
    }

    /// Breaks the reference cycle through the fault handler and takes the heap's entry out of
    /// the root, so that the space can go and tear down only what is its own.
    func close() {
        space.pageFaultHandler = nil
        // Off the program's root first: the kernel's stacks are on the heap.
        writeCr3(kernelRoot)
        announceRoot(kernelRoot)
        // SAFETY: the space's root, still live (the space is), under the linear map; the entry
        // `init` set, cleared before the space's teardown could follow it.
        unsafe kernel.rootEntries(space.rootPaddr.rawValue)[heapRootEntry] = 0
    }

    var machine: Machine { kernel.machine }

    // MARK: Frames

    /// A zeroed frame, marked written (ring 3 writes it through the real MMU, which the core does
    /// not see, so it must be zeroed again when it is handed out next).
    func newZeroedFrame() -> Frame<UntypedMeta>? {
        guard let frame = try? FrameAllocOptions().allocFrame(in: machine) else { return nil }
        // SAFETY: only marks the frame written (the pointer is not used); the frame is inside memory.
        _ = unsafe machine.pointer(to: frame.paddr, count: pageSize)
        return frame
    }

    /// Maps `frame` at `page` with `protection`.
    func mapFrame(_ frame: consuming Frame<UntypedMeta>, at page: UInt64, _ protection: Protection) {
        guard var cursor = try? space.cursorMut(Vaddr(page)..<Vaddr(page + 4096)) else { return }
        cursor.map(frame, protection.property)
    }

    /// The host address of user address `va` (faulting its page in when the regions allow).
    func hostAddress(of va: UInt64, writable: Bool) -> UnsafeMutableRawPointer? {
        for _ in 0..<2 {
            let page = va & ~0xfff
            if var cursor = try? space.cursor(Vaddr(page)..<Vaddr(page + 4096)),
               let item = try? cursor.query().item {
                // SAFETY: `item` maps `va`'s page, so the byte lies in one of the machine's frames.
                return unsafe machine.pointer(to: item.paddr + Int(va & 0xfff), count: 1)
            }
            guard resolveFault(va, write: writable, fetch: false) else { return nil }
        }
        return nil
    }

    // MARK: Faults

    /// Serves a fault at `address` if the regions allow the access: a missing page gets a zeroed
    /// frame, and so do the other missing pages of its aligned 64 KiB block inside the region
    /// (fault-around: under kvm_pvm every fault is a trip through KVM's instruction emulator, and
    /// a program that touches a page usually touches its neighbours; a page mapped early is
    /// invisible to the program). A present page with the right permissions was a stale TLB entry
    /// (flushed). Returns whether the access may be retried.
    func resolveFault(_ address: UInt64, write: Bool, fetch: Bool) -> Bool {
        guard let region = regions.find(address), !region.protection.isEmpty,
              !write || region.protection.contains(.write), !fetch || region.protection.contains(.exec) else { return false }
        let page = address & ~0xfff
        let block = max(region.start, page & ~Process.faultAround)..<min(region.end, (page | Process.faultAround) + 1)
        guard var cursor = try? space.cursorMut(Vaddr(block.lowerBound)..<Vaddr(block.upperBound)) else { return false }
        guard (try? cursor.jump(Vaddr(page))) != nil, (try? cursor.query().item) == nil else {
            invlpg(page)
            return true
        }
        var va = block.lowerBound
        while va < block.upperBound {
            if (try? cursor.jump(Vaddr(va))) != nil, (try? cursor.query().item) == nil {
                guard let frame = newZeroedFrame() else { return va > page }
                try? cursor.jump(Vaddr(va))
                cursor.map(frame, region.protection.property)
            }
            va += 4096
        }
        faultsServed += 1
        return true
    }

    /// The fault-around block: 64 KiB.
    static let faultAround: UInt64 = 0xffff

    // MARK: Unmapping

    /// Unmaps every page in `start ..< end` (page aligned), flushing before the frames go.
    func unmapPages(_ start: UInt64, _ end: UInt64) {
        if Process.touchesHeap(start, end) {   // around the window, never in it
            unmapPages(start, min(end, Process.heapWindow.lowerBound))
            unmapPages(max(start, Process.heapWindow.upperBound), end)
            return
        }
        guard start < end, var cursor = try? space.cursorMut(Vaddr(start)..<Vaddr(end)) else { return }
        cursor.unmap(Int(end - start))
    }
}

// The kernel: the machine over the guest's RAM, the kernel page table, and the program it runs.
//
// Boot: a `Machine` over physical memory 0 ..< machineMemory (the core's frames) through the
// VMM's linear map; `PageTable.newKernelPageTable` and in it the kernel image (text r-x, rodata
// r--, data and bss rw-: W^X) and the linear map of all RAM (2 MiB leaves, rw-, no execute); then
// CR3 := its root, which the kernel announces and the VMM checks.

final class Kernel {
    nonisolated(unsafe) static var current: Kernel?

    let boot: BootInfo
    let machine: Machine
    let kernelPageTable: PageTable<KernelPtConfig>
    let trace: Bool

    init(boot: BootInfo) {
        self.boot = boot
        trace = boot.flags & 1 != 0
        let memory = UnsafeMutableRawPointer(bitPattern: UInt(boot.linearBase))!
        let machine: Machine
        switch Result(catching: { () throws(FrameError) in
            try Machine(memory: PhysicalMemoryRegion(base: memory, size: Int(boot.machineMemory), release: nil))
        }) {
        case .success(let value): machine = value
        case .failure: fail("cannot boot the machine")
        }
        self.machine = machine
        switch Result(catching: { () throws(PageTableError) in try PageTable.newKernelPageTable(machine: machine) }) {
        case .success(let value): kernelPageTable = value
        case .failure: fail("no memory for the kernel page table")
        }
        Kernel.current = self
    }

    /// Maps the kernel image and the linear map, loads CR3, installs the descriptor tables.
    func takeOver() {
        let base = boot.kernelVirtualBase
        func physical(_ va: UInt64) -> UInt64 { boot.kernelPhysical + (va - base) }
        mapUntracked(address(of: &textStart), address(of: &textEnd), physical: physical(address(of: &textStart)), .kernel(.rx))
        mapUntracked(address(of: &rodataStart), address(of: &rodataEnd), physical: physical(address(of: &rodataStart)), .kernel(.r))
        mapUntracked(address(of: &dataStart), address(of: &dataEnd), physical: physical(address(of: &dataStart)), .kernel(.rw))
        mapUntracked(boot.linearBase, boot.linearBase + boot.ramSize, physical: 0, .kernel(.rw))
        kernelRoot = kernelPageTable.rootPaddr.rawValue
        writeCr3(kernelRoot)
        announceRoot(kernelRoot)
        klog(.text("ostd-kernel: CR3 = "), .hex(kernelRoot), .text(", the root of our PageTable<KernelPtConfig>; "),
             .decimal(machine.frameCount), .text(" frames of 4 KiB"))
    }

    /// Maps `start ..< end` to `physical ...` with `property`, in the largest leaves that fit.
    func mapUntracked(_ start: UInt64, _ end: UInt64, physical: UInt64, _ property: PageProperty) {
        let range = Vaddr(start)..<Vaddr((end + 0xfff) & ~0xfff)
        guard range.lowerBound < range.upperBound else { return }
        do {
            var cursor = try kernelPageTable.cursorMut(range)
            var va = range.lowerBound.rawValue
            var pa = physical
            while va < range.upperBound.rawValue {
                let huge: UInt64 = 2 << 20
                let level: PagingLevel = va % huge == 0 && pa % huge == 0 && range.upperBound.rawValue - va >= huge ? 2 : 1
                let size = UInt64(PagingConsts.pageSize(level))
                if let failure = unsafe cursor.tryMap(MappedItem(untracked: Paddr(pa), level: level, property: property)) {
                    _ = consume failure
                    klog(.text("ostd-kernel: cannot map "), .hex(va))
                    exitVm(125)
                }
                va += size
                pa += size
            }
        } catch {
            klog(.text("ostd-kernel: bad kernel range "), .hex(start), .text(" .. "), .hex(end))
            exitVm(125)
        }
    }

    func run() -> Int {
        takeOver()
        klog(.text("ostd-kernel: "), .decimal(machine.freeFrames), .text(" frames free"))
        return 0
    }

    func trap(_ frame: UnsafeMutablePointer<TrapFrame>) {
        klog(.text("ostd-kernel: unexpected trap "), .decimal(Int(frame.pointee.vector)), .text(" error "),
             .hex(frame.pointee.errorCode), .text(" at "), .hex(frame.pointee.rip), .text(" cr2 "), .hex(readCr2()))
        exitVm(126)
    }
}

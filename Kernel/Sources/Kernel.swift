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
        // SAFETY: the boot tables map all RAM at `linearBase`, and so does the kernel's own table;
        // the VMM zeroed the machine's `machineMemory` bytes of it, which the kernel gives the
        // machine for good.
        let memory = unsafe UnsafeMutableRawPointer(bitPattern: UInt(boot.linearBase))!
        let machine: Machine
        switch Result(catching: { () throws(FrameError) in
            try Machine(memory: unsafe PhysicalMemoryRegion(base: memory, size: Int(boot.machineMemory), release: nil))
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
        // SAFETY: `address(of:)` only takes the linker symbols' addresses as numbers.
        unsafe mapUntracked(address(of: &textStart), address(of: &textEnd), physical: physical(address(of: &textStart)), .kernel(.rx))
        unsafe mapUntracked(address(of: &rodataStart), address(of: &rodataEnd), physical: physical(address(of: &rodataStart)), .kernel(.r))
        unsafe mapUntracked(address(of: &dataStart), address(of: &dataEnd), physical: physical(address(of: &dataStart)), .kernel(.rw))
        mapUntracked(boot.linearBase, boot.linearBase + boot.ramSize, physical: 0, .kernel(.rw))
        kernelRoot = kernelPageTable.rootPaddr.rawValue
        // The heap's entry, as the boot tables have it (their subtree lives in the kernel's area).
        // SAFETY: both roots are page-table nodes in RAM, under the linear map (`rootEntries`);
        // `heapRootEntry < 512`, and only this CPU writes the kernel root's entries.
        unsafe rootEntries(kernelRoot)[heapRootEntry] = rootEntries(readCr3() & ~0xfff)[heapRootEntry]
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

    /// The program running, if any.
    var process: Process?
    /// Frames handed out before the program was created: what must be outstanding again after.
    var framesBeforeProgram = 0

    func run() -> Int {
        takeOver()
        framesBeforeProgram = machine.outstandingFrames
        machine.flushCpuCaches()   // free frames all in the buddy set, as after the program
        slotCheck(Ports.recordSlots)
        // `enterUserMode` never returns, so nothing may hold the program here: `start` keeps it
        // in `process` alone, and traps find it there.
        let loaded = start()
        enterUserMode(loaded.entry, loaded.stackPointer)
        fail("returned from ring 3")
    }

    /// Creates the program's space, loads it, and activates the space.
    private func start() -> LoadedProgram {
        let process: Process
        switch Result(catching: { () throws(OSTDError) in try Process(kernel: self) }) {
        case .success(let value): process = value
        case .failure: fail("cannot create the program's address space")
        }
        self.process = process
        // SAFETY: the VMM put the program's `programSize` bytes and the NUL-terminated arguments in
        // RAM, which the linear map covers.
        let file = unsafe ElfBytes(base: UnsafeRawPointer(bitPattern: UInt(boot.linearBase + boot.programPhysical))!,
                                   count: Int(boot.programSize))
        var arguments: [UnsafeBufferPointer<UInt8>] = unsafe []
        // SAFETY: the VMM wrote `argumentCount` NUL-terminated strings there, in RAM under the linear map.
        var at = unsafe UnsafePointer<UInt8>(bitPattern: UInt(boot.linearBase + boot.argumentsPhysical))!
        for _ in 0..<boot.argumentCount {
            var length = 0
            while unsafe at[length] != 0 { length += 1 }
            unsafe arguments.append(UnsafeBufferPointer(start: at, count: length))
            unsafe at += length + 1
        }
        let loaded: LoadedProgram
        // SAFETY: `file` and `arguments` point into RAM the VMM filled and nothing frees.
        switch Result(catching: { () throws(LoadError) in try unsafe process.load(file, arguments: arguments) }) {
        case .success(let value): loaded = value
        case .failure(.notElf): fail("the program is not a static x86-64 ELF executable")
        case .failure(.badSegment): fail("the program has a segment outside its file or the user address space")
        case .failure(.noMemory): fail("no memory to load the program")
        }
        process.breakStart = loaded.imageEnd
        process.breakCurrent = loaded.imageEnd
        process.space.activate(on: 0)
        klog(.text("ostd-kernel: running the program in ring 3, CR3 = "), .hex(process.space.rootPaddr.rawValue),
             .text(" (its VmSpace's root, sharing our kernel half)"))
        return loaded
    }

    /// A trap: a system call, a page fault, or an exception that ends the program.
    func trap(_ frame: UnsafeMutablePointer<TrapFrame>) {
        // SAFETY: `frame` is the frame entry.S pushed for this trap on the kernel stack, live until
        // `iretq` pops it after this handler returns.
        guard unsafe frame.pointee.fromUser, process != nil else {
            unsafe klog(.text("ostd-kernel: trap "), .decimal(Int(frame.pointee.vector)), .text(" in the kernel, error "),
                        .hex(frame.pointee.errorCode), .text(" at "), .hex(frame.pointee.rip), .text(" cr2 "), .hex(readCr2()))
            exitVm(126)
        }
        // The program's reference ends with `handle`, so that `finish` can drop the program.
        if let status = unsafe handle(frame) { finish(status: status) }
    }

    /// Handles a trap from ring 3; returns the program's status when it has ended.
    private func handle(_ frame: UnsafeMutablePointer<TrapFrame>) -> Int? {
        // SAFETY: `frame` is the frame entry.S pushed for this trap on the kernel stack; the handler
        // reads and changes it before `iretq` pops it.
        guard let process else { return 125 }
        let vector = unsafe frame.pointee.vector
        let cr2 = readCr2()
        // Under kvm_pvm, SYSCALL jumps to LSTAR but stays at CPL 3: the fetch there faults (P|U|I)
        // with CR2 = LSTAR. That is this kernel's system-call entry too (RCX, R11 are right).
        if unsafe vector == Vector.syscall || (vector == Vector.pageFault && frame.pointee.errorCode == 0x15 && cr2 == rdmsrLstar) {
            var status: Int? = nil
            let result = unsafe process.syscall(frame, status: &status)
            if let status { return status }
            unsafe frame.pointee.rax = UInt64(bitPattern: result)
            unsafe frame.pointee.rip = frame.pointee.rcx
            unsafe frame.pointee.rflags = frame.pointee.r11 & ~0x100 | 0x2
            unsafe frame.pointee.cs = 0x33
            unsafe frame.pointee.ss = 0x2b
            return nil
        }
        if vector == Vector.pageFault {
            let code = unsafe frame.pointee.errorCode
            if trace {
                unsafe klog(.text("ostd-kernel: page fault at "), .hex(cr2), .text(" error "), .hex(code), .text(" rip "), .hex(frame.pointee.rip))
            }
            if process.resolveFault(cr2, write: code & 2 != 0, fetch: code & 0x10 != 0) { return nil }
            unsafe klog(.text("ostd-kernel: SIGSEGV: the program touched "), .hex(cr2), .text(" (error "), .hex(code),
                        .text(") at rip "), .hex(frame.pointee.rip))
            return 128 + 11
        }
        let signal: Int = switch vector {
        case Vector.divideError: 8          // SIGFPE
        case Vector.invalidOpcode: 4        // SIGILL
        case Vector.breakpoint: 5           // SIGTRAP
        default: 11                         // SIGSEGV
        }
        // SAFETY: the trap frame, live until `iretq` (see above).
        unsafe klog(.text("ostd-kernel: exception "), .decimal(Int(vector)), .text(" at "), .hex(frame.pointee.rip),
                    .text(": signal "), .decimal(signal))
        return 128 + signal
    }

    /// Ends the program: its space goes (CR3 back to the kernel's root), and every frame it used
    /// must be back.
    func finish(status: Int) -> Never {
        let served = process?.faultsServed ?? 0
        process?.close()
        process = nil
        let outstanding = machine.outstandingFrames
        guard outstanding == framesBeforeProgram else {
            klog(.text("ostd-kernel: frames leaked: "), .decimal(outstanding - framesBeforeProgram))
            exitVm(124)
        }
        machine.flushCpuCaches()
        slotCheck(Ports.compareSlots)
        klog(.text("ostd-kernel: the program exited with status "), .decimal(status), .text("; "), .decimal(served),
             .text(" page faults served; every frame it used came back ("), .decimal(outstanding),
             .text(" outstanding, as before it ran; the VMM compared each of the "), .decimal(machine.frameCount),
             .text(" slots' reference count and type with before)"))
        exitVm(status)
    }

    /// Asks the VMM to record (port 0xF2) or compare with what it recorded (port 0xF3) every
    /// frame's slot: its reference-count word and its type word. The VMM reads them straight from
    /// guest RAM, which is instant there; read here, they would take seconds of KVM's emulator.
    func slotCheck(_ port: UInt16) {
        // SAFETY: a heap request the VMM reads during the `out` below, freed after it; five words.
        let request = UnsafeMutablePointer<UInt64>.allocate(capacity: 5)
        defer { unsafe request.deallocate() }
        unsafe request[0] = machine.metadataRange.lowerBound.rawValue
        unsafe request[1] = UInt64(machine.frameCount)
        unsafe request[2] = UInt64(MetaSlot.size)
        unsafe request[3] = UInt64(MetaSlot.refCountOffset)
        unsafe request[4] = UInt64(MetaSlot.typeTagOffset)
        outl(port, UInt32(truncatingIfNeeded: physical(of: UInt64(UInt(bitPattern: request)))))
    }

    /// Hands `count` bytes at `bytes` (kernel memory) to the VMM as output on `fd`.
    func output(fd: UInt64, _ bytes: UnsafeMutableRawPointer, _ count: Int) {
        // SAFETY: a heap request the VMM reads during the `out` below, freed after it; three words.
        let request = UnsafeMutablePointer<UInt64>.allocate(capacity: 3)
        defer { unsafe request.deallocate() }
        unsafe request[0] = fd
        unsafe request[1] = physical(of: UInt64(UInt(bitPattern: bytes)))
        unsafe request[2] = UInt64(count)
        outl(Ports.output, UInt32(truncatingIfNeeded: physical(of: UInt64(UInt(bitPattern: request)))))
    }

    /// The physical address of kernel address `va`: in the image, or on the heap.
    func physical(of va: UInt64) -> UInt64 {
        if va >= boot.heapVirtual && va < boot.heapVirtual + boot.heapSize {
            return heapPhysical + (va - boot.heapVirtual)
        }
        return boot.kernelPhysical + (va - boot.kernelVirtualBase)
    }

    /// Where the heap is physically (read from the boot tables' heap entry: a 2 MiB leaf).
    var heapPhysical: UInt64 {
        // SAFETY: the boot tables' heap subtree: a level-3 and a level-2 node in RAM under the
        // linear map (`rootEntries`), never freed; indices below 512.
        let level3 = unsafe rootEntries(kernelRoot)[heapRootEntry] & PageTableEntry.childMask
        let level2 = unsafe rootEntries(level3)[0] & PageTableEntry.childMask
        return unsafe rootEntries(level2)[0] & PageTableEntry.paMask(2)
    }

    /// The 512 entries of the table at physical `paddr`, through the linear map.
    func rootEntries(_ paddr: UInt64) -> UnsafeMutablePointer<UInt64> {
        // SAFETY: `paddr` is a page-table node in RAM, which the linear map covers; its entries
        // are written only by the kernel on the only CPU.
        unsafe UnsafeMutablePointer<UInt64>(bitPattern: UInt(boot.linearBase + paddr))!
    }
}

/// LSTAR, the SYSCALL entry (read once; the kernel never changes it).
let rdmsrLstar: UInt64 = rdmsr(0xc000_0082)

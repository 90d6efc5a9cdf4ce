// The kernel's entry: it takes over the machine the VMM prepared, builds its own page table with
// the core's `PageTable<KernelPtConfig>`, moves CR3 onto it, and runs the program.

@_cdecl("kernel_main")
func kernelMain(_ raw: UnsafeMutableRawPointer) {
    // SAFETY: the VMM passes the boot information's linear-map address in rdi; the heap it names
    // is mapped and the kernel's alone.
    let info = unsafe raw.assumingMemoryBound(to: BootInfo.self)
    unsafe heapInit(UnsafeMutableRawPointer(bitPattern: UInt(info.pointee.heapVirtual))!, Int(info.pointee.heapSize))
    klog(.text("ostd-kernel: booting"))
    let boot = unsafe info.pointee
    guard boot.magic == BootInfo.expectedMagic else {
        fail("bad boot information")
    }
    // The descriptor tables first, so that a fault from here on is reported, not a triple fault.
    // SAFETY: a fresh 4 KiB page, zeroed whole, and a fresh 64 KiB stack, both never freed: the
    // descriptor tables and the trap stack live as long as the kernel.
    let page = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
    unsafe page.initializeMemory(as: UInt8.self, repeating: 0, count: 4096)
    let stack = UnsafeMutableRawPointer.allocate(byteCount: 64 << 10, alignment: 4096)
    unsafe Descriptors.install(in: page, kernelStackTop: UInt64(UInt(bitPattern: stack)) + (64 << 10))
    let kernel = Kernel(boot: boot)
    exitVm(kernel.run())
}

@_cdecl("kernel_trap")
func kernelTrap(_ raw: UnsafeMutableRawPointer) {
    // SAFETY: entry.S passes the frame it has just pushed on the kernel stack (`TrapFrame`'s layout),
    // live until `iretq` pops it after this function returns.
    let frame = unsafe raw.assumingMemoryBound(to: TrapFrame.self)
    guard let kernel = Kernel.current else {
        // During boot: report without allocating (the fault may be the allocator's).
        // SAFETY: the trap frame, as above.
        unsafe klog(.text("ostd-kernel: trap "), .decimal(Int(frame.pointee.vector)), .text(" during boot, error "),
                    .hex(frame.pointee.errorCode), .text(" at "), .hex(frame.pointee.rip), .text(" cr2 "), .hex(readCr2()))
        exitVm(125)
    }
    // SAFETY: the trap frame, as above.
    unsafe kernel.trap(frame)
}

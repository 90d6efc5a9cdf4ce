// What the VMM tells the kernel (OSTDKVM/Boot/KernelBoot.swift writes it): where memory is, where
// the kernel was loaded, and the program to run with its arguments.

/// The boot information, at the address the VMM passes in rdi (a linear-map address).
struct BootInfo {
    static let expectedMagic: UInt64 = 0x4e52_454b_4454_534f   // "OSTDKERN"
    var magic: UInt64
    /// The machine's physical memory: frames 0 ..< machineMemory / 4096, all the core's.
    var machineMemory: UInt64
    /// All guest RAM: the machine's memory, then the kernel's area.
    var ramSize: UInt64
    /// Where the kernel image starts physically; it is linked at `kernelVirtualBase`.
    var kernelPhysical: UInt64
    var kernelVirtualBase: UInt64
    /// The virtual address of physical address 0 in the boot (and the kernel's) linear map.
    var linearBase: UInt64
    /// The program's ELF file, and its arguments as NUL-terminated strings one after another.
    var programPhysical: UInt64
    var programSize: UInt64
    var argumentsPhysical: UInt64
    var argumentsSize: UInt64
    var argumentCount: UInt64
    /// Bit 0: trace system calls and page faults.
    var flags: UInt64
    /// The heap, mapped by the boot tables' root entry 254 (a positive address: see
    /// Runtime/runtime.c).
    var heapVirtual: UInt64
    var heapSize: UInt64
}

/// The root entry the heap's mapping hangs from, shared into every root the kernel loads.
let heapRootEntry = 254

// The privileged instructions and assembly entry points the kernel uses, implemented in
// Runtime/runtime.c and Runtime/entry.S (Swift has no inline assembly).

@_extern(c, "ostd_outb") func outb(_ port: UInt16, _ value: UInt8)
@_extern(c, "ostd_outl") func outl(_ port: UInt16, _ value: UInt32)
@_extern(c, "ostd_read_cr2") func readCr2() -> UInt64
@_extern(c, "ostd_read_cr3") func readCr3() -> UInt64
@_extern(c, "ostd_write_cr3") func writeCr3(_ value: UInt64)
@_extern(c, "ostd_invlpg") func invlpg(_ va: UInt64)
@_extern(c, "ostd_wrmsr") func wrmsr(_ msr: UInt32, _ value: UInt64)
@_extern(c, "ostd_rdmsr") func rdmsr(_ msr: UInt32) -> UInt64
@_extern(c, "ostd_lgdt") func lgdt(_ base: UInt64, _ limit: UInt16)
@_extern(c, "ostd_lidt") func lidt(_ base: UInt64, _ limit: UInt16)
@_extern(c, "ostd_ltr") func ltr(_ selector: UInt16)
@_extern(c, "ostd_interrupts_save_disable") func interruptsSaveDisable() -> UInt64
@_extern(c, "ostd_interrupts_restore") func interruptsRestore(_ enabled: UInt64)
@_extern(c, "ostd_halt") func haltForever()
@_extern(c, "ostd_heap_init") func heapInit(_ base: UnsafeMutableRawPointer, _ size: Int)
@_extern(c, "ostd_enter_user") func enterUserMode(_ rip: UInt64, _ rsp: UInt64)

/// Addresses the linker script and the assembly define.
@_extern(c, "__text_start") nonisolated(unsafe) var textStart: UInt8
@_extern(c, "__text_end") nonisolated(unsafe) var textEnd: UInt8
@_extern(c, "__rodata_start") nonisolated(unsafe) var rodataStart: UInt8
@_extern(c, "__rodata_end") nonisolated(unsafe) var rodataEnd: UInt8
@_extern(c, "__data_start") nonisolated(unsafe) var dataStart: UInt8
@_extern(c, "__data_end") nonisolated(unsafe) var dataEnd: UInt8
@_extern(c, "ostd_kernel_stack_top") nonisolated(unsafe) var kernelStackTopWord: UInt64

/// The address of a linker symbol.
func address(of symbol: UnsafeMutablePointer<UInt8>) -> UInt64 { UInt64(UInt(bitPattern: symbol)) }

/// The VMM's devices: the console (0xE9, one byte per `out`), program output (0xEA), the root
/// announcer (0xF0: a page-table root the VMM must find in CR3 from then on, written as two 32-bit
/// halves), the slot check (0xF2 record, 0xF3 compare) and the exit port (0xF4: the run's status).
enum Ports {
    static let console: UInt16 = 0xe9
    static let output: UInt16 = 0xea
    static let root: UInt16 = 0xf0
    static let recordSlots: UInt16 = 0xf2
    static let compareSlots: UInt16 = 0xf3
    static let exit: UInt16 = 0xf4
}

/// Tells the VMM that CR3 now holds `root`.
func announceRoot(_ root: UInt64) {
    outl(Ports.root, UInt32(truncatingIfNeeded: root))
    outl(Ports.root, UInt32(truncatingIfNeeded: root >> 32))
}

/// Stops the CPU for good.
func halt() -> Never {
    haltForever()
    fatalError("hlt returned")
}

/// Ends the run with `status` (the program's, as a shell reports it).
func exitVm(_ status: Int) -> Never {
    outl(Ports.exit, UInt32(truncatingIfNeeded: status))
    halt()
}

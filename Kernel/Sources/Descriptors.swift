// The GDT (Linux's layout: kernel CS 0x10, DS 0x18, user DS 0x2b, user CS 0x33, TSS 0x40), the TSS
// (RSP0: the stack ring-3 traps arrive on), the IDT (#DE, #DB, #BP, #UD, #GP, #PF and the rest,
// each to its stub in Runtime/entry.S; `int3` callable from ring 3) and the SYSCALL MSRs.

@_extern(c, "ostd_trap_0") func trap0()
@_extern(c, "ostd_trap_1") func trap1()
@_extern(c, "ostd_trap_2") func trap2()
@_extern(c, "ostd_trap_3") func trap3()
@_extern(c, "ostd_trap_4") func trap4()
@_extern(c, "ostd_trap_5") func trap5()
@_extern(c, "ostd_trap_6") func trap6()
@_extern(c, "ostd_trap_7") func trap7()
@_extern(c, "ostd_trap_8") func trap8()
@_extern(c, "ostd_trap_9") func trap9()
@_extern(c, "ostd_trap_10") func trap10()
@_extern(c, "ostd_trap_11") func trap11()
@_extern(c, "ostd_trap_12") func trap12()
@_extern(c, "ostd_trap_13") func trap13()
@_extern(c, "ostd_trap_14") func trap14()
@_extern(c, "ostd_trap_15") func trap15()
@_extern(c, "ostd_trap_16") func trap16()
@_extern(c, "ostd_trap_17") func trap17()
@_extern(c, "ostd_trap_18") func trap18()
@_extern(c, "ostd_trap_19") func trap19()
@_extern(c, "ostd_syscall_entry") func syscallEntry()

/// The descriptor tables, in one page of the kernel's heap that lives as long as the kernel.
struct Descriptors {
    static let tssSelector: UInt16 = 0x40

    /// Builds the tables in `page` (4 KiB, zeroed) and loads them; `kernelStackTop` becomes
    /// RSP0 and the SYSCALL entry's stack.
    static func install(in page: UnsafeMutableRawPointer, kernelStackTop: UInt64) {
        // SAFETY: `page` is a zeroed 4 KiB heap page the kernel never frees (the caller's, see
        // below); these are offsets inside it.
        let gdt = unsafe page
        let tss = unsafe page + 0x100
        let idt = unsafe page + 0x200   // 20 gates of 16 bytes
        let gdtEntries: [(Int, UInt64)] = [
            (0x10, 0x00af_9b00_0000_ffff),   // 64-bit code, DPL 0
            (0x18, 0x00cf_9300_0000_ffff),   // data, DPL 0
            (0x28, 0x00cf_f300_0000_ffff),   // data, DPL 3 (0x2b)
            (0x30, 0x00af_fb00_0000_ffff),   // 64-bit code, DPL 3 (0x33)
        ]
        // SAFETY: `page` is a zeroed 4 KiB heap page the kernel never frees: the GDT at 0 ..< 0x50,
        // the TSS at 0x100 ..< 0x168 and the IDT at 0x200 ..< 0x340 lie inside it.
        for (offset, descriptor) in gdtEntries { unsafe gdt.storeBytes(of: descriptor, toByteOffset: offset, as: UInt64.self) }
        let tssAddress = UInt64(UInt(bitPattern: tss))
        let low: UInt64 = 0x67 | (tssAddress & 0xff_ffff) << 16 | 0x89 << 40 | (tssAddress >> 24 & 0xff) << 56
        // SAFETY: as above: offsets 0x40 ..< 0x50 of the GDT, 4 and 102 of the TSS, in the page.
        unsafe gdt.storeBytes(of: low, toByteOffset: Int(tssSelector), as: UInt64.self)
        unsafe gdt.storeBytes(of: tssAddress >> 32, toByteOffset: Int(tssSelector) + 8, as: UInt64.self)
        unsafe tss.storeBytes(of: kernelStackTop, toByteOffset: 4, as: UInt64.self)       // RSP0
        unsafe tss.storeBytes(of: UInt16(0x68), toByteOffset: 102, as: UInt16.self)      // no I/O bitmap

        let stubs: [@convention(c) () -> Void] = [trap0, trap1, trap2, trap3, trap4, trap5, trap6, trap7, trap8, trap9,
                                                  trap10, trap11, trap12, trap13, trap14, trap15, trap16, trap17, trap18, trap19]
        for (vector, stub) in stubs.enumerated() {
            // SAFETY: a `@convention(c)` function value is the code address of its symbol; gate
            // `vector < 20` lies at 0x200 + 16 * vector < 0x340, inside the page.
            let target = UInt64(UInt(bitPattern: unsafe unsafeBitCast(stub, to: UnsafeRawPointer.self)))
            let dpl: UInt64 = vector == 3 ? 3 : 0
            let gate = target & 0xffff | 0x10 << 16 | (0x8e | dpl << 5) << 40 | (target >> 16 & 0xffff) << 48
            unsafe idt.storeBytes(of: gate, toByteOffset: vector * 16, as: UInt64.self)
            unsafe idt.storeBytes(of: target >> 32, toByteOffset: vector * 16 + 8, as: UInt64.self)
        }
        lgdt(UInt64(UInt(bitPattern: gdt)), 0x4f)
        ltr(tssSelector)
        lidt(UInt64(UInt(bitPattern: idt)), UInt16(stubs.count * 16 - 1))

        // SYSCALL: EFER.SCE, the entry, CS/SS for kernel (0x10/0x18) and user (0x33/0x2b), and
        // IF, TF, DF, AC cleared on entry.
        // SAFETY: a `@convention(c)` function value is the code address of its symbol.
        wrmsr(0xc000_0082, UInt64(UInt(bitPattern: unsafe unsafeBitCast(syscallEntry as @convention(c) () -> Void, to: UnsafeRawPointer.self))))
        wrmsr(0xc000_0081, UInt64(0x23) << 48 | UInt64(0x10) << 32)
        wrmsr(0xc000_0084, 0x4_0700)
        kernelStackTopWord = kernelStackTop
    }
}

// The probe kernel's code: a loop that performs one access per probe descriptor and records what
// happened, the entry to ring 3, and the exception handlers. About 500 bytes, assembled by
// `X86Assembler` from the listing below; the same bytes run at CPL 0 (from a supervisor mapping)
// and at CPL 3 (from a user mapping of the same frame): every reference is RIP-relative except
// the exception record, which is in the top 2 GiB and so addressable as a sign-extended disp32.
//
// Registers of the loop (set by the VMM): rsi = next descriptor, rdi = next result, rcx = probes
// left. Each probe sets r15 to its recovery point first; the page-fault handler (CPL 0) stores the
// error code and CR2 in the result at rdi and returns to r15, which resets rsp from rbp (a fetch
// that faults has pushed a return address). Every other exception stores its vector and the two
// words on top of its frame in the exception record and halts: the VMM then knows which probe it
// was (the first without a result). The loop ends with `ud2`, whose handler records vector 6 and
// halts, so a finished run is "halt, vector 6, at `done`". (Not `int3`: under kvm_pvm ring 0 runs
// in KVM's instruction emulator, which cannot execute a software interrupt in protected mode.)

import OSTDMemory

/// A probe descriptor in guest memory: 16 bytes.
enum ProbeDescriptor {
    static var size: Int { 16 }
    /// Offset 0: the address (8 bytes). Offset 8: the kind (0 read, 1 write, 2 fetch). Offset 9:
    /// the byte a write stores (the byte the software says is there, so memory is unchanged).
    static var kindOffset: Int { 8 }
    static var valueOffset: Int { 9 }
}

/// A probe result in guest memory: 32 bytes.
enum ProbeResultSlot {
    static var size: Int { 32 }
    /// Offset 0: 0 not run, 1 completed, 2 page fault. Offset 8: the byte read (completed) or the
    /// error code (fault). Offset 16: CR2 (fault).
    static var completed: UInt64 { 1 }
    static var pageFault: UInt64 { 2 }
}

/// The assembled probe program and the offsets of its entry points.
struct ProbeProgram {
    let bytes: [UInt8]
    /// The probe loop (CPL 0 or 3).
    let probeLoop: Int
    /// `ud2` after the last probe.
    let done: Int
    /// Drops to CPL 3 at rax with stack rdx (CPL 0).
    let enterUser: Int
    /// The handler of each vector 0 ..< 32.
    let handlers: [Int]

    /// Assembles the program; `exceptionRecord` is the (top 2 GiB) address of 24 writable bytes.
    init(exceptionRecord: Int32) {
        var a = X86Assembler()

        // The probe loop.
        a.label("loop")
        a.movRegReg(.rbp, .rsp)                 // mov rbp, rsp        ; the stack to recover
        a.label("next")
        a.test(.rcx)                            // test rcx, rcx       ; probes left?
        a.je("done")                            // je done
        a.movLoad(.rbx, .rsi)                   // mov rbx, [rsi]      ; the address
        a.movzxByte(.rax, .rsi, Int8(ProbeDescriptor.kindOffset))    // movzx eax, byte [rsi+8]
        a.movzxByte(.rdx, .rsi, Int8(ProbeDescriptor.valueOffset))   // movzx edx, byte [rsi+9]
        a.leaRipRelative(.r15, "recover")       // lea r15, [rip+recover] ; where a fault resumes
        a.cmpAl(1)                              // cmp al, 1
        a.je("write")                           // je write
        a.cmpAl(2)                              // cmp al, 2
        a.je("fetch")                           // je fetch
        a.movzxByte(.rax, .rbx)                 // movzx eax, byte [rbx] ; the read probe
        a.jmp("ok")                             // jmp ok
        a.label("write")
        a.movStoreByte(.rbx, .rdx)              // mov [rbx], dl       ; the write probe
        a.jmp("ok")                             // jmp ok
        a.label("fetch")
        a.xorEaxEax()                           // xor eax, eax
        a.call(.rbx)                            // call rbx            ; the fetch probe: a `ret` waits there
        a.label("ok")
        a.movStore(.rdi, 8, .rax)               // mov [rdi+8], rax    ; the byte read
        a.movStoreImmediate(.rdi, 0, Int32(ProbeResultSlot.completed))  // mov qword [rdi], 1
        a.label("recover")
        a.movRegReg(.rsp, .rbp)                 // mov rsp, rbp
        a.add(.rsi, Int8(ProbeDescriptor.size)) // add rsi, 16
        a.add(.rdi, Int8(ProbeResultSlot.size)) // add rdi, 32
        a.dec(.rcx)                             // dec rcx
        a.jmp("next")                           // jmp next
        a.label("done")
        a.ud2()                                 // ud2                 ; finished: #UD

        // Entry to ring 3 (CPL 0): an iretq frame for user SS:RSP, RFLAGS, CS:RIP.
        a.label("enterUser")
        a.pushImmediate(Int8(GuestSelectors.userData))   // push 0x2b   ; SS
        a.push(.rdx)                                     // push rdx    ; RSP
        a.pushImmediate(2)                               // push 2      ; RFLAGS: IF clear
        a.pushImmediate(Int8(GuestSelectors.userCode))   // push 0x33   ; CS
        a.push(.rax)                                     // push rax    ; RIP
        a.iretq()                                        // iretq

        // #PF (vector 14): record the fault in the probe's result and resume at r15.
        a.label("vector14")
        a.pop(.rax)                             // pop rax             ; the error code
        a.movStore(.rdi, 8, .rax)               // mov [rdi+8], rax
        a.movRaxCr2()                           // mov rax, cr2
        a.movStore(.rdi, 16, .rax)              // mov [rdi+16], rax
        a.movStoreImmediate(.rdi, 0, Int32(ProbeResultSlot.pageFault))  // mov qword [rdi], 2
        a.movStore(.rsp, 0, .r15)               // mov [rsp], r15      ; return to the recovery point
        a.iretq()                               // iretq

        // Every other vector: `mov eax, vector; jmp record`.
        for vector in 0..<32 where vector != 14 {
            a.label("vector\(vector)")
            a.movEaxImmediate(Int32(vector))    // mov eax, vector
            a.jmp("record")                     // jmp record
        }
        a.label("record")
        a.movStoreAbsoluteEax(exceptionRecord)              // mov [record], eax      ; the vector
        a.movLoad(.rax, .rsp)                               // mov rax, [rsp]
        a.movStoreAbsolute(exceptionRecord + 8, .rax)       // mov [record+8], rax   ; error code or RIP
        a.movLoad(.rax, .rsp, 8)                            // mov rax, [rsp+8]
        a.movStoreAbsolute(exceptionRecord + 16, .rax)      // mov [record+16], rax  ; RIP or CS
        a.label("halt")
        a.hlt()                                             // hlt
        a.jmp("halt")                                       // jmp halt

        bytes = a.finish()
        probeLoop = a.offset(of: "loop")
        done = a.offset(of: "done")
        enterUser = a.offset(of: "enterUser")
        handlers = (0..<32).map { a.offset(of: "vector\($0)") }
        precondition(bytes.count <= pageSize, "the probe program fits in one page")
    }
}

/// The GDT's selectors, in Linux's layout (kernel CS 0x10, DS 0x18, user DS 0x2b, CS 0x33).
enum GuestSelectors {
    static var kernelCode: UInt16 { 0x10 }
    static var kernelData: UInt16 { 0x18 }
    static var userData: UInt16 { 0x2b }
    static var userCode: UInt16 { 0x33 }
    static var tss: UInt16 { 0x40 }
}

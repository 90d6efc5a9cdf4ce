// The registers a trap saved (Runtime/entry.S builds the frame): what the exception and system-call
// handlers read and change before `iretq` returns to where the trap came from.

struct TrapFrame {
    var r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax: UInt64
    var vector: UInt64
    var errorCode: UInt64
    var rip, cs, rflags, rsp, ss: UInt64

    /// Whether the trap came from ring 3.
    var fromUser: Bool { cs & 3 == 3 }
}

/// The x86 exception vectors the kernel handles.
enum Vector {
    static let divideError: UInt64 = 0
    static let breakpoint: UInt64 = 3
    static let invalidOpcode: UInt64 = 6
    static let generalProtection: UInt64 = 13
    static let pageFault: UInt64 = 14
    /// The SYSCALL entry's frames (not a hardware vector).
    static let syscall: UInt64 = 0x80
}

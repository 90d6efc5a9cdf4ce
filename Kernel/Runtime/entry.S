// The kernel's entry points in assembly: `_start` (from the VMM: long mode, paging on, rdi = the
// boot information), the exception stubs that build a `TrapFrame` and call `kernel_trap`, the
// SYSCALL entry, and the return to ring 3.
//
// A trap frame, from the top of the stack down: ss, rsp, rflags, cs, rip (pushed by the CPU),
// the error code (the CPU's, or 0), the vector, then rax ... r15 (pushed here), so that `rsp`
// points at r15 when `kernel_trap(frame)` is called.

    .section .text.boot, "ax"
    .global _start
_start:
    lea boot_stack_top(%rip), %rsp
    xor %ebp, %ebp
    call kernel_main
1:  hlt
    jmp 1b

    .text
// Exception stubs: vectors with an error code push only the vector.
.macro TRAP vector, has_error
    .global ostd_trap_\vector
ostd_trap_\vector:
    .if \has_error == 0
    pushq $0
    .endif
    pushq $\vector
    jmp trap_common
.endm
    TRAP 0, 0
    TRAP 1, 0
    TRAP 2, 0
    TRAP 3, 0
    TRAP 4, 0
    TRAP 5, 0
    TRAP 6, 0
    TRAP 7, 0
    TRAP 8, 1
    TRAP 9, 0
    TRAP 10, 1
    TRAP 11, 1
    TRAP 12, 1
    TRAP 13, 1
    TRAP 14, 1
    TRAP 15, 0
    TRAP 16, 0
    TRAP 17, 1
    TRAP 18, 0
    TRAP 19, 0

trap_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    incq trap_depth(%rip)
    cmpq $1, trap_depth(%rip)
    jne nested_trap
    mov 120(%rsp), %rax
    mov %rax, first_trap(%rip)
    mov 136(%rsp), %rax
    mov %rax, first_trap+8(%rip)
    mov %rsp, %rdi
    call kernel_trap
    decq trap_depth(%rip)
    .global ostd_trap_return
ostd_trap_return:
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    iretq

// A trap while handling a trap: the kernel itself is broken. Halt with the frame on the stack
// (the VMM reports the registers).
nested_trap:
    mov 120(%rsp), %rax     // vector
    mov 128(%rsp), %rbx     // error code
    mov 136(%rsp), %rcx     // rip
    mov %cr2, %rdx
    mov first_trap(%rip), %r8
    mov first_trap+8(%rip), %r9
1:  hlt
    jmp 1b

// SYSCALL (on hosts where it reaches CPL 0): rcx = user rip, r11 = user rflags, rsp still the
// user's. Switch to the kernel stack and build the same frame as a trap, vector 0x80.
    .global ostd_syscall_entry
ostd_syscall_entry:
    mov %rsp, syscall_user_rsp(%rip)
    mov ostd_kernel_stack_top(%rip), %rsp
    pushq $0x2b
    pushq syscall_user_rsp(%rip)
    push %r11
    pushq $0x33
    push %rcx
    pushq $0
    pushq $0x80
    jmp trap_common

// Enters ring 3 at rdi with stack rsi, every other register zero (a new program's state).
    .global ostd_enter_user
ostd_enter_user:
    pushq $0x2b
    push %rsi
    pushq $0x202 & ~0x200
    pushq $0x33
    push %rdi
    xor %eax, %eax
    xor %ebx, %ebx
    xor %ecx, %ecx
    xor %edx, %edx
    xor %esi, %esi
    xor %edi, %edi
    xor %ebp, %ebp
    xor %r8d, %r8d
    xor %r9d, %r9d
    xor %r10d, %r10d
    xor %r11d, %r11d
    xor %r12d, %r12d
    xor %r13d, %r13d
    xor %r14d, %r14d
    xor %r15d, %r15d
    iretq

    .data
    .align 8
trap_depth: .quad 0
first_trap: .quad 0, 0
syscall_user_rsp: .quad 0
    .global ostd_kernel_stack_top
ostd_kernel_stack_top: .quad 0

    .bss
    .align 16
boot_stack: .skip 262144
    .global boot_stack_top
boot_stack_top:

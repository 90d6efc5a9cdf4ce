/* rt.h: the whole run-time of the test programs. No libc: an entry point, system-call stubs
 * (the `syscall` instruction, Linux x86-64 numbers), and a few printing helpers. Every program
 * is one .c file that includes this header once, so the helpers are static.
 *
 * Output goes straight to fd 1 with write(2), unbuffered, so a line printed just before a fatal
 * fault is out before the signal. Nothing printed may depend on the address-space layout. */

typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned char u8;

#define SYS_read 0
#define SYS_write 1
#define SYS_mmap 9
#define SYS_mprotect 10
#define SYS_munmap 11
#define SYS_brk 12
#define SYS_madvise 28
#define SYS_exit 60
#define SYS_exit_group 231

#define PROT_NONE 0x0
#define PROT_READ 0x1
#define PROT_WRITE 0x2
#define MAP_PRIVATE 0x02
#define MAP_FIXED 0x10
#define MAP_ANONYMOUS 0x20
#define MAP_FIXED_NOREPLACE 0x100000
#define MADV_DONTNEED 4

#define EEXIST 17
#define EINVAL 22

#define PAGE 4096UL
#define UNUSED __attribute__((unused))

static inline long syscall6(long n, long a, long b, long c, long d, long e, long f) {
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

UNUSED static long sys_write(int fd, const void *buf, u64 len) { return syscall6(SYS_write, fd, (long)buf, (long)len, 0, 0, 0); }
UNUSED static long sys_mmap(void *addr, u64 len, int prot, int flags) {
    return syscall6(SYS_mmap, (long)addr, (long)len, prot, flags, -1, 0);
}
UNUSED static long sys_munmap(void *addr, u64 len) { return syscall6(SYS_munmap, (long)addr, (long)len, 0, 0, 0, 0); }
UNUSED static long sys_mprotect(void *addr, u64 len, int prot) { return syscall6(SYS_mprotect, (long)addr, (long)len, prot, 0, 0, 0); }
UNUSED static long sys_madvise(void *addr, u64 len, int advice) { return syscall6(SYS_madvise, (long)addr, (long)len, advice, 0, 0, 0); }
UNUSED static long sys_brk(void *addr) { return syscall6(SYS_brk, (long)addr, 0, 0, 0, 0, 0); }
__attribute__((noreturn)) static void sys_exit_group(int status) {
    for (;;) syscall6(SYS_exit_group, status, 0, 0, 0, 0, 0);
}

/* An anonymous private read-write mapping anywhere. */
UNUSED static long map_anon(u64 len) { return sys_mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS); }
/* A system call's result is an error when it is in [-4095, -1]. */
UNUSED static int is_err(long r) { return (u64)r > (u64)-4096L; }

/* The compiler may emit calls to these even with -fno-builtin (structure copies, zeroing). */
void *memset(void *d, int c, u64 n) {
    volatile u8 *p = d;
    while (n--) *p++ = (u8)c;
    return d;
}
void *memcpy(void *d, const void *s, u64 n) {
    volatile u8 *p = d;
    const u8 *q = s;
    while (n--) *p++ = *q++;
    return d;
}

static u64 str_len(const char *s) {
    u64 n = 0;
    while (s[n]) n++;
    return n;
}
UNUSED static void put(const char *s) { sys_write(1, s, str_len(s)); }
UNUSED static void put_udec(u64 v) {
    char buf[24];
    int i = 24;
    do { buf[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    sys_write(1, buf + i, (u64)(24 - i));
}
UNUSED static void put_dec(long v) {
    if (v < 0) { put("-"); put_udec((u64)0 - (u64)v); } else put_udec((u64)v);
}
UNUSED static void put_hex(u64 v) {
    char buf[18];
    int i = 18;
    do { buf[--i] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
    buf[--i] = 'x';
    buf[--i] = '0';
    sys_write(1, buf + i, (u64)(18 - i));
}
UNUSED static void nl(void) { put("\n"); }

/* Prints "FAIL: what" and exits with status 1. */
__attribute__((noreturn)) UNUSED static void fail(const char *what) {
    put("FAIL: ");
    put(what);
    nl();
    sys_exit_group(1);
}
UNUSED static void check(int ok, const char *what) { if (!ok) fail(what); }

int main(int argc, char **argv);

/* Called from _start with the initial stack pointer: argc, then argv[], NULL, envp[], NULL, auxv. */
__attribute__((noreturn, used)) static void start_c(long *sp) {
    int argc = (int)sp[0];
    char **argv = (char **)(sp + 1);
    sys_exit_group(main(argc, argv));
}

/* The entry point: no frame, the stack aligned to 16 bytes before the call (the ABI's rule). */
__asm__(".text\n"
        ".globl _start\n"
        "_start:\n"
        "    xor %rbp, %rbp\n"
        "    mov %rsp, %rdi\n"
        "    and $-16, %rsp\n"
        "    call start_c\n"
        "    hlt\n");

// What Embedded Swift and the kernel need from C on bare metal: memory functions, an allocator,
// a console byte sink, the stack protector's symbols, and the few privileged instructions Swift
// cannot express (port output, control registers, MSRs, descriptor tables, interrupts).
//
// Built with -ffreestanding -mgeneral-regs-only: no SSE anywhere, since KVM's instruction emulator
// (which runs ring 0 under kvm_pvm) fails on many SSE instructions.

#include <stddef.h>
#include <stdint.h>

// MARK: Port I/O and privileged instructions

void ostd_outb(uint16_t port, uint8_t value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }
void ostd_outl(uint16_t port, uint32_t value) { __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port)); }
uint64_t ostd_read_cr2(void) { uint64_t v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
uint64_t ostd_read_cr3(void) { uint64_t v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
void ostd_write_cr3(uint64_t v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
void ostd_invlpg(uint64_t va) { __asm__ volatile("invlpg (%0)" : : "r"(va) : "memory"); }
void ostd_wrmsr(uint32_t msr, uint64_t value) {
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)value), "d"((uint32_t)(value >> 32)));
}
uint64_t ostd_rdmsr(uint32_t msr) {
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return (uint64_t)hi << 32 | lo;
}
struct __attribute__((packed)) descriptor_pointer { uint16_t limit; uint64_t base; };
void ostd_lgdt(uint64_t base, uint16_t limit) {
    struct descriptor_pointer p = { limit, base };
    __asm__ volatile("lgdt %0" : : "m"(p));
    // Reload CS with 0x10 (a far return) and the data segments with 0x18.
    __asm__ volatile(
        "pushq $0x10\n lea 1f(%%rip), %%rax\n pushq %%rax\n lretq\n 1:\n"
        "mov $0x18, %%ax\n mov %%ax, %%ds\n mov %%ax, %%es\n mov %%ax, %%ss\n"
        "xor %%eax, %%eax\n mov %%ax, %%fs\n mov %%ax, %%gs\n" : : : "rax", "memory");
}
void ostd_lidt(uint64_t base, uint16_t limit) {
    struct descriptor_pointer p = { limit, base };
    __asm__ volatile("lidt %0" : : "m"(p));
}
void ostd_ltr(uint16_t selector) { __asm__ volatile("ltr %0" : : "r"(selector)); }
/// Disables interrupts and returns whether they were enabled.
uint64_t ostd_interrupts_save_disable(void) {
    uint64_t flags;
    __asm__ volatile("pushfq\n pop %0\n cli" : "=r"(flags) : : "memory");
    return flags & 0x200;
}
void ostd_interrupts_restore(uint64_t enabled) { if (enabled) __asm__ volatile("sti" : : : "memory"); }
void ostd_halt(void) { for (;;) __asm__ volatile("cli\n hlt"); }

// MARK: Memory functions (byte loops the compiler may not turn back into calls)

// Whole words with `rep stosq` / `rep movsq`: under kvm_pvm ring 0 runs in KVM's emulator, which
// repeats a string instruction without decoding it again, far faster than a loop of moves.
void *memset(void *dst, int c, size_t n) {
    unsigned char *d = dst;
    if (((uintptr_t)d & 7) == 0 && n >= 64) {
        uint64_t word = (uint64_t)(unsigned char)c * 0x0101010101010101ull;
        size_t words = n / 8;
        __asm__ volatile("rep stosq" : "+D"(d), "+c"(words) : "a"(word) : "memory");
        n &= 7;
    }
    while (n--) *d++ = (unsigned char)c;
    return dst;
}

void *memcpy(void *dst, const void *src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    if ((((uintptr_t)d | (uintptr_t)s) & 7) == 0 && n >= 64) {
        size_t words = n / 8;
        __asm__ volatile("rep movsq" : "+D"(d), "+S"(s), "+c"(words) : : "memory");
        n &= 7;
    }
    while (n--) *d++ = *s++;
    return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (d == s || n == 0) return dst;
    if (d < s || d >= s + n) return memcpy(dst, src, n);
    while (n--) d[n] = s[n];
    return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
    const unsigned char *x = a, *y = b;
    for (; n; n--, x++, y++) if (*x != *y) return *x - *y;
    return 0;
}

size_t strlen(const char *s) { size_t n = 0; while (s[n]) n++; return n; }

// MARK: The console

int putchar(int c) { ostd_outb(0xe9, (uint8_t)c); return c; }

// MARK: The allocator: size classes of 16 B to 64 KiB with free lists, carved from the heap.
//
// The heap is not in the kernel image: the VMM maps it at a positive address (0x7f00_0000_0000,
// root entry 254), because Embedded Swift's runtime, inlined into every retain, treats an object
// at a negative address (the kernel half) as a tagged value that is never retained or released:
// objects there could never be freed and copy-on-write would see every buffer as unique.

static unsigned char *heap;
static size_t heap_size;
static size_t heap_used;
static void *free_lists[13];   // 16 << class

void ostd_heap_init(void *base, size_t size) { heap = base; heap_size = size; }

struct header { uint64_t class_index; uint64_t offset; };   // just before the block

static int class_of(size_t size) {
    int c = 0;
    while (((size_t)16 << c) < size) c++;
    return c;
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    if (alignment < 16) alignment = 16;
    if (size == 0) size = 1;
    int c = class_of(size + alignment);
    if (c >= 13) {   // large: carved, never reused
        size_t start = (heap_used + sizeof(struct header) + alignment - 1) & ~(alignment - 1);
        if (start + size > heap_size) return 12;
        heap_used = start + size;
        struct header *h = (struct header *)(heap + start) - 1;
        h->class_index = 99;
        h->offset = 0;
        *out = heap + start;
        return 0;
    }
    size_t block_size = (size_t)16 << c;
    unsigned char *block = free_lists[c];
    if (block) {
        free_lists[c] = *(void **)block;
    } else {
        size_t start = (heap_used + 15) & ~(size_t)15;
        if (start + block_size > heap_size) return 12;
        heap_used = start + block_size;
        block = heap + start;
    }
    // The user pointer: aligned, with room for the header before it.
    uintptr_t user = ((uintptr_t)block + sizeof(struct header) + alignment - 1) & ~(uintptr_t)(alignment - 1);
    struct header *h = (struct header *)user - 1;
    h->class_index = (uint64_t)c;
    h->offset = user - (uintptr_t)block;
    *out = (void *)user;
    return 0;
}

void free(void *p) {
    if (!p) return;
    struct header *h = (struct header *)p - 1;
    if (h->class_index >= 13) return;
    unsigned char *block = (unsigned char *)p - h->offset;
    int c = (int)h->class_index;
    *(void **)block = free_lists[c];
    free_lists[c] = block;
}

void *malloc(size_t size) { void *p = 0; return posix_memalign(&p, 16, size) ? 0 : p; }

// MARK: Randomness (hash seeds): a fixed xorshift stream, so that every boot is the same

void arc4random_buf(void *buffer, size_t n) {
    static uint64_t state = 0x9e3779b97f4a7c15ull;
    unsigned char *b = buffer;
    while (n--) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b++ = (unsigned char)state;
    }
}

// MARK: The stack protector

uintptr_t __stack_chk_guard = 0x595e9fbd94fda766ull;
void __stack_chk_fail(void) {
    const char *m = "kernel: stack smashing detected\n";
    while (*m) putchar(*m++);
    ostd_halt();
}

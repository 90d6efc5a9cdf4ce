/* brk.c: the program break. brk(0) returns the initial break ("base"), which is page-aligned
 * and above an empty heap; a request below base fails and returns the current break
 * unchanged; growing by 1 MiB + 1 byte returns exactly the requested break (not rounded up);
 * every page of the grown area reads zero at first touch and keeps a written value, and the rest
 * of the last page (past the break) is accessible too, because memory comes in pages; shrinking
 * to base + 4096 returns that break and keeps the first page's data; growing again by 64 KiB
 * gives a re-grown area (beyond the first page) that reads zero, because the shrink discarded
 * those pages. Breaks are printed as differences from base, never as addresses. */
#include "rt.h"

int main(int argc UNUSED, char **argv UNUSED) {
    long base = sys_brk(0);
    check(base > 0 && !is_err(base), "brk(0)");
    put("brk(0): base is page-aligned: ");
    put((base & (PAGE - 1)) == 0 ? "yes\n" : "no\n");

    long r = sys_brk((void *)(base - PAGE));
    put("brk(base - 4096) - base = ");
    put_dec(r - base);
    nl();

    u64 grow = (1UL << 20) + 1;
    r = sys_brk((void *)(base + grow));
    put("brk(base + 1 MiB + 1) - base = ");
    put_dec(r - base);
    nl();
    check(r == base + (long)grow, "grow");
    put("brk(0) - base = ");
    put_dec(sys_brk(0) - base);
    nl();

    volatile u8 *p = (volatile u8 *)base;
    u64 pages = 0, zero = 0, good = 0, sum = 0;
    for (u64 off = 0; off < grow; off += PAGE, pages++) {
        if (p[off] == 0) zero++;
        p[off] = (u8)(pages * 3 + 1);
    }
    for (u64 off = 0, i = 0; off < grow; off += PAGE, i++) {
        sum += p[off];
        if (p[off] == (u8)(i * 3 + 1)) good++;
    }
    put("grown area: ");
    put_udec(pages);
    put(" pages touched, ");
    put_udec(zero);
    put(" read zero first, ");
    put_udec(good);
    put(" read back, byte sum ");
    put_udec(sum);
    nl();
    check(pages == 257 && zero == 257 && good == 257, "grown area");
    /* The break is not page-aligned, but memory is mapped in whole pages: the rest of the page
     * that holds the last byte below the break is there too (Linux maps up to PAGE_ALIGN(brk)). */
    put("byte at base + 1 MiB + 4095 (past the break, same page): ");
    put_hex(p[grow + PAGE - 2]);
    nl();

    r = sys_brk((void *)(base + PAGE));
    put("shrink: brk(base + 4096) - base = ");
    put_dec(r - base);
    nl();
    check(r == base + (long)PAGE, "shrink");
    put("first page after shrink: byte 0 = ");
    put_hex(p[0]);
    nl();

    r = sys_brk((void *)(base + PAGE + 0x10000));
    put("grow again: brk(base + 4096 + 64 KiB) - base = ");
    put_dec(r - base);
    nl();
    check(r == base + (long)PAGE + 0x10000, "grow again");
    u64 nonzero = 0;
    for (u64 off = PAGE; off < PAGE + 0x10000; off++)
        if (p[off] != 0) nonzero++;
    put("re-grown area beyond the first page: ");
    put_udec(nonzero);
    put(" non-zero bytes of 65536\n");
    put("first page: byte 0 = ");
    put_hex(p[0]);
    nl();
    check(nonzero == 0 && p[0] == 1, "re-grown area");
    return 0;
}

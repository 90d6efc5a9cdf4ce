/* munmap-middle.c: munmap of a range in the middle of a mapping splits it. Maps 16 pages, writes
 * a distinct word into each, unmaps pages 6-9 (munmap returns 0), and checks that pages 0-5 and
 * 10-15 still hold their values. Unmapping the same (now empty) range again also returns 0, as
 * Linux does. Then touches page 7, which is no longer mapped: the program must die of SIGSEGV
 * (status 139), so the last line printed is the one announcing the touch. */
#include "rt.h"

int main(int argc UNUSED, char **argv UNUSED) {
    long r = map_anon(16 * PAGE);
    check(!is_err(r), "mmap 16 pages");
    volatile u8 *p = (volatile u8 *)r;
    for (u64 i = 0; i < 16; i++) *(volatile u64 *)(p + i * PAGE + 8 * i) = 0x1000 + i;
    put("mapped and wrote 16 pages\n");

    r = sys_munmap((void *)(p + 6 * PAGE), 4 * PAGE);
    put("munmap pages 6-9: ");
    put_dec(r);
    nl();
    check(r == 0, "munmap");

    u64 kept = 0;
    for (u64 i = 0; i < 16; i++) {
        if (i >= 6 && i <= 9) continue;
        if (*(volatile u64 *)(p + i * PAGE + 8 * i) == 0x1000 + i) kept++;
    }
    put("pages 0-5 and 10-15 kept their values: ");
    put_udec(kept);
    put(" of 12\n");
    check(kept == 12, "a page outside the hole changed");

    r = sys_munmap((void *)(p + 6 * PAGE), 4 * PAGE);
    put("munmap pages 6-9 again: ");
    put_dec(r);
    nl();
    check(r == 0, "second munmap");

    put("touching page 7 (unmapped): expect SIGSEGV\n");
    *(volatile u64 *)(p + 7 * PAGE) = 1;
    put("FAIL: the write to an unmapped page succeeded\n");
    return 1;
}

/* mprotect-write.c: mprotect(PROT_READ) takes write permission away from pages already
 * written. Maps 2 pages read-write, writes a byte pattern, makes them read-only (mprotect
 * returns 0), reads the pattern back, and then writes to the second page: the program must
 * die of SIGSEGV (status 139). */
#include "rt.h"

int main(int argc UNUSED, char **argv UNUSED) {
    long r = map_anon(2 * PAGE);
    check(!is_err(r), "mmap 2 pages");
    volatile u8 *p = (volatile u8 *)r;
    for (u64 i = 0; i < 2 * PAGE; i++) p[i] = (u8)(i * 7 + 1);
    put("wrote 2 pages\n");

    r = sys_mprotect((void *)p, 2 * PAGE, PROT_READ);
    put("mprotect PROT_READ: ");
    put_dec(r);
    nl();
    check(r == 0, "mprotect");

    u64 good = 0;
    for (u64 i = 0; i < 2 * PAGE; i++)
        if (p[i] == (u8)(i * 7 + 1)) good++;
    put("read back after mprotect: ");
    put_udec(good);
    put(" of 8192 bytes match\n");
    check(good == 2 * PAGE, "read back");

    put("writing to the read-only page: expect SIGSEGV\n");
    p[PAGE + 100] = 0;
    put("FAIL: the write to a read-only page succeeded\n");
    return 1;
}

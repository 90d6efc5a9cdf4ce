/* guard-page.c: mprotect(PROT_NONE) on the middle page of three makes a guard page. Maps 3
 * pages, makes page 1 PROT_NONE (mprotect returns 0), writes and reads pages 0 and 2 (they stay
 * usable: the protection change splits the mapping), then reads page 1: the program must die of
 * SIGSEGV (status 139). A read, not a write, so a kernel that treated PROT_NONE as read-only
 * would be caught. */
#include "rt.h"

int main(int argc UNUSED, char **argv UNUSED) {
    long r = map_anon(3 * PAGE);
    check(!is_err(r), "mmap 3 pages");
    volatile u8 *p = (volatile u8 *)r;

    r = sys_mprotect((void *)(p + PAGE), PAGE, PROT_NONE);
    put("mprotect middle page PROT_NONE: ");
    put_dec(r);
    nl();
    check(r == 0, "mprotect");

    p[0] = 0x11;
    p[PAGE - 1] = 0x12;
    p[2 * PAGE] = 0x21;
    p[3 * PAGE - 1] = 0x22;
    check(p[0] == 0x11 && p[PAGE - 1] == 0x12, "first page");
    put("first page: written and read back\n");
    check(p[2 * PAGE] == 0x21 && p[3 * PAGE - 1] == 0x22, "last page");
    put("last page: written and read back\n");

    put("reading the guard page: expect SIGSEGV\n");
    u8 v = p[PAGE + 8];
    put("FAIL: the read of a PROT_NONE page succeeded, value ");
    put_udec(v);
    nl();
    return 1;
}

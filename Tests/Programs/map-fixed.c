/* map-fixed.c: placement flags of mmap. Maps 8 pages filled with 0xAB; MAP_FIXED over pages 2-4
 * returns exactly the requested address and replaces them with zero pages while the other
 * pages keep 0xAB; MAP_FIXED_NOREPLACE over a mapped page (6), or over a range that starts on
 * one (7-8), fails with -EEXIST (-17) and changes nothing; after page 7 is unmapped,
 * MAP_FIXED_NOREPLACE there returns exactly that address; a plain hint (no MAP_FIXED) at a
 * page-aligned free address (page 5, just unmapped) is honoured. Also the -EINVAL (-22) cases:
 * MAP_FIXED at an address that is not page-aligned, and a length of 0. */
#include "rt.h"

#define RW (PROT_READ | PROT_WRITE)
#define ANON (MAP_PRIVATE | MAP_ANONYMOUS)

static volatile u8 *p;

/* How many bytes of page `page` equal `v`. */
static u64 count(u64 page, u8 v) {
    u64 n = 0;
    for (u64 i = 0; i < PAGE; i++)
        if (p[page * PAGE + i] == v) n++;
    return n;
}

static void pages_line(void) {
    put("pages:");
    for (u64 i = 0; i < 8; i++) {
        put(" ");
        if (count(i, 0xAB) == PAGE) put("AB");
        else if (count(i, 0) == PAGE) put("00");
        else put("??");
    }
    nl();
}

static void result(const char *what, long r, void *want) {
    put(what);
    put(": ");
    if (is_err(r)) put_dec(r);
    else put(r == (long)want ? "the requested address" : "another address");
    nl();
}

int main(int argc UNUSED, char **argv UNUSED) {
    long r = map_anon(8 * PAGE);
    check(!is_err(r), "mmap 8 pages");
    p = (volatile u8 *)r;
    for (u64 i = 0; i < 8 * PAGE; i++) p[i] = 0xAB;
    pages_line();

    void *a = (void *)(p + 2 * PAGE);
    r = sys_mmap(a, 3 * PAGE, RW, ANON | MAP_FIXED);
    result("MAP_FIXED over pages 2-4", r, a);
    pages_line();

    a = (void *)(p + 6 * PAGE);
    r = sys_mmap(a, PAGE, RW, ANON | MAP_FIXED_NOREPLACE);
    result("MAP_FIXED_NOREPLACE over page 6", r, a);
    a = (void *)(p + 7 * PAGE);
    r = sys_mmap(a, 2 * PAGE, RW, ANON | MAP_FIXED_NOREPLACE);
    result("MAP_FIXED_NOREPLACE over pages 7-8 (7 mapped)", r, a);
    pages_line();

    r = sys_munmap((void *)(p + 7 * PAGE), PAGE);
    put("munmap page 7: ");
    put_dec(r);
    nl();
    r = sys_mmap(a, PAGE, RW, ANON | MAP_FIXED_NOREPLACE);
    result("MAP_FIXED_NOREPLACE at page 7 (free)", r, a);
    pages_line();

    r = sys_munmap((void *)(p + 5 * PAGE), PAGE);
    put("munmap page 5: ");
    put_dec(r);
    nl();
    a = (void *)(p + 5 * PAGE);
    r = sys_mmap(a, PAGE, RW, ANON);
    result("hint at page 5 (free)", r, a);
    pages_line();

    r = sys_mmap((void *)(p + 8 * PAGE + 1), PAGE, RW, ANON | MAP_FIXED);
    result("MAP_FIXED at an unaligned address", r, 0);
    r = sys_mmap(0, 0, RW, ANON);
    result("mmap of length 0", r, 0);

    r = sys_munmap((void *)p, 8 * PAGE);
    put("munmap all 8 pages: ");
    put_dec(r);
    nl();
    return 0;
}

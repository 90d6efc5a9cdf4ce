/* fault-storm.c: many page faults in one region. Maps 40 MiB (10240 pages) and writes one word
 * into each of 10,000 distinct pages, visited in a scattered order (page k = i * 1031 mod
 * 10240; 1031 is prime, so the visit order is a permutation), then reads them all back and
 * prints the sum; the 240 pages never touched must still read zero; munmap returns 0. */
#include "rt.h"

#define PAGES 10240UL
#define TOUCHES 10000UL

static u64 page_of(u64 i) { return i * 1031 % PAGES; }
static u64 offset_of(u64 i) { return (i % 512) * 8; }

int main(int argc UNUSED, char **argv UNUSED) {
    long r = map_anon(PAGES * PAGE);
    check(!is_err(r), "mmap 40 MiB");
    volatile u8 *p = (volatile u8 *)r;
    put("mmap 40 MiB: ok\n");

    for (u64 i = 0; i < TOUCHES; i++) *(volatile u64 *)(p + page_of(i) * PAGE + offset_of(i)) = i * i + 7;
    put("touched 10000 pages\n");

    u64 sum = 0, good = 0;
    for (u64 i = 0; i < TOUCHES; i++) {
        u64 v = *(volatile u64 *)(p + page_of(i) * PAGE + offset_of(i));
        sum += v;
        if (v == i * i + 7) good++;
    }
    put("read back: ");
    put_udec(good);
    put(" of 10000 match, sum ");
    put_udec(sum);
    nl();
    check(good == TOUCHES, "read back");

    u64 untouched = 0, zero = 0;
    for (u64 i = TOUCHES; i < PAGES; i++) {
        volatile u64 *w = (volatile u64 *)(p + page_of(i) * PAGE);
        untouched++;
        int z = 1;
        for (u64 k = 0; k < PAGE / 8; k++)
            if (w[k] != 0) z = 0;
        zero += (u64)z;
    }
    put("untouched pages reading zero: ");
    put_udec(zero);
    put(" of ");
    put_udec(untouched);
    nl();
    check(zero == untouched, "an untouched page is not zero");

    r = sys_munmap((void *)p, PAGES * PAGE);
    put("munmap: ");
    put_dec(r);
    nl();
    check(r == 0, "munmap");
    return 0;
}

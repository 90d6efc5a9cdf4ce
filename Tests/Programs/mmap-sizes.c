/* mmap-sizes.c: anonymous private mappings of 4 KiB, 16 KiB, 64 KiB, 1 MiB, 4 MiB, 16 MiB and
 * 64 MiB. For each: mmap succeeds; every page is touched for the first time by a read of its
 * first and last byte, which must be zero (fresh anonymous memory is zero-filled); then one
 * word per page is written (a value derived from the page index and the size); then every
 * page is read back and a checksum printed; munmap returns 0. Sizes large enough for 2 MiB
 * pages are included, so a kernel that maps huge pages is exercised too (the output does not
 * depend on whether it does). */
#include "rt.h"

static const u64 sizes[] = {4UL << 10, 16UL << 10, 64UL << 10, 1UL << 20, 4UL << 20, 16UL << 20, 64UL << 20};

static u64 value_of(u64 size, u64 page) { return (page + 1) * 0x9e3779b97f4a7c15UL ^ size; }

int main(int argc UNUSED, char **argv UNUSED) {
    for (u64 s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        u64 size = sizes[s], pages = size / PAGE;
        long r = map_anon(size);
        if (is_err(r)) {
            put("mmap ");
            put_udec(size);
            put(" failed: ");
            put_dec(r);
            nl();
            fail("mmap");
        }
        volatile u8 *p = (volatile u8 *)r;
        u64 zero = 0;
        for (u64 i = 0; i < pages; i++)
            if (p[i * PAGE] == 0 && p[i * PAGE + PAGE - 1] == 0) zero++;
        for (u64 i = 0; i < pages; i++) *(volatile u64 *)(p + i * PAGE + (i % 8) * 8) = value_of(size, i);
        u64 sum = 0, good = 0;
        for (u64 i = 0; i < pages; i++) {
            u64 v = *(volatile u64 *)(p + i * PAGE + (i % 8) * 8);
            sum += v;
            if (v == value_of(size, i)) good++;
        }
        put("mmap ");
        put_udec(size);
        put(": ok, ");
        put_udec(pages);
        put(" pages, ");
        put_udec(zero);
        put(" read zero first, ");
        put_udec(good);
        put(" read back, checksum ");
        put_hex(sum);
        nl();
        check(zero == pages, "a fresh page is not zero");
        check(good == pages, "a page lost its value");
        r = sys_munmap((void *)p, size);
        put("munmap ");
        put_udec(size);
        put(": ");
        put_dec(r);
        nl();
        check(r == 0, "munmap");
    }
    return 0;
}

/* madvise.c: madvise(MADV_DONTNEED) on anonymous private memory discards the pages: the next
 * access reads zero. Maps 4 pages filled with 0x5A, MADV_DONTNEED on pages 1-2 returns 0;
 * pages 1-2 read zero, pages 0 and 3 keep 0x5A; page 1 is writable again afterwards. Also:
 * an unaligned start fails with -EINVAL (-22), and a range that is not mapped at all fails
 * with -ENOMEM (-12). */
#include "rt.h"

static volatile u8 *p;

static u64 count(u64 page, u8 v) {
    u64 n = 0;
    for (u64 i = 0; i < PAGE; i++)
        if (p[page * PAGE + i] == v) n++;
    return n;
}

static void pages_line(void) {
    put("pages:");
    for (u64 i = 0; i < 4; i++) {
        put(" ");
        if (count(i, 0x5A) == PAGE) put("5A");
        else if (count(i, 0) == PAGE) put("00");
        else if (count(i, 0x77) == PAGE) put("77");
        else put("??");
    }
    nl();
}

int main(int argc UNUSED, char **argv UNUSED) {
    long r = map_anon(4 * PAGE);
    check(!is_err(r), "mmap 4 pages");
    p = (volatile u8 *)r;
    for (u64 i = 0; i < 4 * PAGE; i++) p[i] = 0x5A;
    pages_line();

    r = sys_madvise((void *)(p + PAGE), 2 * PAGE, MADV_DONTNEED);
    put("madvise(MADV_DONTNEED) pages 1-2: ");
    put_dec(r);
    nl();
    pages_line();
    check(count(0, 0x5A) == PAGE && count(1, 0) == PAGE && count(2, 0) == PAGE && count(3, 0x5A) == PAGE,
          "contents after MADV_DONTNEED");

    for (u64 i = 0; i < PAGE; i++) p[PAGE + i] = 0x77;
    put("page 1 rewritten with 0x77\n");
    pages_line();

    r = sys_madvise((void *)(p + 1), PAGE, MADV_DONTNEED);
    put("madvise at an unaligned start: ");
    put_dec(r);
    nl();

    r = sys_munmap((void *)(p + 3 * PAGE), PAGE);
    put("munmap page 3: ");
    put_dec(r);
    nl();
    r = sys_madvise((void *)(p + 3 * PAGE), PAGE, MADV_DONTNEED);
    put("madvise(MADV_DONTNEED) on the unmapped page 3: ");
    put_dec(r);
    nl();
    return 0;
}

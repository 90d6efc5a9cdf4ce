// A program linked with musl's C library (musl-gcc -static): its start-up (TLS through
// arch_prctl, set_tid_address), malloc (brk and mmap, munmap, madvise), stdio (ioctl on the
// terminal, writev) and floating-point formatting (SSE in ring 3). Built and run only where
// musl-tools is installed; the kernel must print and exit exactly as the host's Linux does.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    size_t total = 0;
    char *kept[200] = {0};
    for (int i = 1; i <= 200; i++) {          // 200 blocks from 1 KB to 200 KB: brk and mmap
        char *p = malloc((size_t)i * 1000);
        if (!p) { printf("FAIL: malloc %d\n", i * 1000); return 1; }
        memset(p, i & 0xff, (size_t)i * 1000);
        total += (unsigned char)p[i * 1000 - 1];
        if (i % 3 == 0) free(p); else kept[i - 1] = p;
    }
    char *big = malloc(8 << 20);              // 8 MiB: one mmap, touched a page at a time
    for (int i = 0; i < (8 << 20); i += 4096) big[i] = 1;
    size_t pages = 0;
    for (int i = 0; i < (8 << 20); i += 4096) pages += big[i];
    free(big);
    for (int i = 0; i < 200; i++) free(kept[i]);
    printf("musl: %d argument(s); checksum %zu; %zu pages of a big block touched; pi is about %.5f\n",
           argc, total, pages, 355.0 / 113.0);
    for (int i = 1; i < argc; i++) printf("argv[%d] = %s\n", i, argv[i]);
    return 7;
}

/* hello.c: the smallest program. Checks that the kernel starts a static executable at its
 * entry point with argc and argv on the stack as Linux lays them out, that write(1, ...)
 * reaches stdout, and that exit_group's status comes back (3, not 0, so a kernel that drops
 * the status is caught). Prints the fixed greeting, argc and argv[1..] (argv[0] is the path,
 * which differs between runs, so it is not printed). */
#include "rt.h"

int main(int argc, char **argv) {
    put("hello from a static x86-64 program\n");
    put("argc ");
    put_udec((u64)argc);
    nl();
    for (int i = 1; i < argc; i++) {
        put("argv[");
        put_udec((u64)i);
        put("] = \"");
        put(argv[i]);
        put("\"\n");
    }
    check(argv[argc] == 0, "argv[argc] is not NULL");
    put("argv[argc] is NULL\n");
    return 3;
}

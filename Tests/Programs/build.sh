#!/bin/sh
# Builds every test program (Tests/Programs/*.c) into OUTDIR as a static, freestanding x86-64
# executable: no libc, no position independence, no SSE (the kernel that also runs them cannot
# emulate SSE). Fails loudly if a program does not build or if the compiler emitted an SSE
# register anyway (checked when objdump is there).
#
#   Tests/Programs/build.sh OUTDIR        (CC picks the compiler; default cc)
set -eu
if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
src=$(cd "$(dirname "$0")" && pwd)
out=$1
mkdir -p "$out"
cc=${CC:-cc}
flags="-static -nostdlib -fno-pie -no-pie -fno-stack-protector -fno-builtin -ffreestanding
       -mno-sse -mno-sse2 -mno-mmx -mgeneral-regs-only -O1 -Wall"
count=0
for c in "$src"/*.c; do
    name=$(basename "$c" .c)
    # shellcheck disable=SC2086
    if ! $cc $flags -o "$out/$name" "$c"; then
        echo "build.sh: FAILED to build $name ($cc $flags)" >&2
        exit 1
    fi
    if command -v objdump >/dev/null 2>&1 && objdump -d "$out/$name" | grep -Eq '%[xyz]mm|%mm[0-7]'; then
        echo "build.sh: $name uses SSE/MMX registers" >&2
        exit 1
    fi
    count=$((count + 1))
done
echo "build.sh: built $count programs into $out"

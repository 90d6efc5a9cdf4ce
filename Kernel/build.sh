#!/usr/bin/env bash
# Builds the bare-metal kernel: Embedded Swift for x86_64-unknown-none-elf, the core's sources
# (Sources/OSTDMemory, with -D OSTD_BARE_METAL: no simulated platform) compiled together with the
# kernel's (Kernel/Sources), no SSE anywhere (KVM's emulator runs ring 0 here and fails on SSE),
# the C runtime and the assembly entry, linked by ld.lld at 0xffffffff80100000.
#
#   Kernel/build.sh [OUT]     (default: .build-kernel/ostd-kernel.elf; prints the path)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.build-kernel/ostd-kernel.elf}
work=$(dirname "$out")/obj
mkdir -p "$work"
bin=$(dirname "$(command -v swiftc)")
clang="$bin/clang"
lld="$bin/ld.lld"
[ -x "$lld" ] || lld=$(command -v ld.lld)
nosse=(-mno-sse -mno-sse2 -mno-mmx -msoft-float)

core=$(find Sources/OSTDMemory -name '*.swift' -not -path '*/Platform/Simulated/*' | sort)
# -strict-memory-safety: the core is always compiled with it (Package.swift), and the kernel's
# files share its module here.
swiftc -enable-experimental-feature Embedded -enable-experimental-feature Extern \
  -target x86_64-unknown-none-elf -wmo -parse-as-library -O -strict-memory-safety \
  -D OSTD_BARE_METAL -module-name OSTDMemory -package-name swift_ostd \
  $(printf -- '-Xcc %s ' "${nosse[@]}") -Xcc -mcmodel=kernel \
  -c $core Kernel/Sources/*.swift -o "$work/kernel-swift.o"
common=(-target x86_64-unknown-none-elf -ffreestanding -fno-pic -mcmodel=kernel -mno-red-zone -mgeneral-regs-only
        "${nosse[@]}" -fno-stack-protector -O2 -Wall)
"$clang" "${common[@]}" -c Kernel/Runtime/runtime.c -o "$work/runtime.o"
"$clang" "${common[@]}" -c Kernel/Runtime/entry.S -o "$work/entry.o"
# String comparison in Embedded Swift needs the Unicode normalisation tables (data and lookups).
tables=$(dirname "$bin")/lib/swift/embedded/x86_64-unknown-linux-gnu/libswiftUnicodeDataTables.a
"$lld" -m elf_x86_64 -nostdlib -static -z max-page-size=4096 -T Kernel/kernel.ld \
  "$work/entry.o" "$work/kernel-swift.o" "$work/runtime.o" "$tables" -o "$out"
if "$bin/llvm-objdump" -d "$out" 2>/dev/null | grep -qE '%xmm|%ymm'; then
  echo "Kernel/build.sh: the kernel uses SSE registers; KVM's emulator cannot run them" >&2
  exit 1
fi
echo "$out"

// Random valid scripts run through `runScriptCommand --json`, every op line checked against an
// independent model of SCRIPT.md.
//
// A script is 20–60 ops over a small window so that ops collide often: VAs in
// [0x40000000, 0x40000000 + 8 MiB) (biased towards the 2 MiB boundaries and the pages next to
// them), a few pages just below MAX_USERSPACE_VADDR (0x7fff_ffff_f000) and in the 2 MiB region
// before the last one, and some out-of-range addresses and lengths. `map` uses 4K leaves mostly
// and 2M leaves sometimes (aligned or not), with random PROT letters in random order, and
// `page=`/`cache=` options in either order; `unmap` and `protect` take 4 KiB-aligned (sometimes
// unaligned) ranges that cut 2 MiB leaves at their start, their end or both; `write`, `fill`,
// `read` and `copy` move small ranges that cross pages, including unmapped, non-`u` and
// read-only ones; `copy` often overlaps, and sometimes has both sides run off their pages at the
// same byte; `query` looks anywhere, often around where an earlier `unmap`/`protect` cut. To aim
// well, the generator runs a model of its own: ops are drawn around recent successful maps, free
// 2 MiB regions and recent cut points. Numbers come in every syntax (hex, decimal, `K`/`M`
// suffixes, uppercase hex digits); blank lines, comments and tabs move line numbers around.
// Each op is decoded from one generated integer; 0 decodes to no op, so that shrinking can drop
// ops (a shrunk script may be shorter than 20 ops).
//
// The model is a dictionary from base-page number to what the contract says about that page: its
// PROT letters, cache policy, the size of the leaf that maps it, the physical address once a
// `query` has shown it, and its 4096 bytes (lazily: `nil` is zero-filled). With it, every op's
// line is predicted exactly: the error and its precedence (out-of-range, unaligned,
// access-conflict, already-mapped, page-fault; memory is large enough that out-of-memory never
// happens, so it is never expected), the `pages`/`bytes` counts, `mapped`/`va`/`len`/`prot`/
// `page`/`cache` of a query (splitting: a range boundary strictly inside a 2M leaf turns that
// leaf into 512 4K leaves; leaves are never merged), and byte-level faults (first inaccessible
// byte, `copied`, `data`; copy reads the source byte before writing the destination byte, a tie
// reports the source; bytes written before a fault stay). Physical addresses cannot be
// predicted, so `pa` is checked for consistency: size-aligned and inside memory; every page of a
// leaf at the reported offset from `pa`, the same as any earlier query of the same page said
// (a split keeps physical addresses); no two mapped pages at the same physical page.
//
// The summary must have `ops` and `failed` as counted, `memory` as given, and
// `frames_in_use - pt_frames` equal to 1 (the kernel root, not reachable from the user root)
// plus the number of mapped base pages (every data frame is one mapped base page; unmapped parts
// of a huge leaf are freed at once).
//
// A failing script records one issue at its first mismatching line (the model would diverge after
// it) with the whole script, the expected fields and the actual line; `propertyCheck` then shrinks
// the op codes and prints the input and seed. (Shrinking runs a script per candidate: a failure
// takes a minute or two to report.)
//
// This file holds the test and the constants and helpers the other files share; the generator,
// the model and the checks are in `ScriptPropertyTests+Generator.swift`, `+Model.swift` and
// `+Checks.swift`.

import Testing
import PropertyBased
import OSTDScript

@Suite struct ScriptPropertyTests {
    @Test func randomScriptsMatchTheModel() async {
        await propertyCheck(count: 40, input: Gen.int(in: 0...Int.max).array(of: 20...60)) { codes in
            let script = RandomScript(codes)
            checkScript(script)
        }
    }
}

// MARK: - Constants and helpers

let maxUser: UInt64 = 0x7fff_ffff_f000
let page4K: UInt64 = 1 << 12
let page2M: UInt64 = 1 << 21
let memoryArgument = "64M"
let memoryBytes: UInt64 = 64 << 20


func hexBytes(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef")
    var out = ""
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 15)])
    }
    return out
}

/// `[va, va + len)` is a valid user range: non-empty, no overflow, ends by MAX_USERSPACE_VADDR.
func validRange(_ va: UInt64, _ len: UInt64) -> Bool {
    let (end, overflow) = va.addingReportingOverflow(len)
    return len > 0 && !overflow && end <= maxUser
}


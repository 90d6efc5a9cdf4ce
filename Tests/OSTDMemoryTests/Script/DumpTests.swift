// `ostd-mm dump`: the failed-op lines, the page-table tree, the map of merged runs and its
// totals, the collapsed kernel half, exit codes, and the SVG drawing (well formed, one rect per
// run, a legend, escaped text).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import OSTDHost
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
@testable import OSTDScript

/// Runs `script` as `ostd-mm dump` does; returns the exit code and both outputs.
private func dump(_ script: String, svg: String? = nil, audit: Bool = false) -> (code: Int32, output: [String], errors: [String]) {
    var output: [String] = []
    var errors: [String] = []
    let code = dumpScriptCommand(DumpOptions(script: "test.ostd", memory: "16M", svg: svg, audit: audit), text: script,
                                 output: { output.append($0) }, errors: { errors.append($0) })
    return (code, output, errors)
}

/// The runner after `script` ran on a 16 MiB machine.
private func run(_ script: String) -> ScriptRunner {
    try! runScript(RunOptions(script: "test.ostd", memory: "16M"), text: script).get()
}

/// A user leaf of `level` at `va` mapping `pa`.
private func leaf(_ va: UInt64, _ pa: UInt64, level: PagingLevel = 1, _ property: PageProperty = .user(.rw)) -> Mapping {
    let size = UInt64(PagingConsts.pageSize(level))
    return Mapping(va: Vaddr(va)..<Vaddr(va + size), pa: Paddr(pa)..<Paddr(pa + size), level: level,
                   property: property, isTracked: true)
}

@Suite("Dump")
struct DumpTests {
    @Test("a small script: failed ops, then the tree and the map, line for line")
    func smallScript() {
        let script = """
            map 0x400000 16K rxu
            map 0x404000 8K rwu
            map 0x406000 4K rwu cache=uc
            map 0x600000 4M rwu page=2M
            map 0x7ffffffdf000 128K rwu
            map 0x7fffffffe000 8K rwu
            map 0x401000 4K rwu
            """
        let result = dump(script)
        #expect(result.code == 0)
        #expect(result.errors.isEmpty)
        let expected = [
            "line 6: map failed: out-of-range (range 0x7fffffffe000 + 0x2000 is empty, overflows or ends past 0x7ffffffff000)",
            "line 7: map failed: already-mapped (0x401000 is already mapped)",
            "",
            "page table: root 0x142000, 7 nodes in the user half, 41 leaves; 256 shared kernel nodes not shown",
            "L4 0x142000        0x0-0x800000000000             2 present",
            "  L3 0x143000      0x0-0x8000000000               1 present",
            "    L2 0x144000    0x0-0x40000000                 3 present: 1 node, 2 × 2M leaves at 0x600000-0xa00000",
            "      L1 0x145000  0x400000-0x600000              7 present: 7 × 4K leaves at 0x400000-0x407000",
            "  L3 0x14d000      0x7f8000000000-0x800000000000  1 present",
            "    L2 0x14e000    0x7fffc0000000-0x800000000000  1 present",
            "      L1 0x14f000  0x7fffffe00000-0x800000000000  32 present: 32 × 4K leaves at 0x7ffffffdf000-0x7ffffffff000",
            "  kernel half 0xffff800000000000-0x10000000000000000: root entries 256..<512 (256 present) → 256 L3 nodes shared with every space, 0 entries present below; collapsed",
            "",
            "mapped ranges: 5 runs (leaves with the same property and size, contiguous, merged)",
            "  0x400000-0x404000               16K  4K leaves  r-xu  wb  pa 0x146000-0x14a000",
            "  0x404000-0x406000                8K  4K leaves  rw-u  wb  pa 0x14a000-0x14c000",
            "  0x406000-0x407000                4K  4K leaf    rw-u  uc  pa 0x14c000-0x14d000",
            "  0x600000-0xa00000                4M  2M leaves  rw-u  wb  pa 0x200000-0x600000",
            "  0x7ffffffdf000-0x7ffffffff000  128K  4K leaves  rw-u  wb  pa 0x150000-0x170000",
            "total: 4252K (~4.2M) mapped (1063 pages) in 5 runs; leaves: 39 × 4K, 2 × 2M",
        ]
        #expect(result.output == expected)
    }

    @Test("a script without failures prints no failure lines and no blank line before the tree")
    func noFailures() {
        let result = dump("map 0x400000 4K ru\n")
        #expect(result.code == 0)
        #expect(result.output.first?.hasPrefix("page table: root ") == true)
        #expect(result.output.contains("  0x400000-0x401000  4K  4K leaf  r--u  wb  pa 0x146000-0x147000"))
        #expect(result.output.last == "total: 4K mapped (1 page) in 1 run; leaves: 1 × 4K")
    }

    @Test("an empty space: the root alone, the kernel line, no ranges")
    func emptySpace() {
        let result = dump("# nothing\n")
        #expect(result.output == [
            "page table: root 0x142000, 1 node in the user half, 0 leaves; 256 shared kernel nodes not shown",
            "L4 0x142000  0x0-0x800000000000  0 present",
            "  kernel half 0xffff800000000000-0x10000000000000000: root entries 256..<512 (256 present) → 256 L3 nodes shared with every space, 0 entries present below; collapsed",
            "",
            "mapped ranges: none",
        ])
    }

    @Test("script and argument errors exit 2 with run's message and print nothing else")
    func startErrors() {
        let bad = dump("map 0x400000 4K ru\nmap 0x1000 4K rq\n")
        #expect(bad.code == 2)
        #expect(bad.output.isEmpty)
        #expect(bad.errors == ["test.ostd:2: error: PROT 'rq' has 'q'; use the letters r, w, x, u, g"])

        var errors: [String] = []
        let code = dumpScriptCommand(DumpOptions(script: "test.ostd", memory: "3M"), text: "", output: { _ in },
                                     errors: { errors.append($0) })
        #expect(code == 2)
        #expect(errors.count == 1 && errors[0].hasPrefix("ostd-mm: error: --memory"))
    }

    @Test("the kernel half is one line; every user node is one line")
    func kernelHalfCollapsed() {
        let runner = run("map 0x400000 4K ru\nmap 0x7ffffffde000 4K ru\n")
        let snapshot = runner.snapshot
        #expect(snapshot.kernelNodes.count == 257)
        let tree = AddressSpaceDump.tree(snapshot)
        #expect(tree.count == 1 + snapshot.nodes.count + 1)
        #expect(tree.filter { $0.contains("kernel half") }.count == 1)
        #expect(!tree.contains { $0.contains("0xffff8") && !$0.contains("kernel half") })
        // Without the kernel's nodes there is no kernel line.
        let userOnly = AddressSpaceDump.tree(view: snapshot.view, nodes: snapshot.nodes)
        #expect(userOnly.count == 1 + snapshot.nodes.count)
    }

    @Test("leaves of a node: a full node, a few ranges listed, many ranges summarized")
    func leafSummaries() {
        let full = (0..<512).map { Vaddr(UInt64($0) * 4096)..<Vaddr(UInt64($0 + 1) * 4096) }
        #expect(AddressSpaceDump.leafSummary(full, level: 1) == "512 × 4K leaves (full)")
        let few = [0, 1, 3, 7].map { Vaddr(0x400000 + UInt64($0) * 4096)..<Vaddr(0x400000 + UInt64($0 + 1) * 4096) }
        #expect(AddressSpaceDump.leafSummary(few, level: 1)
                == "4 × 4K leaves at 0x400000-0x402000, 0x403000-0x404000, 0x407000-0x408000")
        let many = [0, 2, 4, 6].map { Vaddr(0x400000 + UInt64($0) * 4096)..<Vaddr(0x400000 + UInt64($0 + 1) * 4096) }
        #expect(AddressSpaceDump.leafSummary(many, level: 1) == "4 × 4K leaves in 4 ranges over 0x400000-0x407000")
        #expect(AddressSpaceDump.leafSummary([Vaddr(0x200000)..<Vaddr(0x400000)], level: 2) == "1 × 2M leaf at 0x200000-0x400000")
    }

    @Test("runs merge leaves with the same property and size at contiguous addresses")
    func mergingRules() {
        let rw = PageProperty.user(.rw)
        let view = PageTableView(mappings: [
            leaf(0x400000, 0x10000), leaf(0x401000, 0x11000),          // merged, pa contiguous
            leaf(0x402000, 0x20000),                                   // merged, pa now scattered
            leaf(0x403000, 0x21000, .user(.rx)),                       // another protection
            leaf(0x404000, 0x22000, .user(.rx, cache: .uncacheable)),  // another cache policy
            leaf(0x406000, 0x23000, .user(.rx, cache: .uncacheable)),  // not contiguous
            leaf(0x600000, 0x200000, level: 2),                        // another leaf size
            leaf(0x800000, 0x400000, level: 2),                        // merged with it
            leaf(0xa00000, 0x30000),                                   // back to 4K
            leaf(0xa01000, 0x31000, PageProperty.kernel(.rw)),         // no u
        ])
        let runs = AddressSpaceDump.runs(view)
        #expect(runs.map(\.leaves) == [3, 1, 1, 1, 2, 1, 1])
        #expect(runs[0].va == Vaddr(0x400000)..<Vaddr(0x403000))
        #expect(runs[0].pa == nil)
        #expect(runs[4].pa == Paddr(0x200000)..<Paddr(0x600000))
        #expect(runs[0].property == rw)
        #expect(AddressSpaceDump.map(view) == [
            "mapped ranges: 7 runs (leaves with the same property and size, contiguous, merged)",
            "  0x400000-0x403000  12K  4K leaves  rw-u  wb  pa scattered",
            "  0x403000-0x404000   4K  4K leaf    r-xu  wb  pa 0x21000-0x22000",
            "  0x404000-0x405000   4K  4K leaf    r-xu  uc  pa 0x22000-0x23000",
            "  0x406000-0x407000   4K  4K leaf    r-xu  uc  pa 0x23000-0x24000",
            "  0x600000-0xa00000   4M  2M leaves  rw-u  wb  pa 0x200000-0x600000",
            "  0xa00000-0xa01000   4K  4K leaf    rw-u  wb  pa 0x30000-0x31000",
            "  0xa01000-0xa02000   4K  4K leaf    rw--  wb  pa 0x31000-0x32000",
            "total: 4128K (~4.0M) mapped (1032 pages) in 7 runs; leaves: 8 × 4K, 2 × 2M",
        ])
    }

    @Test("a run of the live table: a scattered one, and a 2M leaf split by protect")
    func liveRuns() {
        let runner = run("""
            map 0x400000 4K rwu
            map 0x800000 4K rwu
            map 0x401000 4K rwu
            map 0x40000000 2M rwu page=2M
            protect 0x40001000 4K ru
            """)
        let lines = AddressSpaceDump.map(runner.snapshot.view)
        #expect(lines.contains { $0.hasPrefix("  0x400000-0x402000") && $0.hasSuffix("pa scattered") })
        #expect(lines.contains { $0.hasPrefix("  0x40000000-0x40001000") && $0.contains("4K leaf ") })
        #expect(lines.contains { $0.hasPrefix("  0x40001000-0x40002000") && $0.contains("r--u") })
        #expect(lines.contains { $0.hasPrefix("  0x40002000-0x40200000") && $0.contains("2040K") && $0.contains("4K leaves") })
        let tree = AddressSpaceDump.tree(runner.snapshot)
        #expect(tree.contains { $0.hasSuffix("512 present: 512 × 4K leaves (full)") })
    }

    @Test("sizes: exact in the largest whole unit, approximate for labels")
    func sizes() {
        #expect(AddressSpaceDump.size(4096) == "4K")
        #expect(AddressSpaceDump.size(2 << 20) == "2M")
        #expect(AddressSpaceDump.size(1 << 30) == "1G")
        #expect(AddressSpaceDump.size(0x401000) == "4100K")
        #expect(AddressSpaceDump.size(12) == "12B")
        #expect(AddressSpaceDump.approximateSize(2 << 20) == "2M")
        #expect(AddressSpaceDump.approximateSize(0x1ec000) == "~1.9M")
        #expect(AddressSpaceDump.approximateSize(0x7fff_bf9f_f000) == "~128T")
    }

    @Test("segments: close runs share one, far ones do not")
    func segments() {
        let view = PageTableView(mappings: [
            leaf(0x400000, 0x10000), leaf(0x410000, 0x11000),   // 60K apart: one segment
            leaf(0x600000, 0x12000),                            // ~2M away: a new one
            leaf(0x7000_0000_0000, 0x13000),
        ])
        #expect(AddressSpaceDump.segments(AddressSpaceDump.runs(view)).map(\.count) == [2, 1, 1])
    }

    @Test("the SVG: well formed, one rect per run, huge leaves outlined, a legend, escaped text")
    func svg() {
        let runner = run("""
            map 0x400000 64K rxu
            map 0x410000 16K ru
            map 0x600000 24K rwu
            map 0x1000000 4M rwu page=2M
            map 0x2000000 4K rwxu
            map 0x3000000 4K rw
            map 0x7ffffffce000 64K rwu
            map 0x7ffffffdf000 128K rwu
            """)
        let view = runner.snapshot.view
        let svg = AddressSpaceDump.svg(view, title: "a <b> & 'c' \"d\"")
        #expect(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\""))
        #expect(svg.hasSuffix("</svg>\n"))
        #expect(wellFormed(svg))
        #expect(occurrences(of: "class=\"run\"", in: svg) == AddressSpaceDump.runs(view).count)
        #expect(occurrences(of: "class=\"huge\"", in: svg) == 2)
        #expect(svg.contains("class=\"legend\""))
        for words in ["r-- read-only", "rw- data", "r-x code", "rwx writable code", "hatched: no u", "2M leaf"] {
            #expect(svg.contains(words))
        }
        #expect(svg.contains("a &lt;b&gt; &amp; &apos;c&apos; &quot;d&quot;"))
        #expect(!svg.contains("<b>"))
        #expect(svg.contains("url(#hatch-rw_)"))     // the run without u
        #expect(svg.contains("4K hole"))             // the guard page between the stacks
    }

    @Test("the SVG of an empty space, and --svg writes the file")
    func svgEmptyAndFile() throws {
        let empty = AddressSpaceDump.svg(PageTableView(mappings: []), title: "empty")
        #expect(wellFormed(empty))
        #expect(occurrences(of: "class=\"run\"", in: empty) == 0)

        let path = "/tmp/ostd-dump-test-\(getpid()).svg"
        defer { unlink(path) }
        let result = dump("map 0x400000 4K rxu\n", svg: path)
        #expect(result.code == 0)
        let written = try #require(readFile(path))
        #expect(written.hasPrefix("<svg"))
        #expect(written.contains("Address space after test.ostd"))

        // An output that cannot be written is refused before anything runs (exit 2, nothing printed).
        let failed = dump("map 0x400000 4K rxu\n", svg: "/nonexistent-directory/x.svg")
        #expect(failed.code == 2 && failed.output.isEmpty)
        #expect(failed.errors == ["ostd-mm: error: --svg /nonexistent-directory/x.svg: cannot create it: No such file or directory"])
    }
}

extension DumpTests {
    @Test("the SVG stays on its canvas with many runs: close ones aggregated into marks, far ones merged into segments",
          arguments: [(count: 150, stride: 0x2000), (count: 3000, stride: 0x2000), (count: 400, stride: 0x4000_0000)])
    func svgManyRuns(count: Int, stride: UInt64) {
        let mappings = (0..<count).map { leaf(0x400000 + UInt64($0) * stride, 0x10000 + UInt64($0) * 0x2000) }
        let view = PageTableView(mappings: mappings)
        let svg = AddressSpaceDump.svg(view, title: "many")
        #expect(wellFormed(svg))
        let width = try! #require(number(after: "width=\"", in: svg))
        for rect in elements("rect", in: svg) where rect.contains("class=\"run\"") || rect.contains("class=\"aggregate\"") {
            let x = try! #require(number(after: "x=\"", in: rect)), w = try! #require(number(after: "width=\"", in: rect))
            #expect(x >= 32 - 0.01 && x + w <= width - 32 + 0.01, "\(rect)")
        }
        let drawnRuns = occurrences(of: "class=\"run\"", in: svg)
        let aggregated = elements("rect", in: svg).filter { $0.contains("class=\"aggregate\"") }
        let aggregatedRuns = aggregated.compactMap { number(after: "<title>", in: $0) }.reduce(0, +)
        #expect(drawnRuns + Int(aggregatedRuns) == count)       // every run drawn, alone or in a mark
        #expect(aggregated.isEmpty == !svg.contains("grey marks"))   // and the picture says so
    }
}

/// The `<name …>` elements of `xml`, up to their closing tag or `/>`.
private func elements(_ name: String, in xml: String) -> [Substring] {
    xml.split(separator: "<\(name) ").dropFirst().map { $0.prefix { $0 != "\n" } }
}

/// The decimal number right after the first `marker` in `text`.
private func number(after marker: String, in text: some StringProtocol) -> Double? {
    guard let range = text.range(of: marker) else { return nil }
    return Double(text[range.upperBound...].prefix { $0.isNumber || $0 == "." })
}

/// How often `needle` occurs in `text`.
private func occurrences(of needle: String, in text: String) -> Int {
    text.split(separator: needle, omittingEmptySubsequences: false).count - 1
}

/// A small XML check: tags balance, attributes are quoted, and text holds no raw `<` or a `&`
/// that does not start one of the five entities.
private func wellFormed(_ xml: String) -> Bool {
    var stack: [Substring] = []
    var rest = Substring(xml)
    while let open = rest.firstIndex(of: "<") {
        guard entitiesOK(rest[..<open]), let close = rest[open...].firstIndex(of: ">") else { return false }
        let tag = rest[rest.index(after: open)..<close]
        rest = rest[rest.index(after: close)...]
        if tag.hasPrefix("/") {
            guard stack.popLast() == tag.dropFirst() else { return false }
        } else {
            let name = tag.prefix { $0 != " " && $0 != "/" }
            guard !name.isEmpty, tag.filter({ $0 == "\"" }).count % 2 == 0,
                  entitiesOK(tag) else { return false }
            if !tag.hasSuffix("/") { stack.append(name) }
        }
    }
    return stack.isEmpty && entitiesOK(rest)
}

/// Whether every `&` in `text` starts one of XML's five entities.
private func entitiesOK(_ text: Substring) -> Bool {
    var rest = text
    while let amp = rest.firstIndex(of: "&") {
        let tail = rest[amp...]
        guard ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(where: { tail.hasPrefix($0) }) else { return false }
        rest = rest[rest.index(after: amp)...]
    }
    return true
}

// The op-script syntax and the arguments of `ostd-mm run` (SCRIPT.md, "Invocation", "Syntax").
//
// What is checked: numbers (decimal, `0x` hex in either case, K/M/G suffixes, nothing else, at most
// 2^64 − 1); what a parsed line becomes (canonical PROT, option order, defaults); that every kind
// of syntax error — unknown or reserved op, wrong argument count, malformed number, bad option,
// bad PROT, bad HEX, BYTE above 255 — rejects the whole script with exit 2, `FILE:LINE: error: …`
// naming the first bad line, and nothing on standard output even when valid ops come first;
// `<stdin>` as the file name of `-`; comments, blanks, tabs and line endings; and the argument
// errors (`--memory` not a multiple of 2 MiB or malformed, a missing script file, no
// image written for an invalid script).

import Foundation
import Testing
import OSTDScript
import OSTDHost

/// Runs `text` as script `file` and returns the exit code, standard output and standard error.
private func run(_ text: String?, file: String = "bad.ostd", memory: String = "16M", audit: Bool = false,
                 json: Bool = true, image: String? = nil) -> (code: Int32, output: [String], errors: [String]) {
    var output: [String] = []
    var errors: [String] = []
    let code = runScriptCommand(RunOptions(script: file, json: json, memory: memory, image: image, audit: audit), text: text,
                                output: { output.append($0) }, errors: { errors.append($0) })
    return (code, output, errors)
}

@Suite("ostd-mm run: script syntax and arguments")
struct ScriptParserTests {
    // MARK: Numbers

    static let goodNumbers: [(String, UInt64)] = [
        ("0", 0), ("7", 7), ("4096", 4096), ("00010", 10),
        ("0x0", 0), ("0x1000", 0x1000), ("0xabcDEF", 0xab_cdef), ("0xFFFF", 0xffff),
        ("4K", 4096), ("2M", 2 << 20), ("1G", 1 << 30), ("0x2M", 0x20_0000), ("0x10K", 0x4000),
        ("0x3G", 0xc000_0000), ("0K", 0),
        ("18446744073709551615", .max), ("0xffffffffffffffff", .max), ("0x00000000000000000001", 1),
        ("17179869183G", 17_179_869_183 << 30),       // (2^34 − 1) × 2^30 fits in 64 bits
        ("18014398509481983K", 18_014_398_509_481_983 << 10), // (2^54 − 1) × 2^10
    ]

    @Test("numbers that parse", arguments: goodNumbers)
    func goodNumber(_ token: String, _ value: UInt64) {
        #expect(ScriptParser.parseNumber(token) == value, "\(token)")
    }

    static let badNumbers = [
        "", "0X10", "0X1K", "1_000", "0x1_000", "-1", "+1", "2^64", "0x", "0xK", "K", "M", "16k", "2m", "1g",
        "4KK", "4KB", "1T", "1.5", "1e3", "0b101", "0o17", "0x-1", " 1", "1 ", "0x 1", "ff", "1a",
        "18446744073709551616", "0x10000000000000000", "17179869184G", "18014398509481984K",
        "99999999999999999999", "\u{FF10}", "\u{0663}", "0x\u{FF21}",
    ]

    @Test("malformed or too large numbers are rejected", arguments: badNumbers)
    func badNumber(_ token: String) {
        #expect(ScriptParser.parseNumber(token) == nil, "\(token)")
    }

    // MARK: Parsed lines

    @Test("a parsed script: lines, canonical letters, options in any order, defaults")
    func parsedScript() throws {
        let script = try ScriptParser.parse("""
            # a comment

            map 0x2M 4K urw cache=uc page=2M
            \tmap 1G 1G gxr page=1G # trailing comment
            map 0 4K r
            unmap 0x1000 8K
            protect 0 4K rw
            query 0x1234
            write 0x10 00Ff
            fill 1 2 0xff
            read 3 4
            copy 5 6 7
            """, file: "t.ostd")
        let expected: [ScriptOp] = [
            ScriptOp(line: 3, op: .map(va: 0x20_0000, len: 4096, prot: Prot(writable: true, user: true), page: .size2M, cache: .uc)),
            ScriptOp(line: 4, op: .map(va: 1 << 30, len: 1 << 30, prot: Prot(executable: true, global: true), page: .size1G, cache: .wb)),
            ScriptOp(line: 5, op: .map(va: 0, len: 4096, prot: Prot(), page: .size4K, cache: .wb)),
            ScriptOp(line: 6, op: .unmap(va: 0x1000, len: 0x2000)),
            ScriptOp(line: 7, op: .protect(va: 0, len: 4096, prot: Prot(writable: true))),
            ScriptOp(line: 8, op: .query(va: 0x1234)),
            ScriptOp(line: 9, op: .write(va: 0x10, bytes: [0x00, 0xff])),
            ScriptOp(line: 10, op: .fill(va: 1, len: 2, byte: 0xff)),
            ScriptOp(line: 11, op: .read(va: 3, len: 4)),
            ScriptOp(line: 12, op: .copy(src: 5, dst: 6, len: 7)),
        ]
        #expect(script.ops == expected)
        #expect(Prot(writable: true, executable: true, user: true, global: true).letters == "rwxug")
        #expect(Prot(executable: true, user: true).letters == "rxu")
    }

    @Test("comments, blank lines, leading and trailing blanks, tabs; an empty script")
    func blanksAndComments() throws {
        let script = try ScriptParser.parse("\n   \n\t\n#\n  # x\nquery 1#c\n \t query\t\t2 \t \n#query 3\nquery 4 # a # b\n", file: "t.ostd")
        #expect(script.ops == [ScriptOp(line: 6, op: .query(va: 1)), ScriptOp(line: 7, op: .query(va: 2)),
                               ScriptOp(line: 9, op: .query(va: 4))])
        #expect(try ScriptParser.parse("", file: "t.ostd").ops.isEmpty)
        #expect(try ScriptParser.parse("# only a comment", file: "t.ostd").ops.isEmpty)
        #expect(try ScriptParser.parse("query 5\r", file: "t.ostd").ops == [ScriptOp(line: 1, op: .query(va: 5))])
    }

    @Test
    func crlfLineEndings() throws {
        let lf = "# comment\nmap 0x400000 4K rwu\n\nquery 0x400000   \nquery 0x400000\t# c\n"
        let crlf = lf.replacingOccurrences(of: "\n", with: "\r\n")
        let expected = run(lf, memory: "16M")
        let actual = run(crlf, memory: "16M")
        #expect(expected.code == 0)
        #expect(actual.code == 0, "\(actual.errors)")
        #expect(actual.output == expected.output)
        #expect(actual.errors.isEmpty)
        #expect(try ScriptParser.parse(crlf, file: "t.ostd").ops.map(\.line) == [2, 4, 5])
    }

    @Test
    func carriageReturnInsideALineIsNotASeparator() {
        let result = run("query\r0\n")
        #expect(result.code == 2)
        #expect(result.output.isEmpty)
    }

    // MARK: Syntax errors

    /// A bad line, and a fragment its message must contain.
    static let badLines: [(String, String)] = [
        // unknown and reserved ops
        ("mmap 0 4K rw", "unknown op"), ("MAP 0 4K rw", "unknown op"), ("Query 0", "unknown op"),
        ("fork", "unknown op"), ("switch 1", "unknown op"), ("lazy 0 4K", "unknown op"), ("cpu 1", "unknown op"),
        ("flush", "unknown op"), ("fork 0x1000", "unknown op"), ("page=4K", "unknown op"),
        // wrong argument counts
        ("map", "argument"), ("map 0 4K", "argument"), ("map 0 4K rw extra", "argument"),
        ("map page=4K 0 4K rw", "argument"), ("map 0 4K rw page", "argument"),
        ("unmap 0", "argument"), ("unmap 0 4K 4K", "argument"), ("protect 0 4K", "argument"),
        ("protect 0 4K r r", "argument"), ("query", "argument"), ("query 0 0", "argument"),
        ("write 0", "argument"), ("write 0 00 00", "argument"), ("fill 0 4K", "argument"),
        ("fill 0 4K 1 1", "argument"), ("read 0", "argument"), ("read 0 1 2", "argument"),
        ("copy 0 1", "argument"), ("copy 0 1 2 3", "argument"),
        // malformed numbers, in every position
        ("map 0X10 4K rw", "'0X10'"), ("map 1_000 4K rw", "'1_000'"), ("map -1 4K rw", "'-1'"),
        ("map 2^64 4K rw", "'2^64'"), ("map 0x 4K rw", "'0x'"), ("map 16k 4K rw", "'16k'"),
        ("map 18446744073709551616 4K rw", "'18446744073709551616'"), ("map 0 0x10000000000000000 rw", "'0x10000000000000000'"),
        ("map 0 17179869184G rw", "'17179869184G'"), ("map 0 1.5K rw", "'1.5K'"), ("map 0 4KB rw", "'4KB'"),
        ("unmap 0x 4K", "'0x'"), ("unmap 0 -4K", "'-4K'"), ("protect 0X0 4K r", "'0X0'"), ("protect 0 4k r", "'4k'"),
        ("query 0X0", "'0X0'"), ("query -0", "'-0'"), ("query 18446744073709551616", "'18446744073709551616'"),
        ("write 0x1_0 00", "'0x1_0'"), ("fill 1_0 1 1", "'1_0'"), ("fill 0 +1 1", "'+1'"), ("fill 0 1 0X1", "'0X1'"),
        ("fill 0 1 -1", "'-1'"), ("read 0 1_0", "'1_0'"), ("read 0x10000000000000000 1", "'0x10000000000000000'"),
        ("copy 0X1 0 1", "'0X1'"), ("copy 0 2^3 1", "'2^3'"), ("copy 0 1 0x", "'0x'"),
        // options: unknown, repeated, bad values, on ops other than map
        ("map 0 4K rw page=8K", "page=8K"), ("map 0 4K rw page=4k", "page=4k"), ("map 0 4K rw page=2m", "page=2m"),
        ("map 0 4K rw page=4096", "page=4096"), ("map 0 4K rw page=", "page="), ("map 0 4K rw page=1g", "page=1g"),
        ("map 0 4K rw cache=WB", "cache=WB"), ("map 0 4K rw cache=", "cache="), ("map 0 4K rw cache=none", "cache=none"),
        ("map 0 4K rw page=4K page=4K", "twice"), ("map 0 4K rw page=4K cache=wb page=2M", "twice"),
        ("map 0 4K rw cache=wb cache=uc", "twice"), ("map 0 4K rw size=4K", "unknown option"),
        ("map 0 4K rw PAGE=4K", "unknown option"), ("map 0 4K rw =4K", "unknown option"),
        ("map 0 4K rw page=4K extra", "unknown option"),
        ("unmap 0 4K page=4K", "no options"), ("protect 0 4K r cache=wb", "no options"), ("query 0 page=4K", "no options"),
        ("write 0 00 cache=wb", "no options"), ("fill 0 1 1 page=4K", "no options"), ("read 0 1 page=4K", "no options"),
        ("copy 0 1 1 cache=uc", "no options"),
        // PROT: no r, unknown or repeated letter
        ("map 0 4K w", "lacks 'r'"), ("map 0 4K wu", "lacks 'r'"), ("map 0 4K x", "lacks 'r'"), ("map 0 4K ug", "lacks 'r'"),
        ("map 0 4K rr", "repeats"), ("map 0 4K rwr", "repeats"), ("map 0 4K rwxugx", "repeats"),
        ("map 0 4K rwa", "'a'"), ("map 0 4K R", "'R'"), ("map 0 4K rW", "'W'"), ("map 0 4K r-", "'-'"),
        ("protect 0 4K u", "lacks 'r'"), ("protect 0 4K rq", "'q'"), ("protect 0 4K rgg", "repeats"),
        // HEX: odd, 0x prefix, not hex
        ("write 0 abc", "HEX"), ("write 0 a", "HEX"), ("write 0 0x00", "HEX"), ("write 0 zz", "HEX"),
        ("write 0 0g", "HEX"), ("write 0 -1", "HEX"), ("write 0 00 11", "argument"), ("write 0 0X00", "HEX"),
        // BYTE above 255
        ("fill 0 1 256", "BYTE"), ("fill 0 1 0x100", "BYTE"), ("fill 0 1 1K", "BYTE"), ("fill 0 1 1000", "BYTE"),
        ("fill 0 1 18446744073709551615", "BYTE"),
    ]

    @Test("a syntax error rejects the whole script: exit 2, FILE:LINE of the first bad line, nothing run", arguments: badLines)
    func syntaxError(_ line: String, _ fragment: String) {
        // Valid ops come first (and would print), a second bad line comes after.
        let script = "map 0x10000000 4K rwu   # valid\n\nquery 0x10000000\n\(line)\nmmap after\n"
        let result = run(script)
        #expect(result.code == 2, "\(line)")
        #expect(result.output.isEmpty, "\(line): nothing may run, got \(result.output)")
        #expect(result.errors.count == 1, "\(line): \(result.errors)")
        let message = result.errors.first ?? ""
        #expect(message.hasPrefix("bad.ostd:4: error: "), "\(line): \(message)")
        #expect(message.contains(fragment), "\(line): '\(fragment)' not in \(message)")
    }

    @Test("the first bad line is reported; <stdin> names standard input")
    func firstBadLineAndStdin() {
        let twoBad = run("query 0\nquery 0 0\nfork\n", file: "-")
        #expect(twoBad.code == 2)
        #expect(twoBad.output.isEmpty)
        #expect(twoBad.errors.count == 1)
        #expect(twoBad.errors.first?.hasPrefix("<stdin>:2: error: ") == true, "\(twoBad.errors)")

        let onlyLast = run(String(repeating: "map 0x10000000 4K rwu\nunmap 0x10000000 4K\n", count: 50) + "fill 0 1 256")
        #expect(onlyLast.code == 2)
        #expect(onlyLast.output.isEmpty)
        #expect(onlyLast.errors == ["bad.ostd:101: error: BYTE 256 is above 255"])
    }

    @Test("an invalid script writes no image")
    func invalidScriptWritesNoImage() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ostd-script-\(UInt64.random(in: 0...UInt64.max)).img").path
        let result = run("map 0x10000000 4K rwu\nbogus\n", image: path)
        #expect(result.code == 2)
        #expect(result.output.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: path))
        try? FileManager.default.removeItem(atPath: path)
    }

    // MARK: Arguments

    @Test("--memory that is not a positive multiple of 2 MiB, or not a number: exit 2, nothing run",
          arguments: ["3M", "1K", "0", "1", "0x100000", "0x1000001", "2047M", "abc", "16m", "", "-2M", "0X200000", "18446744073709551616"])
    func badMemory(_ memory: String) {
        let result = run("map 0x10000000 4K rwu\nquery 0x10000000\n", memory: memory)
        #expect(result.code == 2, "--memory \(memory)")
        #expect(result.output.isEmpty)
        #expect(result.errors.count == 1)
        #expect(result.errors.first?.hasPrefix("ostd-mm: error: ") == true, "\(result.errors)")
    }

    @Test("--memory in any number syntax", arguments: [("2M", "0x200000"), ("0x1000000", "0x1000000"), ("16384K", "0x1000000"), ("0x10M", "0x1000000")])
    func goodMemory(_ memory: String, _ hex: String) {
        let result = run("query 0\n", memory: memory)
        #expect(result.code == 0, "\(result.errors)")
        #expect(result.output.last?.contains("\"memory\":\"\(hex)\"") == true, "\(result.output)")
    }

    @Test("--audit: the same op results as without, and \"audit\":\"ok\" in the summary")
    func auditRuns() {
        let script = "map 0x10000000 8K rwu\nmap 0x40000000 2M rwu page=2M\nwrite 0x10000ffe abcd\n"
            + "protect 0x40001000 4K ru\nread 0x10000ffe 4\ncopy 0x10000000 0x40000000 16\nunmap 0x40000000 8K\nread 0 1\n"
        let plain = run(script)
        let audited = run(script, audit: true)
        #expect(audited.code == 0, "\(audited.errors)")
        #expect(audited.errors.isEmpty)
        #expect(Array(audited.output.dropLast()) == Array(plain.output.dropLast()))
        #expect(audited.output.last?.hasSuffix("\"audit\":\"ok\"}") == true)
        #expect(plain.output.last?.hasSuffix("\"audit\":\"off\"}") == true)
    }

    @Test("a script file that cannot be read: exit 2; a readable one runs")
    func scriptFiles() throws {
        let directory = FileManager.default.temporaryDirectory
        let missing = directory.appendingPathComponent("ostd-no-such-script-\(UInt64.random(in: 0...UInt64.max)).ostd").path
        let absent = run(nil, file: missing)
        #expect(absent.code == 2)
        #expect(absent.output.isEmpty)
        #expect(absent.errors.count == 1)

        let present = directory.appendingPathComponent("ostd-script-\(UInt64.random(in: 0...UInt64.max)).ostd")
        try "map 0x10000000 4K rwu\nquery 0x10000000\n".write(to: present, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: present) }
        let ran = run(nil, file: present.path)
        #expect(ran.code == 0, "\(ran.errors)")
        #expect(ran.output.count == 3)
        #expect(ran.output.first == "{\"line\":1,\"op\":\"map\",\"ok\":true,\"pages\":1}")
    }

    @Test("without --json: one text line per op, then the summary")
    func textOutput() {
        let result = run("map 0x10000000 4K rwu\nread 0 1\nquery 0x10000000\n", json: false)
        #expect(result.code == 0)
        #expect(result.output.count == 4)
        #expect(result.output.allSatisfy { !$0.hasPrefix("{") })
        #expect(result.output.last?.hasPrefix("summary") == true)
    }
}

@Suite struct MemorySizeTests {
    @Test("--memory: each refused size says which rule it breaks", arguments: [
        ("256M", nil),
        ("0x40000000", nil),
        ("banana", "is not a size"),
        ("12Q", "is not a size"),
        ("0x100000000000", "is too large"),          // 16 TiB: above the largest machine
        ("18446744073709551615", "is too large"),
        ("0xffffffffffe00000", "is too large"),
        ("17179869183G", "is too large"),            // overflows 64 bits
        ("1M", "is too small"),
        ("3M", "is not a multiple of 2M"),
    ] as [(String, String?)])
    func memorySize(text: String, problem: String?) {
        switch MemorySize.parse(text) {
        case .success(let size): #expect(problem == nil, "\(text) gave \(size)")
        case .failure(let error):
            #expect(problem.map { error.description.contains("--memory \(text) \($0)") } == true, "\(error)")
        }
    }
}

@Suite struct ScriptMessageTests {
    /// The one error line of running `text`, which must be refused.
    private func refusal(_ text: String) -> String {
        let result = run(text)
        #expect(result.code == 2 && result.output.isEmpty && result.errors.count == 1)
        return result.errors.first ?? ""
    }

    @Test func aByteOrderMarkIsNamed() {
        #expect(refusal("\u{FEFF}query 0\n")
            == "bad.ostd:1: error: the line starts with a UTF-8 byte-order mark (EF BB BF); save the script without one")
    }

    @Test func controlCharactersInATokenAreEscaped() {
        let message = refusal("map 0x400000 4K r\u{1B}[31mw\n")
        #expect(message == "bad.ostd:1: error: PROT 'r\\u{1B}[31mw' has '\\u{1B}'; use the letters r, w, x, u, g")
        #expect(!message.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F })
        #expect(refusal("fr\u{0}b\n") == "bad.ostd:1: error: unknown op 'fr\\u{0}b'; the ops are map, unmap, protect, query, write, fill, read, copy")
    }

    @Test func aLongTokenIsCutWithItsLength() {
        let token = String(repeating: "q", count: 100_000)
        #expect(refusal(token + "\n") == "bad.ostd:1: error: unknown op '" + String(repeating: "q", count: 40)
            + "…(100000 bytes)'; the ops are map, unmap, protect, query, write, fill, read, copy")
    }

    @Test func aNumberTooLargeIsCalledSo() {
        #expect(refusal("query 99999999999999999999\n") == "bad.ostd:1: error: VA '99999999999999999999' is too large: numbers are below 2^64")
        #expect(refusal("query 0x1G0\n").hasSuffix("is not a number (decimal or 0x hex, optionally with K, M or G, below 2^64)"))
    }
}

@Suite struct OutputFileTests {
    @Test func anImageThatWouldOverwriteTheScriptIsRefusedBeforeRunning() throws {
        let path = "/tmp/ostd-output-test-\(getpid()).ostd"
        let script = "map 0x400000 4K rwu\n"
        #expect(FileManager.default.createFile(atPath: path, contents: Data(script.utf8)))
        defer { unlink(path) }
        let result = run(nil, file: path, image: path)
        #expect(result.code == 2 && result.output.isEmpty)
        #expect(result.errors == ["ostd-mm: error: --image \(path) is the script itself; choose another file"])
        #expect(try String(contentsOfFile: path, encoding: .utf8) == script)
    }

    @Test func anImageThatCannotBeCreatedIsRefusedBeforeRunning() {
        let result = run("map 0x400000 4K rwu\n", image: "/nonexistent-directory/x.img")
        #expect(result.code == 2 && result.output.isEmpty)
        #expect(result.errors == ["ostd-mm: error: --image /nonexistent-directory/x.img: cannot create it: No such file or directory"])
    }
}

@Suite struct FuzzFindingTests {
    /// `.ci/cli-fuzz` found this: an audited copy of a huge unmapped range captured its whole
    /// source before copying (2 bytes per byte) and died allocating 32 TiB. The audit now reads
    /// the source up to its first unmapped byte.
    @Test func anAuditedHugeCopyThatFaultsAtOnceCostsNothing() {
        let result = run("copy 0 0x100000000000 0x100000000000\n", audit: true)
        #expect(result.code == 0)
        #expect(result.output.first?.contains("\"error\":\"page-fault\"") == true)
        #expect(result.output.last?.contains("\"audit\":\"ok\"") == true)
    }

    /// `.ci/cli-fuzz` found this too: arguments reached standard error raw. Every line the tool
    /// writes there goes through `terminalSafe`.
    @Test func controlCharactersNeverReachTheTerminal() {
        #expect(terminalSafe("--memory 8M\u{1B}[2J\tx\u{7}\u{9B}y\nz") == "--memory 8M\\u{1B}[2J\\u{9}x\\u{7}\\u{9B}y\nz")
        #expect(terminalSafe("plain ‘text’ é") == "plain ‘text’ é")
    }

    @Test func auditRefusesMachinesItWouldTakeForeverToCheck() {
        let result = run("query 0\n", memory: "128G", audit: true)
        #expect(result.code == 2 && result.output.isEmpty)
        #expect(result.errors == ["ostd-mm: error: --audit checks every metadata slot after every op, so it takes --memory up to 64G (got 128G)"])
    }
}

// `ostd-mm run` streams (issue 12): its output is written as it is produced, a large `read`'s data
// read and encoded a bounded chunk at a time; its input is validated as it is read, a line at most
// 1 MiB long, the first invalid line ending the reading; and a valid script runs only after all of
// it was read. Everything here is structural — sizes of the pieces handed to a recording sink, the
// peak the output buffer held, bytes a source served, the order of events — never time or RSS.

@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec
@testable import OSTDScript
import Testing

/// A sink that records every piece it is handed.
private final class RecordingSink {
    var pieces: [Int] = []
    var bytes: [UInt8] = []
    var text: String { String(decoding: bytes, as: UTF8.self) }

    func take(_ piece: UnsafeRawBufferPointer) {
        pieces.append(piece.count)
        bytes.append(contentsOf: piece)
    }
}

/// A source serving `head`, then `line` over and over (`count` times, or without end), `piece`
/// bytes at most per call; it counts what it served and notes when it reached its end.
private final class CountingSource {
    let head: [UInt8]
    let line: [UInt8]
    var linesLeft: Int?
    let piece: Int
    var served = 0
    var finished = false
    private var pending: [UInt8] = []

    init(head: String, line: String, count: Int?, piece: Int = 1 << 16) {
        self.head = Array(head.utf8)
        self.line = Array(line.utf8)
        linesLeft = count
        self.piece = piece
        pending = self.head
    }

    func read(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
        while pending.count < min(buffer.count, piece), linesLeft.map({ $0 > 0 }) ?? true {
            pending += line
            linesLeft = linesLeft.map { $0 - 1 }
        }
        let count = min(buffer.count, piece, pending.count)
        if count == 0 { finished = true }
        buffer.copyBytes(from: pending.prefix(count))
        pending.removeFirst(count)
        served += count
        return count
    }
}

@Suite("ostd-mm run: streaming output and input")
struct ScriptStreamingTests {
    static let rwu = Prot(writable: true, user: true)

    /// A runner with 1 MiB of `0xab` mapped at 0x400000 (and nothing after it).
    static func filledRunner(audit: Bool = false) throws -> ScriptRunner {
        let runner = try ScriptRunner(memory: 32 << 20, audit: audit)
        runner.run(ScriptOp(line: 1, op: .map(va: 0x40_0000, len: 1 << 20, prot: rwu, page: .size4K, cache: .wb)))
        runner.run(ScriptOp(line: 2, op: .fill(va: 0x40_0000, len: 1 << 20, byte: 0xab)))
        return runner
    }

    // MARK: Output

    @Test("a 1 MiB read is written in pieces no larger than the output's buffer; its result holds no data")
    func largeReadIsWrittenInBoundedPieces() throws {
        let runner = try Self.filledRunner()
        let sink = RecordingSink()
        let output = ScriptOutput(capacity: 4096, sink: sink.take)
        let result = runner.run(ScriptOp(line: 3, op: .read(va: 0x40_0000, len: 1 << 20)), printingTo: output, json: true)
        output.flush()
        #expect(result.fields.map(\.1) == [.userBytes(va: 0x40_0000, count: 1 << 20)])
        #expect(sink.pieces.allSatisfy { $0 <= 4096 })
        #expect(output.peakPending <= 4096)
        #expect(sink.pieces.count >= (2 << 20) / 4096)
        let expected = "{\"line\":3,\"op\":\"read\",\"ok\":true,\"data\":\"" + String(repeating: "ab", count: 1 << 20) + "\"}\n"
        #expect(sink.text == expected)
    }

    @Test("a large read that faults streams the bytes before the fault, after its error fields, as text too")
    func faultingLargeReadStreams() throws {
        let runner = try Self.filledRunner()
        let sink = RecordingSink()
        let output = ScriptOutput(capacity: 1000, sink: sink.take)
        runner.run(ScriptOp(line: 3, op: .read(va: 0x40_0000 + 16, len: 1 << 20)), printingTo: output, json: false)
        output.flush()
        #expect(sink.pieces.allSatisfy { $0 <= 1000 })
        let copied = (1 << 20) - 16
        let expected = "    3  read    FAILED page-fault       va=0x500000 copied=\(copied) data="
            + String(repeating: "ab", count: copied) + "  (page fault at 0x500000 after \(copied) byte(s))\n"
        #expect(sink.text == expected)
    }

    @Test("streamed and materialized results print the same line", arguments: [100, 64 << 10, (64 << 10) + 1, 1 << 20, (1 << 20) + 1])
    func streamedEqualsMaterialized(length: UInt64) throws {
        let runner = try Self.filledRunner()
        let op = ScriptOp(line: 3, op: .read(va: 0x40_0000, len: length))
        let whole = runner.run(op)
        #expect(!whole.fields.contains { if case .userBytes = $0.1 { true } else { false } })
        for json in [true, false] {
            let sink = RecordingSink()
            let output = ScriptOutput(capacity: 512, sink: sink.take)
            runner.run(op, printingTo: output, json: json)
            output.flush()
            #expect(sink.text == (json ? whole.jsonLine : whole.textLine) + "\n", "json: \(json)")
        }
    }

    @Test("audited, a large read is read (and checked) between the pieces of its output")
    func auditedReadInterleavesWithOutput() throws {
        let runner = try Self.filledRunner(audit: true)
        let auditor = try #require(runner.auditor)
        var checkedAtPiece: [Int] = []
        let output = ScriptOutput(capacity: 4096) { _ in checkedAtPiece.append(auditor.operationsChecked) }
        let result = runner.run(ScriptOp(line: 3, op: .read(va: 0x40_0000, len: 1 << 20)), printingTo: output, json: true)
        output.flush()
        #expect(result.ok)
        #expect(runner.auditViolations().isEmpty)
        // 2 MiB of hex in 4 KiB pieces while 64 KiB chunks are read: the count of checked reader
        // operations grows between pieces, so reading and writing alternate.
        #expect(Set(checkedAtPiece).count >= 8)
    }

    @Test("JSON strings escape quotes, backslashes and control characters, and copy the rest as it is")
    func jsonStrings() {
        let text = rendered { $0.appendJSONString("a\"b\\c\nd\re\tf\u{1}\u{1f}é€\u{7f}") }
        #expect(text == "\"a\\\"b\\\\c\\nd\\re\\tf\\u0001\\u001fé€\u{7f}\"")
    }

    // MARK: Input

    @Test("a line longer than 1 MiB is rejected with its FILE:LINE; one of exactly 1 MiB is not")
    func overLongLine() {
        let limit = LineReader.maxLineLength
        let exact = "query 0" + String(repeating: " ", count: limit - 7)
        var output: [String] = []
        var errors: [String] = []
        var code = runScriptCommand(RunOptions(script: "t.ostd", json: true, memory: "16M"), text: "query 1\n\(exact)\r\n",
                                    output: { output.append($0) }, errors: { errors.append($0) })
        #expect(code == 0 && errors.isEmpty && output.count == 3)
        output = []
        code = runScriptCommand(RunOptions(script: "t.ostd", json: true, memory: "16M"), text: "query 1\n\(exact) \nquery 2\n",
                                output: { output.append($0) }, errors: { errors.append($0) })
        #expect(code == 2)
        #expect(output.isEmpty)
        #expect(errors == ["t.ostd:2: error: line longer than \(limit) bytes"])
    }

    @Test("input without a newline (like /dev/zero) stops after about a line's worth")
    func endlessLineStops() {
        let source = CountingSource(head: "", line: String(repeating: "\u{0}", count: 4096), count: nil)
        var errors: [String] = []
        let output = ScriptOutput { _ in Issue.record("nothing may be written") }
        let code = runScriptCommand(RunOptions(script: "/dev/zero"), source: source.read, output: output,
                                    errors: { errors.append($0) })
        #expect(code == 2)
        #expect(errors == ["/dev/zero:1: error: line longer than \(LineReader.maxLineLength) bytes"])
        #expect(source.served <= LineReader.maxLineLength + 2 * LineReader.blockSize)
    }

    @Test("an invalid first line of an endless input is reported after reading one block")
    func invalidFirstLineStopsReading() {
        let source = CountingSource(head: "frob 1\n", line: "query 0\n", count: nil)
        var errors: [String] = []
        let output = ScriptOutput { _ in Issue.record("nothing may be written") }
        let code = runScriptCommand(RunOptions(script: "-"), source: source.read, output: output,
                                    errors: { errors.append($0) })
        #expect(code == 2)
        #expect(errors.count == 1 && errors[0].hasPrefix("<stdin>:1: error: unknown op 'frob'"))
        #expect(source.served <= LineReader.blockSize)
    }

    @Test("a valid script is read to its end before its first op prints; an invalid last line prints nothing")
    func runsOnlyAfterTheWholeInput() {
        let valid = CountingSource(head: "map 0x400000 4K rwu\n", line: "query 0x400000\n", count: 2_000, piece: 100)
        var firstOutputAfterEnd: Bool? = nil
        let output = ScriptOutput(flushesLines: true) { _ in
            if firstOutputAfterEnd == nil { firstOutputAfterEnd = valid.finished }
        }
        var errors: [String] = []
        let code = runScriptCommand(RunOptions(script: "t.ostd", memory: "16M"), source: valid.read, output: output,
                                    errors: { errors.append($0) })
        #expect(code == 0 && errors.isEmpty)
        #expect(firstOutputAfterEnd == true)

        let invalid = CountingSource(head: String(repeating: "query 0\n", count: 2_000) + "query\n", line: "", count: 0, piece: 100)
        let silent = ScriptOutput { _ in Issue.record("nothing may be written") }
        let failed = runScriptCommand(RunOptions(script: "t.ostd", memory: "16M"), source: invalid.read, output: silent,
                                      errors: { errors.append($0) })
        #expect(failed == 2)
        #expect(errors.last?.hasPrefix("t.ostd:2001: error: 'query' takes 1 argument") == true)
    }

    // MARK: Packing

    @Test("packed ops decode to what was packed, every kind and extreme value")
    func packingRoundTrips() {
        let all = Prot(writable: true, executable: true, user: true, global: true)
        let ops: [ScriptOp] = [
            ScriptOp(line: 1, op: .map(va: .max, len: 0, prot: all, page: .size1G, cache: .uc)),
            ScriptOp(line: 1, op: .map(va: 0x40_0000, len: 4096, prot: Prot(), page: .size2M, cache: .wc)),
            ScriptOp(line: 7, op: .unmap(va: 1 << 63, len: 127)),
            ScriptOp(line: 3, op: .protect(va: 128, len: 0x7fff_ffff_f000, prot: Prot(user: true, global: true))),
            ScriptOp(line: 1 << 40, op: .query(va: 0)),
            ScriptOp(line: 1 << 40 + 1, op: .write(va: 5, bytes: [0, 0x80, 0xff])),
            ScriptOp(line: 1 << 40 + 2, op: .fill(va: 6, len: 1 << 30, byte: 0xff)),
            ScriptOp(line: 1 << 40 + 3, op: .read(va: 7, len: .max)),
            ScriptOp(line: 1 << 40 + 4, op: .copy(src: 1, dst: 2, len: 3)),
        ]
        let script = Script(ops: ops)
        #expect(script.count == ops.count)
        #expect(script.ops == ops)
    }

    @Test("a `query 0` per line packs into 3 bytes an op")
    func queriesPackSmall() throws {
        let script = try ScriptParser.parse(String(repeating: "query 0\n", count: 1000), file: "t.ostd")
        #expect(script.count == 1000)
        #expect(script.packedSize == 3000)
    }
}

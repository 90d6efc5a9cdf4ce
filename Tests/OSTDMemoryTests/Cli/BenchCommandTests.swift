// `ostd-mm bench`'s command line, run as a child process (the command lives in the executable,
// which the tests cannot import): `--filter` names a benchmark exactly and `--prefix` makes it a
// prefix; a filter that selects nothing is a usage error (exit 2, the reason, nothing on standard
// output); `--list` and `--list --json`; and `--count-instructions N`, the mode
// scripts/bench-instructions runs under callgrind, with its own usage errors. Nothing is timed:
// `--list` runs no benchmark, and the one counted run is 64 operations of a baseline. The
// `ostd-mm` is the one `swift test` built next to the test binary.

import Foundation
import Testing

/// What one run of `ostd-mm` printed and returned.
struct ToolRun {
    var code: Int32
    var output: [String]
    var errors: String
}

/// The `ostd-mm` built next to this test binary.
let ostdMMPath: String = {
    let testBinary = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: testBinary).deletingLastPathComponent().appendingPathComponent("ostd-mm").path
}()

/// Runs `ostd-mm ARGUMENTS` to its end.
func runTool(_ arguments: [String]) throws -> ToolRun {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: ostdMMPath)
    process.arguments = arguments
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    // Both outputs are far below a pipe's buffer, so reading one to its end cannot block the other.
    let out = output.fileHandleForReading.readDataToEndOfFile()
    let err = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let lines = String(decoding: out, as: UTF8.self).split(separator: "\n").map(String.init)
    return ToolRun(code: process.terminationStatus, output: lines, errors: String(decoding: err, as: UTF8.self))
}

@Suite("ostd-mm bench: the command line")
struct BenchCommandTests {
    init() throws {
        try #require(FileManager.default.isExecutableFile(atPath: ostdMMPath), "no ostd-mm at \(ostdMMPath)")
    }

    /// Every benchmark's name, in the order they run.
    func allNames() throws -> [String] {
        let run = try runTool(["bench", "--list"])
        #expect(run.code == 0, "\(run.errors)")
        return run.output
    }

    @Test("--filter NAME selects that benchmark alone, even where other names start with it")
    func filterIsExact() throws {
        let names = try allNames()
        #expect(names.contains("frame-alloc-free") && names.contains("frame-alloc-free-zeroed"))
        #expect(try runTool(["bench", "--list", "--filter", "frame-alloc-free"]).output == ["frame-alloc-free"])
        #expect(try runTool(["bench", "--list", "--filter", "map-4k-seq"]).output == ["map-4k-seq"])
    }

    @Test("--prefix selects every benchmark whose name starts with the text, in the order they run")
    func prefixSelectsByPrefix() throws {
        let names = try allNames()
        let run = try runTool(["bench", "--list", "--filter", "map-", "--prefix"])
        #expect(run.code == 0)
        #expect(run.output == names.filter { $0.hasPrefix("map-") })
        #expect(run.output.count == 3)
        let scaling = try runTool(["bench", "--list", "--filter", "scale-", "--prefix"])
        #expect(scaling.output == names.filter { $0.hasPrefix("scale-") } && scaling.output.count == 8)
    }

    @Test("repeated filters select the union, in the order the benchmarks run")
    func repeatedFilters() throws {
        let run = try runTool(["bench", "--list", "--filter", "zero-4k", "--filter", "map-4k-seq"])
        #expect(run.output == ["map-4k-seq", "zero-4k"])
    }

    @Test("a filter that selects nothing is a usage error: exit 2, the reason and the names, nothing on standard output",
          arguments: [
              (["--filter", "map"], "no benchmark is named 'map'"),
              (["--filter", "nosuch"], "no benchmark is named 'nosuch'"),
              (["--filter", "map-4k-seq", "--filter", "nosuch"], "no benchmark is named 'nosuch'"),
              (["--filter", "nosuch", "--prefix"], "no benchmark's name starts with 'nosuch'"),
              (["--prefix"], "--prefix needs a --filter"),
          ])
    func selectingNothingIsAUsageError(_ arguments: [String], _ reason: String) throws {
        let run = try runTool(["bench"] + arguments)
        #expect(run.code == 2)
        #expect(run.errors.contains(reason), "\(run.errors)")
        #expect(run.output.isEmpty)
        if arguments.contains("nosuch") { #expect(run.errors.contains("the benchmarks are: frame-alloc-free, ")) }
    }

    @Test("--list --json gives each benchmark's operations and whether its instructions can be counted")
    func listJson() throws {
        let run = try runTool(["bench", "--list", "--json"])
        #expect(run.code == 0)
        #expect(run.output.count == (try allNames()).count)
        for line in run.output {
            let record = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            let name = try #require(record["bench"] as? String)
            #expect((record["operations"] as? Int ?? 0) > 0, "\(line)")
            // The scaling benchmarks' threads spin at a start line: not countable.
            #expect(record["countable"] as? Bool == !name.hasPrefix("scale-"), "\(line)")
        }
    }

    @Test("--count-instructions N runs the benchmark once with N operations")
    func countInstructions() throws {
        let run = try runTool(["bench", "--filter", "atomic-inc-dec", "--count-instructions", "64"])
        #expect(run.code == 0, "\(run.errors)")
        #expect(run.output == ["{\"bench\": \"atomic-inc-dec\", \"counted_operations\": 64}"])
    }

    @Test("--count-instructions refuses what it cannot count exactly",
          arguments: [
              (["--filter", "scale-1g-t1", "--count-instructions", "64"], "scale-1g-t1's instructions cannot be counted"),
              (["--filter", "atomic-inc-dec", "--count-instructions", "100"], "a positive multiple of 64"),
              (["--filter", "map-2m-seq", "--count-instructions", "16384"], "more than map-2m-seq's 8192 operations"),
          ])
    func countInstructionsUsageErrors(_ arguments: [String], _ reason: String) throws {
        let run = try runTool(["bench"] + arguments)
        #expect(run.code == 2)
        #expect(run.errors.contains(reason), "\(run.errors)")
        #expect(run.output.isEmpty)
    }
}

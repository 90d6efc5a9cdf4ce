// The README's sample sessions, checked against the tool: the scripts it shows are the files in
// `examples/`, and each `$ swift run ostd-mm …` block is exactly what that command prints (run
// here in process, as `ostd-mm` runs it). When the tool's output changes, this test says which
// README line to regenerate, so the README cannot drift from the tool.

import Foundation
import Testing
import OSTDScript

/// The repository's root, found from this file's path (`Tests/OSTDMemoryTests/Script/…`).
private let root: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The text of `path` under the repository's root.
private func repositoryFile(_ path: String) throws -> String {
    try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
}

/// The lines of the code block of `document` (the README unless said) that starts with the line
/// `first` (that line excluded), up to its closing fence.
private func readmeBlock(startingWith first: String, in document: String = "README.md") throws -> [String] {
    let lines = try repositoryFile(document).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let start = try #require(lines.firstIndex(of: first), "the README has no line '\(first)'")
    let end = try #require(lines[(start + 1)...].firstIndex(of: "```"))
    return Array(lines[(start + 1)..<end])
}

/// What `ostd-mm run` (with `--json` if `json`) or `dump` prints for the script at `path`
/// (standard output and standard error, in order).
private func toolOutput(_ command: String, _ path: String, json: Bool = false) throws -> (code: Int32, lines: [String]) {
    var lines: [String] = []
    let text = try repositoryFile(path)
    let code = command == "run"
        ? runScriptCommand(RunOptions(script: path, json: json), text: text, output: { lines.append($0) }, errors: { lines.append($0) })
        : dumpScriptCommand(DumpOptions(script: path), text: text, output: { lines.append($0) }, errors: { lines.append($0) })
    return (code, lines.flatMap { $0.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) })
}

@Suite struct ReadmeSamplesTests {
    @Test func theScriptShownIsExamplesHello() throws {
        let shown = try readmeBlock(startingWith: "# examples/hello.ostd: a program's code, data and a huge-page heap")
        let file = try repositoryFile("examples/hello.ostd").split(separator: "\n").map(String.init)
        #expect(["# examples/hello.ostd: a program's code, data and a huge-page heap"] + shown == file)
    }

    @Test func runOutputIsWhatTheToolPrints() throws {
        let shown = try readmeBlock(startingWith: "$ swift run ostd-mm run examples/hello.ostd")
        let (code, printed) = try toolOutput("run", "examples/hello.ostd")
        #expect(code == 0)
        #expect(printed == shown)
    }

    @Test func dumpOutputIsWhatTheToolPrints() throws {
        let shown = try readmeBlock(startingWith: "$ swift run ostd-mm dump examples/hello.ostd --svg hello.svg")
        let (code, printed) = try toolOutput("dump", "examples/hello.ostd")
        #expect(code == 0)
        #expect(printed == shown)
    }

    @Test func theScriptGuidesFirstExampleIsWhatTheToolPrints() throws {
        let guide = "docs/scripts.md"
        let shown = try readmeBlock(startingWith: "# a tiny program: code, data, a huge-page heap", in: guide)
        let file = try repositoryFile("examples/first.ostd").split(separator: "\n").map(String.init)
        #expect(["# a tiny program: code, data, a huge-page heap"] + shown == file)
        let json = try readmeBlock(startingWith: "{\"line\":2,\"op\":\"map\",\"ok\":true,\"pages\":4}", in: guide)
        let (code, printed) = try toolOutput("run", "examples/first.ostd", json: true)
        #expect(code == 0)
        #expect(["{\"line\":2,\"op\":\"map\",\"ok\":true,\"pages\":4}"] + json == printed)
    }

    @Test func theInvalidScriptIsRefusedAsShown() throws {
        let shown = try readmeBlock(startingWith: "$ cat examples/bad.ostd")
        let file = try repositoryFile("examples/bad.ostd").split(separator: "\n").map(String.init)
        #expect(Array(shown.prefix(file.count)) == file)
        let run = try #require(shown.firstIndex(of: "$ swift run ostd-mm run examples/bad.ostd"))
        let (code, printed) = try toolOutput("run", "examples/bad.ostd")
        #expect(code == 2)
        // The README adds a note after the message: "(exit 2, nothing ran)".
        let message = try #require(printed.first)
        #expect(printed.count == 1 && shown[run + 1].hasPrefix(message + " "))
        #expect(shown[run + 1].hasSuffix("(exit 2, nothing ran)"))
    }
}

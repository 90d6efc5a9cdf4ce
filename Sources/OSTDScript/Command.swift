// `ostd-mm run` as a function: arguments in, output and an exit code out. The script is read and
// validated line by line as it arrives (LineReader.swift), and runs only when all of it is valid;
// each op's result is written to a bounded `ScriptOutput` as it is produced. The command-line tool
// calls it with standard input or a file and standard output; tests call it with text and lines.
//
// Exit codes (SCRIPT.md): 0 the script ran (op failures are results); 2 the script or the
// arguments are invalid, and nothing ran and nothing was written; 3 an audit violation; 1
// anything else (for example, the image could not be written).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The options of `ostd-mm run`.
public struct RunOptions: Sendable {
    public var script: String
    public var json = false
    public var memory = "256M"
    public var image: String? = nil
    public var audit = false

    public init(script: String, json: Bool = false, memory: String = "256M", image: String? = nil, audit: Bool = false) {
        self.script = script
        self.json = json
        self.memory = memory
        self.image = image
        self.audit = audit
    }
}

/// Runs a script as `ostd-mm run` does, its standard output as lines.
///
/// - Parameters:
///   - text: the script's text, or `nil` to read `options.script` (`-`: standard input).
///   - output: receives each line of standard output.
///   - errors: receives each line of standard error.
///   - progress: called after each op with the number done and the total.
/// - Returns: the exit code.
public func runScriptCommand(_ options: RunOptions, text: String? = nil,
                             output: (String) -> Void, errors: (String) -> Void,
                             progress: (Int, Int) -> Void = { _, _ in }) -> Int32 {
    runScriptCommand(options, text: text, output: output, errors: errors, progress: progress, afterOp: { _ in })
}

/// Runs a script as `ostd-mm run` does, reading it from `source` (or `options.script` when `nil`)
/// line by line and writing standard output to `output` as each result is produced.
public func runScriptCommand(_ options: RunOptions, source: ScriptByteSource? = nil, output: ScriptOutput,
                             errors: (String) -> Void, progress: (Int, Int) -> Void = { _, _ in }) -> Int32 {
    runScriptCommand(options, source: source, output: output, errors: errors, progress: progress, afterOp: { _ in })
}

/// `runScriptCommand` with lines, calling `afterOp` with the runner after each op (and before
/// its audit): how tests inject a fault that the audit must catch.
func runScriptCommand(_ options: RunOptions, text: String?, output: (String) -> Void, errors: (String) -> Void,
                      progress: (Int, Int) -> Void, afterOp: (ScriptRunner) -> Void) -> Int32 {
    withoutActuallyEscaping(output) { output in
        let lines = LineCollector(output)
        let buffer = ScriptOutput(sink: lines.take)
        return runScriptCommand(options, source: text.map { byteSource($0.utf8) }, output: buffer,
                                errors: errors, progress: progress, afterOp: afterOp)
    }
}

/// The command itself: each op's line is written to `output` as the op runs; `output` is flushed
/// before anything goes to `errors` after the first op, and at the end.
func runScriptCommand(_ options: RunOptions, source: ScriptByteSource?, output: ScriptOutput, errors: (String) -> Void,
                      progress: (Int, Int) -> Void, afterOp: (ScriptRunner) -> Void) -> Int32 {
    let prepared: (ScriptRunner, Script)
    switch prepare(options, source: source) {
    case .success(let value): prepared = value
    case .failure(let problem):
        errors(problem.description)
        return 2
    }
    let (runner, script) = prepared
    defer { output.flush() }
    for (i, op) in script.enumerated() {
        runner.run(op, printingTo: output, json: options.json)
        progress(i + 1, script.count)
        afterOp(runner)
        if let lines = runner.auditFailure(after: op) {
            output.flush()
            for line in lines { errors(line) }
            return 3
        }
    }
    output.append(options.json ? runner.summary.jsonLine : runner.summary.textLine)
    output.endLine()
    if let image = options.image, let problem = runner.writeImage(to: image) {
        output.flush()
        errors("ostd-mm: error: \(problem)")
        return 1
    }
    return 0
}

/// Runs a script's ops without printing their results, for commands that look at the machine
/// afterwards (`ostd-mm hwcheck`): the runner after the last op, or why the script could not start
/// (a usage error: exit 2, nothing ran).
public func runScriptQuietly(_ options: RunOptions) -> Result<ScriptRunner, StartProblem> {
    prepare(options, source: nil).map { runner, script in
        runner.run(script)
        return runner
    }
}

/// Why `run` refused to start: a script error (`FILE:LINE: error: …`) or an argument error.
public enum StartProblem: Error, CustomStringConvertible {
    case script(ScriptError)
    case argument(String)

    public var description: String {
        switch self {
        case .script(let error): return error.description
        case .argument(let message): return "ostd-mm: error: \(message)"
        }
    }
}

/// Checks the options, reads and parses the script (`text`'s bytes, or the file's), and builds
/// the runner.
func prepare(_ options: RunOptions, text: String?) -> Result<(ScriptRunner, Script), StartProblem> {
    prepare(options, source: text.map { byteSource($0.utf8) })
}

/// The largest machine `--audit` takes: its quiescent checks read every metadata slot after every
/// op (64 GiB: 16 Mi slots, about half a second per op).
let auditMemoryLimit = 64 << 30

/// Checks the options, parses the script as `source` (or the file `options.script`) delivers it,
/// stopping at the first invalid line, and builds the runner.
func prepare(_ options: RunOptions, source: ScriptByteSource?) -> Result<(ScriptRunner, Script), StartProblem> {
    let size: Int
    switch MemorySize.parse(options.memory) {
    case .success(let bytes): size = bytes
    case .failure(let problem): return .failure(.argument(problem.description))
    }
    if options.audit && size > auditMemoryLimit {
        return .failure(.argument("--audit checks every metadata slot after every op, so it takes --memory up to "
                                  + "\(auditMemoryLimit >> 30)G (got \(options.memory))"))
    }
    let name = options.script == "-" ? "<stdin>" : options.script
    let unreadable = StartProblem.argument("cannot read \(name); give a readable file, or - for standard input")
    guard let source = source ?? fileByteSource(options.script) else { return .failure(unreadable) }
    var failed = false
    let script: Script
    do {
        script = try ScriptParser.parse(reading: { buffer in
            let count = source(buffer)
            if count < 0 { failed = true }
            return count
        }, file: name)
    } catch {
        return .failure(failed ? unreadable : .script(error))
    }
    if let image = options.image, let problem = outputProblem(image, option: "--image", script: options.script) {
        return .failure(.argument(problem))
    }
    do {
        return .success((try ScriptRunner(memory: size, audit: options.audit), script))
    } catch {
        return .failure(.argument("\(error)"))
    }
}

/// The text of the file at `path` (`-`: standard input), or `nil` when it cannot be read.
public func readFile(_ path: String) -> String? {
    let fd = path == "-" ? 0 : open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { if fd != 0 { close(fd) } }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 { return nil }
        if count == 0 { break }
        bytes.append(contentsOf: buffer[..<count])
    }
    return String(decoding: bytes, as: UTF8.self)
}

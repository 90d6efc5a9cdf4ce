// `ostd-mm dump SCRIPT` as a function, and `runScript`, which it is built on: runs a script as
// `run` does, reports only the ops that failed, then prints the dump (AddressSpaceDump.swift) and,
// with `--svg FILE`, writes the picture (Svg.swift). Exit codes are `run`'s: 0 the script ran, 2
// invalid script or arguments (`FILE:LINE: error: …`; nothing ran), 3 an audit violation (with
// `--audit`; nothing is dumped), 1 anything else (the SVG could not be written).

/// Why a script did not run to its end, as `run` reports it on standard error.
public enum ScriptRunError: Error, Equatable, CustomStringConvertible {
    /// It could not start: the line `run` prints (`FILE:LINE: error: …` or `ostd-mm: error: …`).
    case notStarted(String)
    /// With `--audit`, the specification was violated: `run`'s lines for it.
    case auditViolated([String])

    public var description: String {
        switch self {
        case .notStarted(let line): return line
        case .auditViolated(let lines): return lines.joined(separator: "\n")
        }
    }
}

/// Parses `options.script` (or `text`) and runs every op on a fresh machine, as `run` does, calling
/// `failure` for each op that fails.
///
/// - Returns: the runner, holding the machine and the space the script left; or why nothing ran.
public func runScript(_ options: RunOptions, text: String? = nil,
                      failure: (OpResult) -> Void = { _ in }) -> Result<ScriptRunner, ScriptRunError> {
    switch prepare(options, text: text) {
    case .failure(let problem):
        return .failure(.notStarted(problem.description))
    case .success(let (runner, script)):
        for op in script {
            let result = runner.run(op) { _ in }
            if !result.ok { failure(result) }
            if let lines = runner.auditFailure(after: op) { return .failure(.auditViolated(lines)) }
        }
        return .success(runner)
    }
}

extension OpResult {
    /// The op's failure as one line, e.g. `line 7: map failed: out-of-range (…)`.
    public var failureLine: String {
        "line \(line): \(op) failed: \(error?.rawValue ?? "?")" + (message.map { " (\($0))" } ?? "")
    }
}

/// The options of `ostd-mm dump`.
public struct DumpOptions: Sendable {
    public var script: String
    public var memory = "256M"
    public var svg: String? = nil
    public var audit = false

    public init(script: String, memory: String = "256M", svg: String? = nil, audit: Bool = false) {
        self.script = script
        self.memory = memory
        self.svg = svg
        self.audit = audit
    }
}

/// Runs a script as `ostd-mm dump` does.
///
/// - Parameters:
///   - text: the script's text, or `nil` to read `options.script` (`-`: standard input).
///   - output: receives each line of standard output: the failed ops, the tree, the map.
///   - errors: receives each line of standard error.
/// - Returns: the exit code.
public func dumpScriptCommand(_ options: DumpOptions, text: String? = nil,
                              output: (String) -> Void, errors: (String) -> Void) -> Int32 {
    if let path = options.svg, let problem = outputProblem(path, option: "--svg", script: options.script) {
        errors("ostd-mm: error: \(problem)")
        return 2
    }
    let runOptions = RunOptions(script: options.script, memory: options.memory, audit: options.audit)
    let runner: ScriptRunner
    switch runScript(runOptions, text: text, failure: { output($0.failureLine) }) {
    case .success(let value): runner = value
    case .failure(.auditViolated(let lines)):
        for line in lines { errors(line) }
        return 3
    case .failure(.notStarted(let line)):
        errors(line)
        return 2
    }
    let snapshot = runner.snapshot
    if runner.opsFailed > 0 { output("") }
    for line in AddressSpaceDump.lines(snapshot) { output(line) }
    if let path = options.svg {
        let name = options.script == "-" ? "<stdin>" : options.script
        let svg = AddressSpaceDump.svg(snapshot.view, title: "Address space after \(baseName(name))")
        if let problem = writeText(svg, to: path) {
            errors("ostd-mm: error: \(problem)")
            return 1
        }
    }
    return 0
}

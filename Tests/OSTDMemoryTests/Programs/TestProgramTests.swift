// The test programs (Tests/Programs: static, libc-free x86-64 executables that exercise mmap,
// munmap, mprotect, brk and madvise) run on the host's Linux, and their stdout and exit status
// must match the golden NAME.expected files. The same binaries are meant to run under our own
// kernel later and be held to the same files: `buildTestPrograms()` is the entry point for that.
//
// A program's status is what a shell reports: the exit status, or 128 + the signal number when
// a signal killed it (SIGSEGV: 139). Each program runs with an empty environment, stdin from
// /dev/null, core dumps off, and a 10-second limit.

import Testing

#if canImport(Glibc)
import Glibc
#endif

/// What a program prints on stdout and the status it ends with.
struct ProgramOutcome: Equatable, Sendable, CustomStringConvertible {
    var stdout: String
    var status: Int32

    /// The golden-file form: the stdout, then a final line `status N`.
    var description: String { stdout + "status \(status)\n" }

    /// Parses the golden-file form; nil unless the last line is `status N`.
    init?(golden text: String) {
        guard text.hasSuffix("\n") else { return nil }
        var lines = text.dropLast().split(separator: "\n", omittingEmptySubsequences: false)
        guard let last = lines.popLast(), last.hasPrefix("status "), let status = Int32(last.dropFirst(7)) else {
            return nil
        }
        self.stdout = lines.map { $0 + "\n" }.joined()
        self.status = status
    }

    init(stdout: String, status: Int32) {
        self.stdout = stdout
        self.status = status
    }
}

/// One built test program: its executable, the arguments it runs with (after argv[0]), and the
/// outcome it must have.
struct TestProgram: Sendable {
    var name: String
    var path: String
    var arguments: [String]
    var expected: ProgramOutcome
}

struct TestProgramError: Error, Sendable, CustomStringConvertible {
    var description: String
}

/// The programs, by name (Tests/Programs/NAME.c). A test checks that this is every .c file there.
let testProgramNames = [
    "hello", "mmap-sizes", "munmap-middle", "mprotect-write", "brk", "map-fixed", "madvise", "guard-page",
    "fault-storm",
]

/// The arguments a program runs with; the others run with none.
let testProgramArguments: [String: [String]] = [
    "hello": ["alpha", "two words", ""]
]

/// Tests/Programs, found from this file's path (Tests/OSTDMemoryTests/Programs/this file).
let testProgramsDirectory: String = {
    var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    return parts.joined(separator: "/") + "/Programs"
}()

/// The C compiler build.sh will use ($CC or cc), if it is on PATH.
let testProgramCompiler: String? = {
    let cc = getenv("CC").map { String(cString: $0) } ?? "cc"
    if cc.contains("/") { return access(cc, X_OK) == 0 ? cc : nil }
    let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
    for dir in path.split(separator: ":") where access("\(dir)/\(cc)", X_OK) == 0 { return "\(dir)/\(cc)" }
    return nil
}()

/// Builds every test program into a fresh temporary directory (once per test run; later calls
/// return the same programs) and reads its golden file.
func buildTestPrograms() throws -> [TestProgram] {
    try builtTestPrograms.get()
}

nonisolated(unsafe) private var buildDirectory: String?

private let builtTestPrograms: Result<[TestProgram], TestProgramError> = {
    var template = Array("/tmp/ostd-test-programs.XXXXXX".utf8CString)
    guard let dir = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }).map({ String(cString: $0) })
    else { return .failure(TestProgramError(description: "mkdtemp failed")) }
    buildDirectory = dir
    // The directory holds only files (the programs, their outputs, the build log): empty it and
    // remove it when the test process exits.
    atexit {
        guard let dir = buildDirectory, let d = opendir(dir) else { return }
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { unlink(dir + "/" + name) }
        }
        closedir(d)
        rmdir(dir)
    }
    let log = dir + "/build.log"
    let status = spawnAndWait(
        "/bin/sh", [testProgramsDirectory + "/build.sh", dir], stdout: log, stderr: log, environment: inheritedEnvironment(),
        timeoutSeconds: 120)
    guard status == 0 else {
        return .failure(TestProgramError(description: "build.sh failed (status \(status)):\n" + readFile(log)))
    }
    var programs: [TestProgram] = []
    for name in testProgramNames {
        let golden = testProgramsDirectory + "/\(name).expected"
        guard let expected = ProgramOutcome(golden: readFile(golden)) else {
            return .failure(TestProgramError(description: "\(golden): missing, or no final `status N` line"))
        }
        programs.append(
            TestProgram(name: name, path: dir + "/" + name, arguments: testProgramArguments[name] ?? [], expected: expected))
    }
    return .success(programs)
}()

/// Runs `program` on the host and returns its outcome (status -1 on a timeout).
/// stdout and stderr go to `outputPrefix`.stdout and .stderr (by default next to the program).
func runOnHost(_ program: TestProgram, timeoutSeconds: Int = 10, outputPrefix: String? = nil) -> (
    outcome: ProgramOutcome, stderr: String
) {
    let prefix = outputPrefix ?? program.path
    let out = prefix + ".stdout", err = prefix + ".stderr"
    defer { if outputPrefix != nil { unlink(out); unlink(err) } }
    // The shell only turns core dumps off and then becomes the program (exec), so the status seen
    // is the program's own.
    let status = spawnAndWait(
        "/bin/sh", ["-c", "ulimit -c 0; exec \"$0\" \"$@\"", program.path] + program.arguments, stdout: out, stderr: err,
        environment: [], timeoutSeconds: timeoutSeconds)
    return (ProgramOutcome(stdout: readFile(out), status: status), readFile(err))
}

/// posix_spawn `path` with `arguments` (argv[0] is `path`), stdin from /dev/null, stdout and
/// stderr to files (the same file if the paths are equal), and waits up to `timeoutSeconds`.
/// Returns the shell-style status: the exit status, 128 + signal when killed, -1 on a timeout
/// (the process is then killed) or when it could not be started.
private func spawnAndWait(
    _ path: String, _ arguments: [String], stdout: String, stderr: String, environment: [String], timeoutSeconds: Int
) -> Int32 {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    if stderr == stdout {
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
    } else {
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    }
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    let envp = environment.map { strdup($0) } + [nil]
    defer { (argv + envp).forEach { free($0) } }
    var pid = pid_t()
    guard posix_spawn(&pid, path, &actions, nil, argv, envp) == 0 else { return -1 }

    var status: Int32 = 0
    var waited: Int32 = 0
    for _ in 0..<(timeoutSeconds * 200) {
        waited = waitpid(pid, &status, WNOHANG)
        if waited == pid || (waited == -1 && errno != EINTR) { break }
        usleep(5_000)
    }
    if waited != pid {
        kill(pid, SIGKILL)
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        return -1
    }
    let signal = status & 0x7f
    return signal == 0 ? (status >> 8) & 0xff : 128 + signal
}

private func inheritedEnvironment() -> [String] {
    var result: [String] = []
    var p = environ
    while let entry = p.pointee {
        result.append(String(cString: entry))
        p += 1
    }
    return result
}

/// The whole file as UTF-8 text ("" when it cannot be read).
private func readFile(_ path: String) -> String {
    guard let f = fopen(path, "rb") else { return "" }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&buffer, 1, buffer.count, f)
        if n <= 0 { break }
        bytes += buffer[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

@Suite(.enabled(if: testProgramCompiler != nil, "no C compiler ($CC or cc) on PATH: the test programs cannot be built"))
struct TestProgramTests {
    @Test("every Tests/Programs/*.c is a listed program with a golden file")
    func everyProgramIsListed() throws {
        guard let dir = opendir(testProgramsDirectory) else {
            Issue.record("cannot open \(testProgramsDirectory)")
            return
        }
        defer { closedir(dir) }
        var sources: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasSuffix(".c") { sources.append(String(name.dropLast(2))) }
        }
        #expect(sources.sorted() == testProgramNames.sorted())
        #expect(try buildTestPrograms().map(\.name) == testProgramNames)
    }

    @Test("a program prints its golden stdout and ends with its golden status on the host", arguments: testProgramNames)
    func hostRunMatchesGolden(name: String) throws {
        let program = try #require(try buildTestPrograms().first { $0.name == name })
        let (outcome, stderr) = runOnHost(program)
        #expect(outcome.status != -1, "\(name) timed out or could not be started")
        #expect(outcome.stdout == program.expected.stdout, "\(name): stdout differs from \(name).expected")
        #expect(outcome.status == program.expected.status, "\(name): status differs from \(name).expected")
        #expect(stderr == "", "\(name) wrote to stderr")
    }

    @Test("a program that runs too long is killed and reported as a timeout (-1)")
    func timeout() {
        let sleeper = TestProgram(name: "sleep", path: "/bin/sleep", arguments: ["20"], expected: ProgramOutcome(stdout: "", status: 0))
        #expect(runOnHost(sleeper, timeoutSeconds: 1, outputPrefix: "/tmp/ostd-test-programs-sleep-\(getpid())").outcome.status == -1)
    }

    @Test("golden files parse back to what they say")
    func goldenFormat() {
        let outcome = ProgramOutcome(golden: "a\nb\nstatus 139\n")
        #expect(outcome == ProgramOutcome(stdout: "a\nb\n", status: 139))
        #expect(outcome?.description == "a\nb\nstatus 139\n")
        #expect(ProgramOutcome(golden: "status 0\n") == ProgramOutcome(stdout: "", status: 0))
        #expect(ProgramOutcome(golden: "a\n") == nil)
        #expect(ProgramOutcome(golden: "status 0") == nil)
    }
}

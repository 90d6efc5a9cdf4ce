// The bare-metal kernel (issue 14): each test program runs under `ostd-mm boot`'s VMM on the
// Embedded Swift kernel and must print exactly what it prints on the host's Linux and exit with
// the same status; the kernel's own page table, then the program's, must be in CR3 (the VMM
// checks every announced root at every later exit); every frame must come back. Skipped, with the
// reason shown, where /dev/kvm or a C compiler is missing.

#if canImport(Glibc)
import Glibc
#endif
import Testing
import OSTDKVM

/// The kernel image, built once per test run by Kernel/build.sh (into .build-kernel).
let kernelImage: Result<String, TestProgramError> = {
    let root = testProgramsDirectory + "/../.."
    let image = root + "/.build-kernel/ostd-kernel.elf"
    guard system("'\(root)/Kernel/build.sh' '\(image)' > /tmp/ostd-kernel-build.log 2>&1") == 0 else {
        return .failure(TestProgramError(description: "Kernel/build.sh failed; see /tmp/ostd-kernel-build.log"))
    }
    return .success(image)
}()

/// musl's compiler wrapper, where musl-tools is installed.
let muslCompiler: String? = access("/usr/bin/musl-gcc", X_OK) == 0 ? "/usr/bin/musl-gcc" : nil

/// Boots `program` on the kernel; its output and status, and the kernel's log.
func bootProgram(_ bytes: [UInt8], arguments: [String]) throws -> (ProgramOutcome, BootResult) {
    let kernel = try kernelImage.get()
    var stdout: [UInt8] = []
    let result = try bootKernel(BootOptions(kernel: kernel, program: bytes, arguments: arguments),
                                output: { fd, bytes in if fd == 1 { stdout += bytes } })
    return (ProgramOutcome(stdout: String(decoding: stdout, as: UTF8.self), status: result.status), result)
}

@Suite(.enabled(if: VirtualMachine.isAvailable, "/dev/kvm is not available: the kernel cannot boot here"),
       .enabled(if: testProgramCompiler != nil, "no C compiler: the test programs cannot be built"))
struct BootProgramTests {
    @Test(arguments: testProgramNames)
    func aProgramRunsOnTheKernelAsOnLinux(_ name: String) throws {
        let program = try #require(try buildTestPrograms().first { $0.name == name })
        let bytes = try #require(readWholeFile(program.path))
        let (outcome, result) = try bootProgram(bytes, arguments: [program.path] + program.arguments)
        #expect(outcome == program.expected, "\(name) on the kernel")
        // The kernel's root, then the program's space's root, each found in CR3 at every later exit.
        #expect(result.roots.count >= 2)
        #expect(result.kernelLog.contains("every frame it used came back"), "\(result.kernelLog)")
        #expect(result.slotsCompared == 65536, "every slot compared before and after the program")
        print("boot \(name): \(Int(result.seconds * 1000)) ms, status \(result.status)")
    }

    /// A program linked with musl (malloc, printf, floating point) prints and exits as on the
    /// host, where musl-gcc is installed (`.ci/run` installs musl-tools).
    @Test(.enabled(if: muslCompiler != nil, "musl-gcc is not installed: the musl program cannot be built"))
    func aMuslProgramRunsOnTheKernelAsOnLinux() throws {
        let path = "/tmp/ostd-musl-\(getpid())"
        let source = testProgramsDirectory + "/musl/malloc-printf.c"
        guard system("'\(muslCompiler!)' -static -O1 -o '\(path)' '\(source)'") == 0 else {
            Issue.record("musl-gcc could not build \(source)")
            return
        }
        defer { unlink(path) }
        let program = TestProgram(name: "malloc-printf", path: path, arguments: ["one", "two"],
                                  expected: ProgramOutcome(stdout: "", status: 0))
        let host = runOnHost(program, outputPrefix: path)
        let bytes = try #require(readWholeFile(path))
        let (outcome, result) = try bootProgram(bytes, arguments: [path, "one", "two"])
        #expect(host.outcome.status == 7 && host.outcome.stdout.hasPrefix("musl: 3 argument(s)"), "\(host.outcome)")
        #expect(outcome == host.outcome)
        #expect(result.slotsCompared == 65536)
    }

    /// What is not a program is refused by the kernel with the reason, not run.
    @Test func aFileThatIsNotAProgramIsRefused() throws {
        let (outcome, result) = try bootProgram(Array("#!/bin/sh\necho hi\n".utf8), arguments: ["script"])
        #expect(outcome.status == 125)
        #expect(result.kernelLog.contains("not a static x86-64 ELF executable"))
    }
}

// `ostd-mm boot PROGRAM [ARGS…]`: boots the bare-metal kernel (Kernel/, built by Kernel/build.sh
// when missing or older than its sources) under KVM with a static x86-64 Linux program, passes
// the program's standard output and error through, and exits with its status (128 + signal when
// the kernel killed it, as a shell reports it).

import ArgumentParser
import OSTDHost
import OSTDKVM
import OSTDScript

#if canImport(Glibc)
import Glibc
#endif

struct Boot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Boot the Embedded Swift kernel under KVM and run a static x86-64 Linux program on it.",
        discussion: """
            Exit codes: the program's status (128 + signal when killed); 4 /dev/kvm is not \
            available; 2 invalid arguments; 125 the kernel could not run the program.
            """)

    @Argument(help: "The program: a static, non-PIE x86-64 ELF executable.")
    var program: String

    @Argument(parsing: .captureForPassthrough, help: "Its arguments.")
    var arguments: [String] = []

    @Option(help: "The machine's physical memory for the kernel's frames: a multiple of 2M, e.g. 256M.")
    var memory = "256M"

    @Flag(help: "Print every system call and page fault (the kernel's log, on standard error).")
    var trace = false

    @Option(help: "Seconds the whole run may take before it is stopped.")
    var timeout = 120.0

    @Option(help: "The kernel ELF (default: .build-kernel/ostd-kernel.elf, built if needed).")
    var kernel: String?

    func run() throws {
        guard VirtualMachine.isAvailable else {
            print("boot: skipped: /dev/kvm is not available")
            throw ExitCode(4)
        }
        let size: Int
        switch MemorySize.parse(memory, least: 16 << 20) {
        case .success(let value): size = value
        case .failure(let problem): throw ValidationError(problem.description)
        }
        guard let bytes = readWholeFile(program) else { throw ValidationError("cannot read \(program)") }
        let kernelPath = try kernel ?? KernelBuild.ensure()
        var options = BootOptions(kernel: kernelPath, program: bytes, arguments: [program] + arguments)
        options.machineMemory = size
        options.trace = trace
        options.budgetSeconds = timeout
        do {
            let result = try bootKernel(options, output: { fd, bytes in
                bytes.withUnsafeBytes { _ = write(fd == 2 ? 2 : 1, $0.baseAddress, $0.count) }
            }, log: { line in if trace { printToStandardError(line) } })
            throw ExitCode(result.status)
        } catch let error as KvmError {
            printToStandardError("boot: error: \(error)")
            throw ExitCode(125)
        }
    }
}

/// The bare-metal kernel's image: Kernel/build.sh's output, rebuilt when a source is newer.
enum KernelBuild {
    /// The path of an up-to-date kernel image.
    static func ensure() throws -> String {
        guard let root = repositoryRoot() else {
            throw ValidationError("cannot find Kernel/build.sh next to this ostd-mm; pass --kernel PATH")
        }
        let image = root + "/.build-kernel/ostd-kernel.elf"
        if needsBuild(image: image, root: root) {
            printToStandardError("boot: building the kernel (Kernel/build.sh)")
            guard system("'\(root)/Kernel/build.sh' '\(image)' > /dev/null") == 0 else {
                throw ValidationError("Kernel/build.sh failed")
            }
        }
        return image
    }

    /// The checkout this tool was built from: the nearest parent of the executable with Kernel/build.sh.
    static func repositoryRoot() -> String? {
        var path = CommandLine.arguments[0]
        if !path.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: 4096)
            guard getcwd(&buffer, buffer.count) != nil else { return nil }
            path = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "/" + path
        }
        var components = path.split(separator: "/").map(String.init)
        while !components.isEmpty {
            components.removeLast()
            let candidate = "/" + components.joined(separator: "/")
            if access(candidate + "/Kernel/build.sh", X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// Whether `image` is missing or older than a kernel or core source.
    static func needsBuild(image: String, root: String) -> Bool {
        var imageStat = stat()
        guard stat(image, &imageStat) == 0 else { return true }
        let newer = system("find '\(root)/Kernel' '\(root)/Sources/OSTDMemory' -newer '\(image)' -type f | grep -q .")
        return newer == 0
    }
}

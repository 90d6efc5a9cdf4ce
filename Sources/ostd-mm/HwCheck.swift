// `ostd-mm hwcheck SCRIPT`: runs an op script, then checks the space's page tables on KVM's x86
// page walker (`OSTDKVM.checkOnHardware`): every leaf's first and last byte, random and written
// bytes, and unmapped addresses, read, written and fetched at CPL 0 and CPL 3, then every entry's
// A/D bits. Prints each disagreement in full, then one JSON summary line.

import ArgumentParser
import OSTDHost
import OSTDKVM
import OSTDScript

struct HwCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hwcheck",
        abstract: "Run an op script, then check its page tables on KVM's x86 page walker.",
        discussion: """
            Exit codes: 0 every probe agrees, 1 a disagreement (or KVM failed), 2 invalid script or \
            arguments (nothing ran), 4 /dev/kvm is not available (the check is skipped).
            """)

    @Argument(help: "The script's path, or - for standard input.")
    var script: String

    @Flag(help: "Print disagreements as JSON Lines (the summary line is JSON either way).")
    var json = false

    @Option(help: "Physical memory size: a multiple of 2M, e.g. 256M or 0x40000000.")
    var memory = "256M"

    func run() throws {
        guard VirtualMachine.isAvailable else {
            print("hwcheck: skipped: /dev/kvm is not available")
            throw ExitCode(4)
        }
        let runner: ScriptRunner
        switch runScriptQuietly(RunOptions(script: script, memory: memory)) {
        case .success(let value): runner = value
        case .failure(let problem):
            printToStandardError(problem.description)
            throw ExitCode(2)
        }
        let report: HardwareCheckReport
        do {
            report = try checkOnHardware(machine: runner.machine, kernelPageTable: runner.kernelPageTable,
                                         root: runner.space.rootPaddr)
        } catch {
            printToStandardError("hwcheck: error: \(error)")
            throw ExitCode(1)
        }
        if !json {
            print("hwcheck: \(runner.opsRun) ops run; walker: \(report.walker) (\(report.backend.rawValue)); vCPU \(report.features)")
            if report.split1G > 0 {
                print("hwcheck: the vCPU has no 1 GiB pages: \(report.split1G) 1 GiB leaves checked as 512 equivalent 2 MiB leaves each, in a private copy of the tables")
            }
            if report.sampled { print("hwcheck: \(report.addresses) addresses probed, a random sample of the leaves' and holes' addresses") }
        }
        for disagreement in report.disagreements { print(json ? disagreement.json : disagreement.description) }
        print(report.summaryJSON)
        if report.disagree > 0 { throw ExitCode(1) }
    }
}

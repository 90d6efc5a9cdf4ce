// Running scripts (SCRIPT.md, "Ops", "Errors"): a fresh machine and one user `VmSpace`, active on
// CPU 0; each op goes through the public `VmSpace` API and checks its errors in the contract's order
// (out-of-range, unaligned, access-conflict, already-mapped, out-of-memory, page-fault) before it
// changes anything. The ops: ScriptRunner+Mapping.swift (map, unmap, protect, query) and
// ScriptRunner+Bytes.swift (write, fill, read, copy).

import OSTDHost
@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec

/// Why the runner could not start.
public enum RunnerError: Error, Equatable, CustomStringConvertible {
    case badMemorySize(Int, String)

    public var description: String {
        switch self {
        case .badMemorySize(let size, let why): return "--memory \(size): \(why)"
        }
    }
}

/// Runs ops against one user address space on a fresh machine.
public final class ScriptRunner {
    public let machine: Machine
    public let kernelPageTable: PageTable<KernelPtConfig>
    public let space: VmSpace
    public let memorySize: Int
    /// Whether every op is audited (`--audit`): the machine then keeps the exact obligation
    /// ledger that reference accounting needs.
    public let isAuditing: Bool
    /// When auditing, the space's auditor: every cursor operation and ownership change inside an
    /// op is checked as it happens (`SpecAuditor`).
    let auditor: SpecAuditor?
    /// The ops run so far, and how many of them failed (results are printed, not kept).
    public private(set) var opsRun = 0
    public private(set) var opsFailed = 0

    /// A machine of `memory` bytes (a multiple of 2 MiB, large enough for the metadata and the
    /// page tables) and a space active on its CPU 0.
    public init(memory: Int, audit: Bool = false) throws(RunnerError) {
        guard memory > 0, memory % (2 << 20) == 0 else {
            throw .badMemorySize(memory, "not a positive multiple of 2 MiB")
        }
        isAuditing = audit
        auditor = audit ? SpecAuditor() : nil
        do {
            machine = try Machine.host(memory: memory, cpus: 1, audit: audit, auditor: auditor)
            kernelPageTable = try PageTable.newKernelPageTable(machine: machine)
            space = try VmSpace(kernelPageTable: kernelPageTable, auditor: auditor)
        } catch {
            throw .badMemorySize(memory, "too small for the metadata region and the page tables (\(error))")
        }
        memorySize = memory
        space.activate(on: 0)
    }

    /// Runs every op of `script`, in order.
    public func run(_ script: Script) {
        for op in script { run(op) }
    }

    /// Runs one op and returns its whole result (a large `read`'s data read into it: for short
    /// scripts and tests; `run(_:printingTo:json:)` prints the data as it reads it).
    @discardableResult
    public func run(_ scriptOp: ScriptOp) -> OpResult {
        run(scriptOp) { result in
            for (i, (name, value)) in result.fields.enumerated() {
                guard case .userBytes(let va, let count) = value else { continue }
                result.fields[i] = (name, .text(rendered { writeData(va, count, to: $0) }))
            }
        }
    }

    /// Runs one op and writes its result line to `output` as it goes: a large `read`'s data is
    /// read and encoded a chunk at a time. The result returned holds `.userBytes` in its place.
    @discardableResult
    public func run(_ scriptOp: ScriptOp, printingTo output: ScriptOutput, json: Bool) -> OpResult {
        run(scriptOp) { result in
            result.write(to: output, json: json) { va, count in writeData(va, count, to: output) }
            output.endLine()
        }
    }

    /// Runs one op, lets `finish` print or complete its result (`dump`: nothing, it reports only
    /// failures), and counts it for the summary.
    /// When auditing, the page-table view before and after are compared with the op's spec
    /// function (`ViewTransitions`), and the auditor checks each cursor operation and ownership
    /// change the op makes, the reads of its printing included.
    func run(_ scriptOp: ScriptOp, finish: (inout OpResult) -> Void) -> OpResult {
        let before = isAuditing ? space.pageTable.view() : nil
        var result = perform(scriptOp)
        finish(&result)
        opsRun += 1
        if !result.ok { opsFailed += 1 }
        if let before {
            transitionViolations = checkTransition(scriptOp.op, ok: result.ok, before: before,
                                                   after: space.pageTable.view())
            if let auditor {
                transitionViolations += auditor.violations
                auditor.reset()
            }
        }
        return result
    }

    /// What the last op did that its spec functions do not allow (auditing only).
    var transitionViolations: [AuditViolation] = []

    /// The spec function of `op` applied to the views around it: a failed op, and every op but
    /// `map`, `unmap` and `protect`, must leave the view as it was, except for the accessed and
    /// dirty flags a data access (`write`, `fill`, `read`, `copy`) may set.
    func checkTransition(_ op: Op, ok: Bool, before: PageTableView, after: PageTableView) -> [AuditViolation] {
        let problems: [String]
        let name: String
        switch op {
        case .map(let va, let len, let prot, let page, let cache) where ok:
            name = "mapSpec"
            problems = ViewTransitions.mapped(Vaddr(va)..<Vaddr(va + len), property: prot.property(cache: cache.policy),
                                              level: page.level, before: before, after: after)
        case .unmap(let va, let len) where ok:
            name = "unmapSpec"
            problems = ViewTransitions.unmapped(Vaddr(va)..<Vaddr(va + len), before: before, after: after)
        case .protect(let va, let len, let prot) where ok:
            name = "protectSpec"
            problems = ViewTransitions.protected(Vaddr(va)..<Vaddr(va + len), before: before, after: after) {
                prot.property(cache: $0.cache)
            }
        case .write, .fill, .read, .copy:
            // A data access, complete or not, may set A/D on what it touched, as the MMU does.
            name = ok ? "viewUnchanged" : "failedOpChangesNothing"
            problems = ViewTransitions.accessed(before: before, after: after)
        default:
            name = ok ? "viewUnchanged" : "failedOpChangesNothing"
            problems = ViewTransitions.unchanged(before: before, after: after)
        }
        return problems.map { AuditViolation(predicate: name, detail: $0) }
    }

    func perform(_ scriptOp: ScriptOp) -> OpResult {
        var result = OpResult(line: scriptOp.line, op: scriptOp.op.name, error: nil, message: nil, fields: [])
        do throws(OpFailure) {
            result.fields = try perform(scriptOp.op)
        } catch {
            result.error = error.code
            result.message = error.message
            result.fields = error.fields
        }
        return result
    }

    /// The summary after the ops run so far.
    public var summary: ScriptSummary {
        ScriptSummary(ops: opsRun, failed: opsFailed,
                      root: space.rootPaddr.rawValue, memory: UInt64(memorySize),
                      framesInUse: machine.outstandingFrames,
                      ptFrames: space.pageTable.nodes().count + kernelPageTable.nodes().count - 1,
                      audit: isAuditing)
    }

    /// The last op against its spec function, then the specification's quiescent-point checks on
    /// the machine and space now (`Audit`).
    public func auditViolations() -> [AuditViolation] {
        transitionViolations + Audit.quiescent(machine: machine, space: space, kernel: kernelPageTable)
    }

    /// When auditing, the audit after `op` (just run): `nil` when it held, otherwise what `run`
    /// and `dump` print on standard error before exiting 3.
    public func auditFailure(after op: ScriptOp) -> [String]? {
        guard isAuditing else { return nil }
        let violations = auditViolations()
        guard !violations.isEmpty else { return nil }
        return ["ostd-mm: audit: the specification is violated after line \(op.line) (\(op.op.name)):"]
            + violations.map { "  \($0)" }
    }

    // MARK: Ops

    func perform(_ op: Op) throws(OpFailure) -> [(String, ResultValue)] {
        switch op {
        case .map(let va, let len, let prot, let page, let cache):
            return [("pages", .int(try map(va, len, prot.property(cache: cache.policy), page)))]
        case .unmap(let va, let len):
            return [("pages", .int(try unmap(va, len)))]
        case .protect(let va, let len, let prot):
            return [("pages", .int(try protect(va, len, prot)))]
        case .query(let va):
            return try query(va)
        case .write(let va, let bytes):
            return [("bytes", .int(try write(va, bytes)))]
        case .fill(let va, let len, let byte):
            return [("bytes", .int(try fill(va, len, byte)))]
        case .read(let va, let len):
            return [("data", try read(va, len))]
        case .copy(let src, let dst, let len):
            return [("bytes", .int(try copy(src, dst, len)))]
        }
    }

    /// `[va, va + len)` as a user range: non-empty, no overflow, ending by `MAX_USERSPACE_VADDR`.
    func userRange(_ va: UInt64, _ len: UInt64) throws(OpFailure) -> Range<Vaddr> {
        let (end, overflow) = va.addingReportingOverflow(len)
        guard len > 0, !overflow, end <= maxUserspaceVaddr.rawValue else {
            throw OpFailure(.outOfRange, "range \(hex(va)) + \(hex(len)) is empty, overflows or ends past \(hex(maxUserspaceVaddr.rawValue))")
        }
        return Vaddr(va)..<Vaddr(end)
    }

    func checkAligned(_ va: UInt64, _ len: UInt64, to size: UInt64) throws(OpFailure) {
        guard va % size == 0, len % size == 0 else {
            throw OpFailure(.unaligned, "\(hex(va)) + \(hex(len)) is not a multiple of \(hex(size))")
        }
    }
}

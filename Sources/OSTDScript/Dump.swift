// `ostd-mm dump SCRIPT`: runs a script as `run` does, reports only the ops that failed, then shows
// the address space it left: the page-table tree (one line per node, its leaves summarized) and a
// map of the mapped ranges (leaves merged into runs). `--svg FILE` also draws the map (Svg.swift).
//
// The rendering is pure: from a `PageTableView` and node lists to lines of text, so tests can check
// it without a machine. Exit codes are `run`'s: 0 the script ran, 2 invalid script or arguments
// (`FILE:LINE: error: …`; nothing ran), 1 anything else (the SVG could not be written).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import OSTDMemory

// MARK: Running

/// Why a script could not start: the line `run` prints for it (`FILE:LINE: error: …` or
/// `ostd-mm: error: …`).
public struct ScriptStartError: Error, Equatable, CustomStringConvertible {
    public var description: String
}

/// Parses `options.script` (or `text`) and runs every op on a fresh machine, as `run` does, calling
/// `failure` for each op that fails.
///
/// - Returns: the runner, holding the machine and the space the script left; or why nothing ran.
public func runScript(_ options: RunOptions, text: String? = nil,
                      failure: (OpResult) -> Void = { _ in }) -> Result<ScriptRunner, ScriptStartError> {
    switch prepare(options, text: text) {
    case .failure(let problem):
        return .failure(ScriptStartError(description: problem.description))
    case .success(let (runner, script)):
        for op in script.ops {
            let result = runner.run(op)
            if !result.ok { failure(result) }
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

    public init(script: String, memory: String = "256M", svg: String? = nil) {
        self.script = script
        self.memory = memory
        self.svg = svg
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
    let runOptions = RunOptions(script: options.script, memory: options.memory)
    let runner: ScriptRunner
    switch runScript(runOptions, text: text, failure: { output($0.failureLine) }) {
    case .success(let value): runner = value
    case .failure(let problem):
        errors(problem.description)
        return 2
    }
    let snapshot = runner.snapshot
    if runner.results.contains(where: { !$0.ok }) { output("") }
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

/// The last component of `path`.
func baseName(_ path: String) -> String {
    path.split(separator: "/").last.map(String.init) ?? path
}

/// Writes `text` to `path`, replacing it. Returns `nil`, or why it could not.
func writeText(_ text: String, to path: String) -> String? {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { return "cannot create \(path): \(String(cString: strerror(errno)))" }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    var done = 0
    while done < bytes.count {
        let count = bytes[done...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return "cannot write \(path): \(String(cString: strerror(errno)))" }
        done += count
    }
    return nil
}

// MARK: The snapshot

/// What a dump shows: a user space's leaves and nodes, and the nodes of the kernel table whose
/// top half every user root shares.
public struct AddressSpaceSnapshot: Sendable {
    /// The user half's leaves, in address order.
    public var view: PageTableView
    /// The user table's nodes, root first, in pre-order (the shared kernel half excluded).
    public var nodes: [PageTableNodeInfo]
    /// The kernel table's nodes, its root first: the root's entries are the ones every user root
    /// copies, the others are the shared kernel-half nodes.
    public var kernelNodes: [PageTableNodeInfo]

    public init(view: PageTableView, nodes: [PageTableNodeInfo], kernelNodes: [PageTableNodeInfo]) {
        self.view = view
        self.nodes = nodes
        self.kernelNodes = kernelNodes
    }
}

extension ScriptRunner {
    /// The space as it is now (no cursor is alive between ops, so the view is exact).
    public var snapshot: AddressSpaceSnapshot {
        AddressSpaceSnapshot(view: space.pageTable.view(), nodes: space.pageTable.nodes(),
                             kernelNodes: kernelPageTable.nodes())
    }
}

// MARK: Runs

/// Consecutive leaves merged: same property, same leaf size, contiguous virtual addresses.
public struct MappedRun: Equatable, Sendable {
    /// The virtual range the leaves cover together.
    public var va: Range<Vaddr>
    /// The physical range, when the leaves are physically contiguous in the same order; else `nil`.
    public var pa: Range<Paddr>?
    /// The level of the leaves (1: 4 KiB, 2: 2 MiB, 3: 1 GiB).
    public var level: PagingLevel
    /// The leaves' property.
    public var property: PageProperty
    /// How many leaves the run merges.
    public var leaves: Int

    /// The run's size in bytes.
    public var bytes: UInt64 { va.upperBound.rawValue - va.lowerBound.rawValue }

    /// The leaves' size in bytes.
    public var leafBytes: UInt64 { UInt64(PagingConsts.pageSize(level)) }

    /// The protection in fixed columns: `r`, `w`, `x`, `u`, then `g` or nothing (e.g. `r-xu`).
    public var protColumns: String { AddressSpaceDump.protColumns(property) }
}

/// Renders an address space as text (and, in Svg.swift, as a picture).
public enum AddressSpaceDump {
    /// The leaves of `view` merged into runs, in address order.
    public static func runs(_ view: PageTableView) -> [MappedRun] {
        var runs: [MappedRun] = []
        for mapping in view.mappings {
            if var last = runs.last, last.level == mapping.level, last.property == mapping.property,
               last.va.upperBound == mapping.va.lowerBound {
                last.va = last.va.lowerBound..<mapping.va.upperBound
                if let pa = last.pa {
                    last.pa = pa.upperBound == mapping.pa.lowerBound ? pa.lowerBound..<mapping.pa.upperBound : nil
                }
                last.leaves += 1
                runs[runs.count - 1] = last
            } else {
                runs.append(MappedRun(va: mapping.va, pa: mapping.pa, level: mapping.level,
                                      property: mapping.property, leaves: 1))
            }
        }
        return runs
    }

    /// The whole dump: the tree, a blank line, the map.
    public static func lines(_ snapshot: AddressSpaceSnapshot) -> [String] {
        tree(snapshot) + [""] + map(snapshot.view)
    }

    /// The page-table tree: a heading, then one line per node of the user half, indented by level,
    /// with its level, physical address, the virtual range it covers and its present entries; the
    /// leaves of a node are summarized on its line. The shared kernel half is one line.
    public static func tree(_ snapshot: AddressSpaceSnapshot) -> [String] {
        tree(view: snapshot.view, nodes: snapshot.nodes, kernelNodes: snapshot.kernelNodes)
    }

    /// The page-table tree of `nodes` (root first, pre-order) with the leaves of `view`;
    /// `kernelNodes` are the kernel table's nodes, root first (empty: no kernel-half line).
    public static func tree(view: PageTableView, nodes: [PageTableNodeInfo],
                            kernelNodes: [PageTableNodeInfo] = []) -> [String] {
        guard let root = nodes.first else { return ["page table: no nodes"] }
        // The leaves of each node: those of the node's level inside the range it covers.
        var leaves: [NodeKey: [Range<Vaddr>]] = [:]
        for mapping in view.mappings {
            leaves[NodeKey(level: mapping.level, va: mapping.va.lowerBound), default: []].append(mapping.va)
        }
        let shared = Array(kernelNodes.dropFirst())
        var heading = "page table: root \(root.paddr), \(count(nodes.count, "node")) in the user half, "
            + "\(count(view.mappings.count, "leaf", "leaves"))"
        if !shared.isEmpty { heading += "; \(count(shared.count, "shared kernel node")) not shown" }

        var rows: [[String]] = []
        for node in nodes {
            let indent = String(repeating: "  ", count: Int(PagingConsts.nrLevels - node.level))
            let end = coverageEnd(node)
            var present = "\(node.presentEntries) present"
            if let ranges = leaves[NodeKey(level: node.level, va: node.va)], !ranges.isEmpty {
                let children = node.presentEntries - ranges.count
                present += ": " + (children > 0 ? count(children, "node") + ", " : "")
                    + leafSummary(ranges, level: node.level)
            }
            rows.append(["\(indent)L\(node.level) \(node.paddr)", "\(node.va)-\(hex(end))", present])
        }
        var lines = [heading] + table(rows, rightAligned: [])
        if let kernelRoot = kernelNodes.first, !shared.isEmpty {
            let byLevel = Dictionary(grouping: shared, by: \.level).sorted { $0.key > $1.key }
            let counts = byLevel.map { "\($0.value.count) L\($0.key)" }.joined(separator: ", ")
            let below = shared.reduce(0) { $0 + $1.presentEntries }
            let entries = KernelPtConfig.topLevelIndexRange
            lines.append("  kernel half \(Vaddr(0xffff_8000_0000_0000))-0x10000000000000000: root entries "
                + "\(entries.lowerBound)..<\(entries.upperBound) (\(kernelRoot.presentEntries) present) → \(counts) "
                + "\(shared.count == 1 ? "node" : "nodes") shared with every space, \(below) entries present below; collapsed")
        }
        return lines
    }

    /// The map: one row per run (range, size, leaves, protection, cache, physical range), then the
    /// totals.
    public static func map(_ view: PageTableView) -> [String] {
        let runs = runs(view)
        guard !runs.isEmpty else { return ["mapped ranges: none"] }
        var rows: [[String]] = []
        for run in runs {
            let pa = run.pa.map { "pa \($0.lowerBound)-\($0.upperBound)" } ?? "pa scattered"
            rows.append(["\(run.va.lowerBound)-\(run.va.upperBound)", size(run.bytes),
                         "\(size(run.leafBytes)) \(run.leaves == 1 ? "leaf" : "leaves")",
                         run.protColumns, ScriptCache(run.property.cache).rawValue, pa])
        }
        let bytes = runs.reduce(0) { $0 + $1.bytes }
        var bySize: [PagingLevel: Int] = [:]
        for run in runs { bySize[run.level, default: 0] += run.leaves }
        let leafCounts = bySize.sorted { $0.key < $1.key }
            .map { "\($0.value) × \(size(UInt64(PagingConsts.pageSize($0.key))))" }.joined(separator: ", ")
        return ["mapped ranges: \(count(runs.count, "run")) (leaves with the same property and size, contiguous, merged)"]
            + table(rows, rightAligned: [1]).map { "  " + $0 }
            + ["total: \(size(bytes))\(approximately(bytes)) mapped (\(count(Int(bytes / 4096), "page"))) in \(count(runs.count, "run")); leaves: \(leafCounts)"]
    }

    // MARK: Helpers

    /// `r`, `w`, `x`, `u` in fixed columns (`-` when absent), then `g` when global.
    static func protColumns(_ property: PageProperty) -> String {
        let prot = Prot(property)
        return "r" + (prot.writable ? "w" : "-") + (prot.executable ? "x" : "-") + (prot.user ? "u" : "-")
            + (prot.global ? "g" : "")
    }

    /// A size, exact, in the largest unit that divides it: `16K`, `2M`, `1G`, `4100K`, `12B`.
    public static func size(_ bytes: UInt64) -> String {
        for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] as [(String, UInt64)]
        where bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return "\(bytes >> shift)\(unit)"
        }
        return "\(bytes)B"
    }

    /// ` (~6.3M)` when `size` is not a whole number of its largest unit, else nothing.
    static func approximately(_ bytes: UInt64) -> String {
        let rough = approximateSize(bytes)
        return rough.hasPrefix("~") ? " (\(rough))" : ""
    }

    /// `n thing` or `n things`.
    static func count(_ n: Int, _ singular: String, _ plural: String? = nil) -> String {
        "\(n) " + (n == 1 ? singular : plural ?? singular + "s")
    }

    /// The leaves of one node: their count and size, and where they are: up to three ranges of
    /// contiguous leaves, else the number of ranges and the span.
    static func leafSummary(_ ranges: [Range<Vaddr>], level: PagingLevel) -> String {
        var spans: [Range<Vaddr>] = []
        for range in ranges {
            if let last = spans.last, last.upperBound == range.lowerBound {
                spans[spans.count - 1] = last.lowerBound..<range.upperBound
            } else {
                spans.append(range)
            }
        }
        let what = "\(ranges.count) × \(size(UInt64(PagingConsts.pageSize(level)))) "
            + (ranges.count == 1 ? "leaf" : "leaves")
        if ranges.count == PagingConsts.nrEntries { return what + " (full)" }
        if spans.count <= 3 {
            return what + " at " + spans.map { "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ", ")
        }
        return what + " in \(spans.count) ranges over \(spans[0].lowerBound)-\(spans[spans.count - 1].upperBound)"
    }

    /// The end of the virtual range a node covers (the user half's end for a root).
    static func coverageEnd(_ node: PageTableNodeInfo) -> UInt64 {
        if node.level >= PagingConsts.nrLevels {
            return node.va.rawValue + UInt64(UserPtConfig.topLevelIndexRange.count) * UInt64(PagingConsts.pageSize(node.level))
        }
        return node.va.rawValue &+ UInt64(PagingConsts.nrEntries) * UInt64(PagingConsts.pageSize(node.level))
    }

    /// Rows of cells as lines, each column padded to its widest cell (left-aligned unless listed).
    static func table(_ rows: [[String]], rightAligned: Set<Int>) -> [String] {
        let columns = rows.map(\.count).max() ?? 0
        let widths = (0..<columns).map { column in rows.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0 }
        return rows.map { row in
            var line = ""
            for (column, cell) in row.enumerated() {
                let last = column == row.count - 1
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                if column > 0 { line += "  " }
                line += rightAligned.contains(column) ? padding + cell : (last ? cell : cell + padding)
            }
            return line
        }
    }
}

/// A node, by its level and the first address it covers, as a leaf's address finds it.
struct NodeKey: Hashable {
    var level: PagingLevel
    var start: UInt64

    /// The node of `level` whose range holds `va`.
    init(level: PagingLevel, va: Vaddr) {
        self.level = level
        let span = UInt64(PagingConsts.pageSize(level)) * UInt64(PagingConsts.nrEntries)
        start = level >= PagingConsts.nrLevels ? 0 : va.rawValue & ~(span - 1)
    }
}

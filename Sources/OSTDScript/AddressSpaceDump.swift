// What `ostd-mm dump` shows and how it is assembled: the snapshot of a space, its leaves merged into
// runs, and the whole dump (tree, blank line, map). The rendering is pure: from a `PageTableView` and
// node lists to lines of text, so tests can check it without a machine. The tree is in
// AddressSpaceDump+Tree.swift, the shared formatting in AddressSpaceDump+Format.swift.

@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec

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

/// Consecutive leaves merged: same property (accessed and dirty flags aside), same leaf size,
/// contiguous virtual addresses.
public struct MappedRun: Equatable, Sendable {
    /// The virtual range the leaves cover together.
    public var va: Range<Vaddr>
    /// The physical range, when the leaves are physically contiguous in the same order; else `nil`.
    public var pa: Range<Paddr>?
    /// The level of the leaves (1: 4 KiB, 2: 2 MiB, 3: 1 GiB).
    public var level: PagingLevel
    /// The leaves' property, without `.accessed` and `.dirty`.
    public var property: PageProperty
    /// How many leaves the run merges.
    public var leaves: Int

    /// The run's size in bytes.
    public var bytes: UInt64 { va.upperBound.rawValue - va.lowerBound.rawValue }

    /// The leaves' size in bytes.
    public var leafBytes: UInt64 { UInt64(PagingConsts.pageSize(level)) }

    /// The protection in fixed columns: `r`, `w`, `x`, `u`, then `g` or nothing (e.g. `r-xu`).
    public var protColumns: String { AddressSpaceDump.protColumns(property) }

    /// The physical range as the map and the picture's tooltip show it: `pa START-END`, or
    /// `pa scattered`.
    var paColumn: String { pa.map { "pa \($0.lowerBound)-\($0.upperBound)" } ?? "pa scattered" }
}

/// Renders an address space as text (and, in Svg.swift, as a picture).
public enum AddressSpaceDump {
    /// The leaves of `view` merged into runs, in address order. The accessed and dirty flags
    /// the MMU sets are left out: the dump does not show them (SCRIPT.md), so leaves that differ
    /// only in them are one run.
    public static func runs(_ view: PageTableView) -> [MappedRun] {
        var runs: [MappedRun] = []
        for var mapping in view.mappings {
            mapping.property.flags.subtract([.accessed, .dirty])
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

    /// The map: one row per run (range, size, leaves, protection, cache, physical range), then the
    /// totals.
    public static func map(_ view: PageTableView) -> [String] {
        let runs = runs(view)
        guard !runs.isEmpty else { return ["mapped ranges: none"] }
        var rows: [[String]] = []
        for run in runs {
            let pa = run.paColumn
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
}

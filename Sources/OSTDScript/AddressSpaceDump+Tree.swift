// The page-table tree of `ostd-mm dump`: one line per node of the user half, indented by level,
// its leaves summarized on its line; the shared kernel half collapsed into one line.

@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec

extension AddressSpaceDump {
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

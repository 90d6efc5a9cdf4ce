// `ostd-mm dump --svg FILE`: the user half of an address space as a picture, plain SVG by hand.
//
// One horizontal axis runs from 0 to `MAX_USERSPACE_VADDR`. It is segmented: mapped runs that lie
// close together form a segment drawn to its own scale; the unmapped gaps between segments (and
// before the first and after the last) are squeezed into a fixed width with a break mark and their
// size. Runs are coloured by protection, hatched when not user-accessible; huge leaves are
// outlined one by one and labelled. Every run is a `rect class="run"` with a tooltip.

import OSTDMemory

extension AddressSpaceDump {
    /// The picture of `view`'s user half as an SVG document.
    ///
    /// - Parameters:
    ///   - title: the heading (escaped here).
    ///   - width: the picture's width in pixels.
    public static func svg(_ view: PageTableView, title: String, width: Int = 1200) -> String {
        let runs = runs(view)
        // Wider than asked when there are many segments: about 130 px for each and 40 for each gap.
        let count = Double(segments(runs).count)
        let needed = 64 + 130 * count + 40 * (count + 1)
        return SvgMap(runs: runs, title: title, width: min(max(Double(width), needed), 6000)).document()
    }

    /// `text` with XML's five special characters escaped.
    public static func xmlEscaped(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.append(character)
            }
        }
        return out
    }

    /// An approximate size for a label: exact when it is a whole number of a unit (`2M`), else
    /// `~` and three significant digits at most (`~1.9M`, `~128T`).
    public static func approximateSize(_ bytes: UInt64) -> String {
        for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] as [(String, UInt64)] where bytes >= 1 << shift {
            if bytes % (1 << shift) == 0 { return "\(bytes >> shift)\(unit)" }
            let value = Double(bytes) / Double(UInt64(1) << shift)
            if value >= 10 { return "~\(Int(value.rounded()))\(unit)" }
            let tenths = Int((value * 10).rounded())
            return "~\(tenths / 10).\(tenths % 10)\(unit)"
        }
        return "\(bytes)B"
    }

    /// The runs grouped into segments: a run joins the segment before it when the hole between
    /// them is at most 64 KiB or an eighth of the segment it would make.
    public static func segments(_ runs: [MappedRun]) -> [[MappedRun]] {
        var segments: [[MappedRun]] = []
        for run in runs {
            if let last = segments.last, let start = last.first?.va.lowerBound, let end = last.last?.va.upperBound {
                let hole = run.va.lowerBound.rawValue - end.rawValue
                if hole <= 64 << 10 || hole <= (run.va.upperBound.rawValue - start.rawValue) / 8 {
                    segments[segments.count - 1].append(run)
                    continue
                }
            }
            segments.append([run])
        }
        return segments
    }
}

/// The protection classes the picture tells apart, with their colours.
private enum ProtClass: CaseIterable {
    case readOnly, readWrite, readExecute, all

    init(_ property: PageProperty) {
        switch (property.flags.contains(.w), property.flags.contains(.x)) {
        case (false, false): self = .readOnly
        case (true, false): self = .readWrite
        case (false, true): self = .readExecute
        case (true, true): self = .all
        }
    }

    var letters: String {
        switch self {
        case .readOnly: return "r--"
        case .readWrite: return "rw-"
        case .readExecute: return "r-x"
        case .all: return "rwx"
        }
    }

    var meaning: String {
        switch self {
        case .readOnly: return "read-only"
        case .readWrite: return "data"
        case .readExecute: return "code"
        case .all: return "writable code"
        }
    }

    var colour: String {
        switch self {
        case .readOnly: return "#8d969e"
        case .readWrite: return "#3b7dd8"
        case .readExecute: return "#2e9e4f"
        case .all: return "#e0433a"
        }
    }

    /// The id of the hatch pattern for runs without `u`.
    var hatch: String { "hatch-" + letters.replacingDashes }
}

private extension String {
    var replacingDashes: String { String(map { $0 == "-" ? "_" : $0 }) }
}

/// Lays out and draws the picture.
private struct SvgMap {
    let runs: [MappedRun]
    let title: String
    let width: Double

    let margin = 32.0
    /// The width of a squeezed gap: 64 px, less when there are many.
    let gapWidth: Double
    let barTop = 124.0
    let barHeight = 56.0
    let font = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""
    let mono = "font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\""
    let end = maxUserspaceVaddr.rawValue

    init(runs: [MappedRun], title: String, width: Double) {
        self.runs = runs
        self.title = title
        self.width = width
        let gaps = Double(AddressSpaceDump.segments(runs).count + 1)
        gapWidth = min(64, max(16, (width - 2 * margin) * 0.3 / gaps))
    }

    /// One piece of the axis: a segment of runs drawn to scale, or a squeezed gap.
    enum Piece {
        case segment([MappedRun], x: Double, width: Double)
        case gap(from: UInt64, to: UInt64, x: Double)
    }

    func layout() -> [Piece] {
        let segments = AddressSpaceDump.segments(runs)
        var gaps: [(UInt64, UInt64)] = []
        var cursor: UInt64 = 0
        for segment in segments {
            gaps.append((cursor, segment[0].va.lowerBound.rawValue))
            cursor = segment[segment.count - 1].va.upperBound.rawValue
        }
        gaps.append((cursor, end))
        let gapCount = Double(gaps.count { $0.0 < $0.1 })
        let available = width - 2 * margin - gapCount * gapWidth
        // Segment widths grow with the logarithm of their spans, from a floor.
        let weights = segments.map { segment -> Double in
            let span = Double(segment[segment.count - 1].va.upperBound.rawValue - segment[0].va.lowerBound.rawValue)
            return log2(span / 4096) + 3
        }
        // Floors: room for the address labels, and about 30 px for each run and hole.
        var floors = segments.map { segment -> Double in
            let holes = zip(segment, segment.dropFirst()).count { $0.va.upperBound < $1.va.lowerBound }
            return max(120, 30 * Double(segment.count + holes))
        }
        let floorTotal = floors.reduce(0, +)
        if floorTotal > available * 0.8 { floors = floors.map { $0 * available * 0.8 / floorTotal } }
        let spare = available - floors.reduce(0, +)
        let total = weights.reduce(0, +)

        var pieces: [Piece] = []
        var x = margin
        for (i, segment) in segments.enumerated() {
            if gaps[i].0 < gaps[i].1 {
                pieces.append(.gap(from: gaps[i].0, to: gaps[i].1, x: x))
                x += gapWidth
            }
            let w = floors[i] + (total > 0 ? spare * weights[i] / total : 0)
            pieces.append(.segment(segment, x: x, width: w))
            x += w
        }
        if let last = gaps.last, last.0 < last.1 {
            pieces.append(.gap(from: last.0, to: last.1, x: x))
        }
        if segments.isEmpty { pieces = [.gap(from: 0, to: end, x: margin)] }
        return pieces
    }

    func document() -> String {
        let pieces = layout()
        let legendTop = barTop + barHeight + 62
        let height = legendTop + 58
        var out: [String] = []
        out.append("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(n(width))\" height=\"\(n(height))\" viewBox=\"0 0 \(n(width)) \(n(height))\">")
        out.append("<defs>")
        for prot in ProtClass.allCases {
            out.append("<pattern id=\"\(prot.hatch)\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">"
                + "<rect width=\"6\" height=\"6\" fill=\"#ffffff\"/><rect width=\"3\" height=\"6\" fill=\"\(prot.colour)\"/></pattern>")
        }
        out.append("</defs>")
        out.append("<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>")

        // Title and subtitle.
        let bytes = runs.reduce(0) { $0 + $1.bytes }
        out.append(text(margin, 36, title, size: 20, weight: "bold"))
        let subtitle = "user half 0x0-\(hex(end)) · \(AddressSpaceDump.count(runs.count, "run")), "
            + "\(AddressSpaceDump.approximateSize(bytes)) mapped · each segment to its own scale (tiny runs widened to stay visible), gaps squeezed"
        out.append(text(margin, 58, subtitle, size: 13, fill: "#555555"))

        // The axis line behind everything, and its two ends.
        let mid = barTop + barHeight / 2
        out.append("<line x1=\"\(n(margin))\" y1=\"\(n(mid))\" x2=\"\(n(width - margin))\" y2=\"\(n(mid))\" stroke=\"#9a9a9a\" stroke-width=\"1.5\"/>")
        // The axis's ends, unless a segment starts or ends there and says so.
        var taken: [(Double, Double)] = []
        if case .gap = pieces.first {
            out.append(text(margin, barTop - 10, "0x0", size: 11, anchor: "start", mono: true, fill: "#555555"))
            taken.append((margin, margin + 3 * 6.7 + 4))
        }
        if case .gap = pieces.last {
            let label = hex(end)
            out.append(text(width - margin, barTop - 10, label, size: 11, anchor: "end", mono: true, fill: "#555555"))
            taken.append((width - margin - Double(label.count) * 6.7 - 4, width - margin))
        }

        var callouts: [Callout] = []
        var below: [BelowLabel] = []
        for piece in pieces {
            switch piece {
            case .gap(let from, let to, let x): out += gap(from: from, to: to, x: x, below: &below)
            case .segment(let runs, let x, let w): out += segment(runs, x: x, width: w, callouts: &callouts, below: &below)
            }
        }
        out += place(below)
        out += place(callouts, taken: taken)
        out += legend(top: legendTop)
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }

    /// A squeezed gap: the axis with a break mark, and the gap's size under it.
    func gap(from: UInt64, to: UInt64, x: Double, below: inout [BelowLabel]) -> [String] {
        let mid = barTop + barHeight / 2
        let cx = x + gapWidth / 2
        var out: [String] = []
        out.append("<g class=\"gap\"><title>\(AddressSpaceDump.xmlEscaped("unmapped \(hex(from))-\(hex(to))"))</title>")
        out.append("<rect x=\"\(n(cx - 7))\" y=\"\(n(mid - 12))\" width=\"14\" height=\"24\" fill=\"#ffffff\"/>")
        for dx in [-5.0, 3.0] {
            out.append("<line x1=\"\(n(cx + dx - 4))\" y1=\"\(n(mid + 12))\" x2=\"\(n(cx + dx + 4))\" y2=\"\(n(mid - 12))\" stroke=\"#555555\" stroke-width=\"1.5\"/>")
        }
        below.append(BelowLabel(row: 0, x: cx, anchor: "middle", text: AddressSpaceDump.approximateSize(to - from), priority: 1))
        out.append("</g>")
        return out
    }

    /// A segment: its frame, its runs to scale, its huge leaves outlined, its start and end.
    func segment(_ runs: [MappedRun], x: Double, width w: Double, callouts: inout [Callout],
                 below: inout [BelowLabel]) -> [String] {
        let start = runs[0].va.lowerBound.rawValue
        let stop = runs[runs.count - 1].va.upperBound.rawValue
        // The pieces in order: run, hole, run, …; each run at least 6 px wide and each hole 3 px.
        var pieces: [(bytes: UInt64, least: Double)] = []
        for (i, run) in runs.enumerated() {
            if i > 0, runs[i - 1].va.upperBound < run.va.lowerBound {
                pieces.append((run.va.lowerBound.rawValue - runs[i - 1].va.upperBound.rawValue, 3))
            }
            pieces.append((run.bytes, 6))
        }
        var edges = [x]
        for width in widths(pieces, total: w) { edges.append(edges[edges.count - 1] + width) }
        var out: [String] = []
        out.append("<g class=\"segment\">")
        out.append("<rect x=\"\(n(x))\" y=\"\(n(barTop))\" width=\"\(n(w))\" height=\"\(n(barHeight))\" fill=\"#f3f3f3\" stroke=\"#bbbbbb\"/>")
        var piece = 0
        for (i, run) in runs.enumerated() {
            if i > 0, runs[i - 1].va.upperBound < run.va.lowerBound {
                let hole = run.va.lowerBound.rawValue - runs[i - 1].va.upperBound.rawValue
                callouts.append(Callout(x: (edges[piece] + edges[piece + 1]) / 2, text: "\(AddressSpaceDump.size(hole)) hole", bold: false))
                piece += 1
            }
            let x0 = edges[piece]
            let rw = edges[piece + 1] - x0
            piece += 1
            let prot = ProtClass(run.property)
            let user = run.property.privilegedFlags.contains(.user)
            let fill = user ? prot.colour : "url(#\(prot.hatch))"
            let pa = run.pa.map { "pa \($0.lowerBound)-\($0.upperBound)" } ?? "pa scattered"
            let tip = "\(run.va.lowerBound)-\(run.va.upperBound)  \(AddressSpaceDump.size(run.bytes))  "
                + "\(run.leaves) × \(AddressSpaceDump.size(run.leafBytes)) \(run.leaves == 1 ? "leaf" : "leaves")  "
                + "\(run.protColumns)  \(ScriptCache(run.property.cache).rawValue)  \(pa)"
            out.append("<rect class=\"run\" x=\"\(n(x0))\" y=\"\(n(barTop))\" width=\"\(n(rw))\" height=\"\(n(barHeight))\" "
                + "fill=\"\(fill)\" stroke=\"#ffffff\" stroke-width=\"0.5\"><title>\(AddressSpaceDump.xmlEscaped(tip))</title></rect>")
            // Labels: inside the run (or each huge leaf) when they fit, else above the bar.
            let name = prot.letters + (user ? "" : " no u")
            let size = AddressSpaceDump.size(run.leafBytes)
            if run.level >= 2 {
                out += hugeLeaves(run, x: x0, width: rw)
                let leafWidth = rw / Double(run.leaves)
                if leafWidth >= 6, leafWidth >= textWidth(name + " " + size + " leaf") + 8 {
                    for leaf in 0..<run.leaves {
                        out.append(label(x0 + (Double(leaf) + 0.5) * leafWidth, name + " " + size + " leaf", user: user))
                    }
                    continue
                }
            }
            let whole = name + " " + (run.level >= 2 ? "\(run.leaves) × \(size)" : AddressSpaceDump.size(run.bytes))
            if rw >= textWidth(whole) + 8 {
                out.append(label(x0 + rw / 2, whole, user: user))
            } else {
                callouts.append(Callout(x: x0 + rw / 2, text: whole, bold: true))
            }
        }
        below.append(BelowLabel(row: 0, x: x, anchor: "start", text: hex(start), priority: 0))
        below.append(BelowLabel(row: 1, x: x + w, anchor: "end", text: hex(stop), priority: 2))
        out.append("</g>")
        return out
    }

    /// Widths for `pieces` that add up to `total`: proportional to their bytes, except that none is
    /// narrower than its `least` (when `total` allows).
    func widths(_ pieces: [(bytes: UInt64, least: Double)], total: Double) -> [Double] {
        var fixed = [Bool](repeating: false, count: pieces.count)
        while true {
            let room = total - pieces.indices.filter { fixed[$0] }.reduce(0) { $0 + pieces[$1].least }
            let bytes = pieces.indices.filter { !fixed[$0] }.reduce(0.0) { $0 + Double(pieces[$1].bytes) }
            let scale = bytes > 0 ? max(room, 0) / bytes : 0
            let widths = pieces.indices.map { fixed[$0] ? pieces[$0].least : Double(pieces[$0].bytes) * scale }
            let narrow = pieces.indices.filter { !fixed[$0] && widths[$0] < pieces[$0].least }
            if narrow.isEmpty { return widths }
            for i in narrow { fixed[i] = true }
        }
    }

    /// A run's label inside it: white on a colour, dark with a white halo on a hatch.
    func label(_ x: Double, _ content: String, user: Bool) -> String {
        text(x, barTop + barHeight / 2 + 4, content, size: 11, anchor: "middle",
             fill: user ? "#ffffff" : "#1b1b1b", weight: "bold", halo: !user)
    }

    /// The width of `content` in the 11 px sans-serif font, roughly.
    func textWidth(_ content: String) -> Double { Double(content.count) * 6.6 }

    /// An address (segment start, row 0; segment end, row 1) or a gap's size (row 0) under the bar.
    struct BelowLabel {
        var row: Int
        var x: Double
        var anchor: String
        var text: String
        /// Lower is placed first.
        var priority: Int

        var span: (Double, Double) {
            let width = Double(text.count) * 6.7
            switch anchor {
            case "start": return (x, x + width)
            case "end": return (x - width, x)
            default: return (x - width / 2, x + width / 2)
            }
        }
    }

    /// The labels under the bar that do not overlap one placed before them (by priority).
    func place(_ labels: [BelowLabel]) -> [String] {
        var rows: [[(Double, Double)]] = [[], []]
        var out: [String] = []
        for label in labels.sorted(by: { $0.priority < $1.priority }) {
            let span = label.span
            guard rows[label.row].allSatisfy({ span.1 + 6 <= $0.0 || span.0 >= $0.1 + 6 }) else { continue }
            rows[label.row].append(span)
            let y = barTop + barHeight + 16 + Double(label.row) * 15
            out.append(label.priority == 1
                ? text(label.x, y, label.text, size: 11, anchor: label.anchor, fill: "#777777", italic: true)
                : text(label.x, y, label.text, size: 11, anchor: label.anchor, mono: true,
                       fill: label.row == 0 ? "#222222" : "#555555"))
        }
        return out
    }

    /// A label above the bar for something too narrow to hold it.
    struct Callout {
        var x: Double
        var text: String
        var bold: Bool
    }

    /// The callouts on one of two rows above the bar, each with a leader line down to the bar;
    /// one that fits on neither row (its space `taken`) is left out: the tooltip still has it.
    func place(_ callouts: [Callout], taken: [(Double, Double)]) -> [String] {
        var rows: [[(Double, Double)]] = [taken, [], []]
        var out: [String] = []
        // Right to left, so that in a crowd the leaders of the labels on higher rows pass left of
        // the labels below them.
        for callout in callouts.sorted(by: { $0.x > $1.x }) {
            let half = textWidth(callout.text) / 2 + 3
            // The text may slide sideways as long as it stays over its leader; to the right when
            // another callout is close on the left, to leave its leader room.
            let crowded = callouts.contains { $0.x < callout.x && $0.x > callout.x - 2 * half }
            let shifts = (crowded ? [0.85, 0.5, 0, -0.5, -0.85] : [0, 0.85, 0.5, -0.5, -0.85]).map { $0 * (half - 4) }
            var chosen: (row: Int, center: Double)? = nil
            search: for row in rows.indices {
                // The leader must not cross a label on a lower row.
                guard rows[..<row].allSatisfy({ $0.allSatisfy { callout.x < $0.0 - 2 || callout.x > $0.1 + 2 } }) else { continue }
                for shift in shifts {
                    let span = (callout.x + shift - half, callout.x + shift + half)
                    if span.0 >= margin - 4, span.1 <= width - margin + 4,
                       rows[row].allSatisfy({ span.1 <= $0.0 || span.0 >= $0.1 }) {
                        chosen = (row, callout.x + shift)
                        break search
                    }
                }
            }
            guard let (row, center) = chosen else { continue }
            rows[row].append((center - half, center + half))
            let baseline = barTop - 10 - Double(row) * 16
            out.append("<line x1=\"\(n(callout.x))\" y1=\"\(n(baseline + 3))\" x2=\"\(n(callout.x))\" y2=\"\(n(barTop))\" stroke=\"#777777\" stroke-width=\"0.8\"/>")
            out.append(text(center, baseline, callout.text, size: 11, anchor: "middle", fill: callout.bold ? "#222222" : "#777777",
                            weight: callout.bold ? "bold" : "normal", italic: !callout.bold))
        }
        return out
    }

    /// The outlines of a run of 2 MiB or 1 GiB leaves: one box per leaf while they are wide
    /// enough, else one box for the run.
    func hugeLeaves(_ run: MappedRun, x: Double, width w: Double) -> [String] {
        let leafWidth = w / Double(run.leaves)
        let stroke = run.level >= 3 ? "stroke-width=\"3\" stroke-dasharray=\"8 3\"" : "stroke-width=\"2\""
        let boxes = leafWidth >= 6 ? (0..<run.leaves).map { (x + Double($0) * leafWidth, leafWidth) } : [(x, w)]
        return boxes.map { box in
            "<rect class=\"huge\" x=\"\(n(box.0 + 1))\" y=\"\(n(barTop + 1))\" width=\"\(n(max(box.1 - 2, 1)))\" "
                + "height=\"\(n(barHeight - 2))\" fill=\"none\" stroke=\"#1b1b1b\" \(stroke)/>"
        }
    }

    /// The legend: the four protections, the hatch for kernel-only runs, huge leaves, gaps.
    func legend(top: Double) -> [String] {
        var out: [String] = ["<g class=\"legend\">"]
        out.append("<line x1=\"\(n(margin))\" y1=\"\(n(top - 16))\" x2=\"\(n(width - margin))\" y2=\"\(n(top - 16))\" stroke=\"#e2e2e2\"/>")
        var x = margin
        let y = top
        for prot in ProtClass.allCases {
            out.append("<rect x=\"\(n(x))\" y=\"\(n(y))\" width=\"22\" height=\"14\" fill=\"\(prot.colour)\"/>")
            let label = "\(prot.letters) \(prot.meaning)"
            out.append(text(x + 28, y + 11.5, label, size: 12))
            x += 28 + Double(label.count) * 7 + 22
        }
        out.append("<rect x=\"\(n(x))\" y=\"\(n(y))\" width=\"22\" height=\"14\" fill=\"url(#\(ProtClass.readWrite.hatch))\" stroke=\"#cccccc\"/>")
        out.append(text(x + 28, y + 11.5, "hatched: no u (kernel only)", size: 12))
        x += 28 + 27 * 7 + 22
        out.append("<rect x=\"\(n(x))\" y=\"\(n(y))\" width=\"22\" height=\"14\" fill=\"#f3f3f3\" stroke=\"#bbbbbb\"/>")
        out.append(text(x + 28, y + 11.5, "unmapped, to scale", size: 12))

        let y2 = y + 28
        x = margin
        out.append("<rect x=\"\(n(x))\" y=\"\(n(y2))\" width=\"22\" height=\"14\" fill=\"\(ProtClass.readWrite.colour)\" stroke=\"#1b1b1b\" stroke-width=\"2\"/>")
        out.append(text(x + 28, y2 + 11.5, "outlined: one 2M leaf (dashed: 1G)", size: 12))
        x += 28 + 35 * 7 + 22
        let mid = y2 + 7
        out.append("<line x1=\"\(n(x))\" y1=\"\(n(mid))\" x2=\"\(n(x + 22))\" y2=\"\(n(mid))\" stroke=\"#9a9a9a\" stroke-width=\"1.5\"/>")
        out.append("<rect x=\"\(n(x + 6))\" y=\"\(n(mid - 8))\" width=\"10\" height=\"16\" fill=\"#ffffff\"/>")
        for dx in [-3.0, 3.0] {
            out.append("<line x1=\"\(n(x + 11 + dx - 3))\" y1=\"\(n(mid + 8))\" x2=\"\(n(x + 11 + dx + 3))\" y2=\"\(n(mid - 8))\" stroke=\"#555555\" stroke-width=\"1.5\"/>")
        }
        out.append(text(x + 28, y2 + 11.5, "unmapped gap, squeezed (its size below)", size: 12))
        out.append("</g>")
        return out
    }

    /// A `<text>` element; `content` is escaped.
    func text(_ x: Double, _ y: Double, _ content: String, size: Int, anchor: String = "start", mono: Bool = false,
              fill: String = "#222222", weight: String = "normal", italic: Bool = false, halo: Bool = false) -> String {
        "<text " + (halo ? "stroke=\"#ffffff\" stroke-width=\"3\" paint-order=\"stroke\" " : "") + "x=\"\(n(x))\" y=\"\(n(y))\" \(mono ? self.mono : font) font-size=\"\(size)\" text-anchor=\"\(anchor)\" fill=\"\(fill)\""
            + (weight == "normal" ? "" : " font-weight=\"\(weight)\"") + (italic ? " font-style=\"italic\"" : "")
            + ">\(AddressSpaceDump.xmlEscaped(content))</text>"
    }

    /// A coordinate with at most one decimal.
    func n(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return tenths % 10 == 0 ? String(tenths / 10) : (tenths < 0 ? "-" : "") + "\(abs(tenths) / 10).\(abs(tenths) % 10)"
    }
}

/// `log2` without Foundation.
private func log2(_ value: Double) -> Double {
    guard value > 1 else { return 0 }
    return Double(value.exponent) + (value.significand - 1)   // close enough for weights
}

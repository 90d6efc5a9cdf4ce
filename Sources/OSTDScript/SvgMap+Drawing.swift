// Drawing the SVG map: the document, each squeezed gap (a break mark), each segment (its runs coloured
// by protection, hatched when not user-accessible, huge leaves outlined one by one) and the legend.
// Every run is a `rect class="run"` with a tooltip; the text goes through SvgMap+Labels.swift.

@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec

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

extension SvgMap {
    func document() -> String {
        let pieces = layout()
        let aggregates = SvgMap.aggregates(in: pieces)
        let legendTop = barTop + barHeight + 62
        var taken: [(Double, Double)] = []
        let noteHeight = aggregates.marks > 0 ? 22.0 : 0
        var out = heading(height: legendTop + 58 + noteHeight) + axis(pieces, taken: &taken)
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
        if aggregates.marks > 0 {
            let note = "\(aggregates.runs) runs too close to draw one by one are shown as \(aggregates.marks) grey marks "
                + "(their tooltips list them; `ostd-mm dump` prints every run)"
            out.append(text(margin, legendTop + 64, note, size: 12, fill: "#555555"))
        }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }

    /// The document's opening, the hatch patterns, the background, the title and the subtitle.
    func heading(height: Double) -> [String] {
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
        return out
    }

    /// The axis line behind everything, and its two ends; the space their labels take is added to
    /// `taken`, where no callout may go.
    func axis(_ pieces: [Piece], taken: inout [(Double, Double)]) -> [String] {
        var out: [String] = []
        let mid = barTop + barHeight / 2
        out.append("<line x1=\"\(n(margin))\" y1=\"\(n(mid))\" x2=\"\(n(width - margin))\" y2=\"\(n(mid))\" stroke=\"#9a9a9a\" stroke-width=\"1.5\"/>")
        // The axis's ends, unless a segment starts or ends there and says so.
        if case .gap = pieces.first {
            out.append(text(margin, barTop - 10, "0x0", size: 11, anchor: "start", mono: true, fill: "#555555"))
            taken.append((margin, margin + 3 * 6.7 + 4))
        }
        if case .gap = pieces.last {
            let label = hex(end)
            out.append(text(width - margin, barTop - 10, label, size: 11, anchor: "end", mono: true, fill: "#555555"))
            taken.append((width - margin - Double(label.count) * 6.7 - 4, width - margin))
        }
        return out
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

    /// A segment: its frame, its runs to scale (neighbours aggregated when they would not fit), its
    /// huge leaves outlined, its start and end.
    func segment(_ runs: [MappedRun], x: Double, width w: Double, callouts: inout [Callout],
                 below: inout [BelowLabel]) -> [String] {
        let start = runs[0].va.lowerBound.rawValue
        let stop = runs[runs.count - 1].va.upperBound.rawValue
        let marks = SvgMap.marks(runs, width: w)
        let edges = pieceEdges(marks, x: x, width: w)
        var out: [String] = []
        out.append("<g class=\"segment\">")
        out.append("<rect x=\"\(n(x))\" y=\"\(n(barTop))\" width=\"\(n(w))\" height=\"\(n(barHeight))\" fill=\"#f3f3f3\" stroke=\"#bbbbbb\"/>")
        var piece = 0
        for (i, mark) in marks.enumerated() {
            if i > 0, marks[i - 1].stop < mark.start {
                let hole = mark.start - marks[i - 1].stop
                callouts.append(Callout(x: (edges[piece] + edges[piece + 1]) / 2, text: "\(AddressSpaceDump.size(hole)) hole", bold: false))
                piece += 1
            }
            let (x0, width) = (edges[piece], edges[piece + 1] - edges[piece])
            out += mark.isAggregate ? drawAggregate(mark, x: x0, width: width, callouts: &callouts)
                                    : drawRun(mark.runs[0], x: x0, width: width, callouts: &callouts)
            piece += 1
        }
        below.append(BelowLabel(row: 0, x: x, anchor: "start", text: hex(start), priority: 0))
        below.append(BelowLabel(row: 1, x: x + w, anchor: "end", text: hex(stop), priority: 2))
        out.append("</g>")
        return out
    }

    /// The x coordinates where a segment's pieces (mark, hole, mark, …) start, and where the last
    /// ends: widths proportional to bytes, each mark at least 6 px wide and each hole 3 px.
    func pieceEdges(_ marks: [SvgMark], x: Double, width w: Double) -> [Double] {
        var pieces: [(bytes: UInt64, least: Double)] = []
        for (i, mark) in marks.enumerated() {
            if i > 0, marks[i - 1].stop < mark.start {
                pieces.append((mark.start - marks[i - 1].stop, 3))
            }
            pieces.append((mark.span, 6))
        }
        var edges = [x]
        for width in widths(pieces, total: w) { edges.append(edges[edges.count - 1] + width) }
        return edges
    }

    /// A run: its rectangle, coloured by protection (hatched without `u`) with the run's map row as
    /// its tooltip, then its labels.
    func drawRun(_ run: MappedRun, x x0: Double, width rw: Double, callouts: inout [Callout]) -> [String] {
        let prot = ProtClass(run.property)
        let user = run.property.privilegedFlags.contains(.user)
        let fill = user ? prot.colour : "url(#\(prot.hatch))"
        let pa = run.paColumn
        let tip = "\(run.va.lowerBound)-\(run.va.upperBound)  \(AddressSpaceDump.size(run.bytes))  "
            + "\(run.leaves) × \(AddressSpaceDump.size(run.leafBytes)) \(run.leaves == 1 ? "leaf" : "leaves")  "
            + "\(run.protColumns)  \(ScriptCache(run.property.cache).rawValue)  \(pa)"
        let rect = "<rect class=\"run\" x=\"\(n(x0))\" y=\"\(n(barTop))\" width=\"\(n(rw))\" height=\"\(n(barHeight))\" "
            + "fill=\"\(fill)\" stroke=\"#ffffff\" stroke-width=\"0.5\"><title>\(AddressSpaceDump.xmlEscaped(tip))</title></rect>"
        let name = prot.letters + (user ? "" : " no u")
        return [rect] + runLabels(run, name, x: x0, width: rw, user: user, callouts: &callouts)
    }

    /// Several neighbouring runs drawn as one grey mark (there was no room for each), with what it
    /// stands for as its tooltip and, when it fits, its label.
    func drawAggregate(_ mark: SvgMark, x x0: Double, width rw: Double, callouts: inout [Callout]) -> [String] {
        let tip = "\(mark.runs.count) runs aggregated: \(hex(mark.start))-\(hex(mark.stop)), "
            + "\(AddressSpaceDump.size(mark.mappedBytes)) mapped"
        let rect = "<rect class=\"aggregate\" x=\"\(n(x0))\" y=\"\(n(barTop))\" width=\"\(n(rw))\" height=\"\(n(barHeight))\" "
            + "fill=\"#6b6b6b\" stroke=\"#ffffff\" stroke-width=\"0.5\"><title>\(AddressSpaceDump.xmlEscaped(tip))</title></rect>"
        let name = "\(mark.runs.count) runs"
        guard rw >= textWidth(name) + 8 else { return [rect] }
        return [rect, label(x0 + rw / 2, name, user: true)]
    }

    /// A run's huge leaves outlined, and its labels: inside the run (or each huge leaf) when they
    /// fit, else a callout above the bar.
    func runLabels(_ run: MappedRun, _ name: String, x x0: Double, width rw: Double, user: Bool,
                   callouts: inout [Callout]) -> [String] {
        var out: [String] = []
        let size = AddressSpaceDump.size(run.leafBytes)
        if run.level >= 2 {
            out += hugeLeaves(run, x: x0, width: rw)
            let leafWidth = rw / Double(run.leaves)
            if leafWidth >= 6, leafWidth >= textWidth(name + " " + size + " leaf") + 8 {
                for leaf in 0..<run.leaves {
                    out.append(label(x0 + (Double(leaf) + 0.5) * leafWidth, name + " " + size + " leaf", user: user))
                }
                return out
            }
        }
        let whole = name + " " + (run.level >= 2 ? "\(run.leaves) × \(size)" : AddressSpaceDump.size(run.bytes))
        if rw >= textWidth(whole) + 8 {
            out.append(label(x0 + rw / 2, whole, user: user))
        } else {
            callouts.append(Callout(x: x0 + rw / 2, text: whole, bold: true))
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
}

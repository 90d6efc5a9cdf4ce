// The text of the SVG map: labels inside runs, the addresses and gap sizes under the bar (placed by
// priority, never overlapping), the callouts above it with their leader lines for runs too narrow to
// hold their label, and the `<text>` element and coordinate format everything uses.

extension SvgMap {
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

// `ostd-mm dump --svg FILE`: the user half of an address space as a picture, plain SVG by hand.
// One axis runs from 0 to `MAX_USERSPACE_VADDR`: mapped runs that lie close together form a segment
// drawn to its own scale; the unmapped gaps are squeezed to a fixed width. This file: the entry point
// and the segments. SvgMap.swift lays the axis out, SvgMap+Drawing.swift draws it,
// SvgMap+Labels.swift places the text.

@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec

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

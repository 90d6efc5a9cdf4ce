// Keeping the SVG map readable however many runs there are: the picture has a fixed width, so
// when the marks would not fit, neighbours are drawn as one.
//
// Two steps, each only when needed. Segments: while there are more than the width holds (a gap
// mark and a segment's minimum each), the two segments with the smallest gap between them become
// one. Runs: inside a segment, while its runs and holes need more than its width (6 px a run, 3
// px a hole), consecutive runs are drawn as one grey mark, whose tooltip lists what it stands for.
// The subtitle says how many runs were aggregated into how many marks.

/// What a segment draws as one mark: a single run, or several neighbouring runs aggregated.
struct SvgMark {
    var runs: [MappedRun]

    var isAggregate: Bool { runs.count > 1 }
    var start: UInt64 { runs[0].va.lowerBound.rawValue }
    var stop: UInt64 { runs[runs.count - 1].va.upperBound.rawValue }
    /// The span the mark covers, holes between its runs included.
    var span: UInt64 { stop - start }
    /// The bytes its runs map.
    var mappedBytes: UInt64 { runs.reduce(0) { $0 + $1.bytes } }
}

extension SvgMap {
    /// The narrowest a segment and a squeezed gap can be.
    static let leastSegmentWidth = 24.0
    static let leastGapWidth = 16.0

    /// `segments` merged, closest first, until `width` holds them all at their least widths.
    static func fitting(_ segments: [[MappedRun]], width: Double, margin: Double) -> [[MappedRun]] {
        let room = width - 2 * margin - leastGapWidth
        let most = max(1, Int(room / (leastSegmentWidth + leastGapWidth)))
        var merged = segments
        while merged.count > most {
            let gaps = zip(merged, merged.dropFirst()).map {
                $1[0].va.lowerBound.rawValue - $0[$0.count - 1].va.upperBound.rawValue
            }
            let closest = gaps.indices.min { gaps[$0] < gaps[$1] }!
            merged[closest] += merged[closest + 1]
            merged.remove(at: closest + 1)
        }
        return merged
    }

    /// How many runs `pieces` draw aggregated, and into how many marks.
    static func aggregates(in pieces: [Piece]) -> (runs: Int, marks: Int) {
        var total = (runs: 0, marks: 0)
        for case .segment(let runs, _, let width) in pieces {
            for mark in marks(runs, width: width) where mark.isAggregate {
                total.runs += mark.runs.count
                total.marks += 1
            }
        }
        return total
    }

    /// The marks of a segment `width` wide: one per run while they fit (6 px a run, 3 px a hole),
    /// else consecutive runs grouped evenly into as many marks as fit.
    static func marks(_ runs: [MappedRun], width: Double) -> [SvgMark] {
        let holes = zip(runs, runs.dropFirst()).count { $0.va.upperBound < $1.va.lowerBound }
        if 6 * Double(runs.count) + 3 * Double(holes) <= width { return runs.map { SvgMark(runs: [$0]) } }
        let most = max(1, Int((width + 3) / 9))
        let perMark = (runs.count + most - 1) / most
        return stride(from: 0, to: runs.count, by: perMark).map {
            SvgMark(runs: Array(runs[$0..<min($0 + perMark, runs.count)]))
        }
    }
}

// The layout of the SVG map: where each segment and squeezed gap goes on the axis, and how wide each
// run and hole is inside a segment. Segment widths grow with the logarithm of their spans, from a
// floor that leaves room for labels; inside a segment widths are proportional to bytes, with minima.

@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec

/// Lays out and draws the picture.
struct SvgMap {
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
        let gaps = Double(SvgMap.fitting(AddressSpaceDump.segments(runs), width: width, margin: margin).count + 1)
        gapWidth = min(64, max(SvgMap.leastGapWidth, (width - 2 * margin) * 0.3 / gaps))
    }

    /// One piece of the axis: a segment of runs drawn to scale, or a squeezed gap.
    enum Piece {
        case segment([MappedRun], x: Double, width: Double)
        case gap(from: UInt64, to: UInt64, x: Double)
    }

    func layout() -> [Piece] {
        let segments = SvgMap.fitting(AddressSpaceDump.segments(runs), width: width, margin: margin)
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
        // Floors: room for the address labels, and about 30 px for each run and hole; never less
        // than a segment's least width.
        var floors = segments.map { segment -> Double in
            let holes = zip(segment, segment.dropFirst()).count { $0.va.upperBound < $1.va.lowerBound }
            return max(120, 30 * Double(segment.count + holes))
        }
        let floorTotal = floors.reduce(0, +)
        if floorTotal > available * 0.8 {
            floors = floors.map { max(SvgMap.leastSegmentWidth, $0 * available * 0.8 / floorTotal) }
        }
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
}

/// `log2` without Foundation.
private func log2(_ value: Double) -> Double {
    guard value > 1 else { return 0 }
    return Double(value.exponent) + (value.significand - 1)   // close enough for weights
}

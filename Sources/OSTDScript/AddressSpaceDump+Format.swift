// The formatting the dump's text and picture share: protection columns, sizes (exact, and
// approximate for labels), counts with their noun, and aligned tables.

@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec

extension AddressSpaceDump {
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

    /// ` (~6.3M)` when `size` is not a whole number of its largest unit, else nothing.
    static func approximately(_ bytes: UInt64) -> String {
        let rough = approximateSize(bytes)
        return rough.hasPrefix("~") ? " (\(rough))" : ""
    }

    /// `n thing` or `n things`.
    static func count(_ n: Int, _ singular: String, _ plural: String? = nil) -> String {
        "\(n) " + (n == 1 ? singular : plural ?? singular + "s")
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

// Counting TLB flushes, for the flusher and shootdown suites: how many single-page and full
// flushes a CPU performed between two snapshots of its statistics (the two suites each had a
// copy of this).

@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

/// Flushes a CPU's TLB performed: single pages, and everything.
struct Flushes: Equatable, CustomStringConvertible {
    var pages: Int
    var full: Int
    init(_ pages: Int, _ full: Int) {
        self.pages = pages
        self.full = full
    }
    var description: String { "\(pages) page flush(es), \(full) full flush(es)" }
}

/// The flushes a CPU's TLB performed between two snapshots of its statistics.
func delta(_ after: TlbStatistics, _ before: TlbStatistics) -> Flushes {
    Flushes(after.pageFlushes - before.pageFlushes, after.fullFlushes - before.fullFlushes)
}
